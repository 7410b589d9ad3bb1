#!/usr/bin/env bash
# Rebuilds the default teacher (docs/results/training.md) from nothing: the synthetic catalogue, stage 1 (3,000 steps,
# every negative from the same sub-category, trained as 1,200 then resumed to 1,800 and 3,000,
# keeping the step-1,200 checkpoint for the short recipe), stage 2 (600 steps, half the negatives
# from any product, lower lr), then `fbinfer eval`. 90-110 min on 2 cores,
# plus 8 min of eval. Options after DATA and DIR go to every `fbinfer train`
# (e.g. --precision bf16: docs/results/training.md has its time and the teacher it made).
# Usage: train_teacher.sh [DATA] [DIR] [more `fbinfer train` options]
set -euo pipefail
DATA=${1:-runs/data}
DIR=${2:-runs}
shift $(( $# < 2 ? $# : 2 ))
[ -d "$DATA" ] || fbinfer data synth -o "$DATA"
stage1=(--data "$DATA" -o "$DIR/teacher6/model.pt" --hard-ratio 1 --seed 0 "$@")
fbinfer train "${stage1[@]}" --steps 1200
cp "$DIR/teacher6/model.pt" "$DIR/teacher6/model-1200.pt"
fbinfer train "${stage1[@]}" --steps 1800 --resume
fbinfer train "${stage1[@]}" --steps 3000 --resume
fbinfer train --data "$DATA" --from "$DIR/teacher6/model.pt" -o "$DIR/teacher7/model.pt" --steps 600 \
    --hard-ratio 0.5 --lr 5e-5 --head-lr 5e-5 "$@"
fbinfer eval "$DIR/teacher7/model.pt" --data "$DATA" --json "$DIR/teacher7/eval.json"
