#!/usr/bin/env bash
# Makes the distillation table (docs/results/distillation.md): from one teacher, a distilled 2 x 384 student and a distilled
# 4 x 256 student (default losses), and the paper's plain truncated 2-layer model (the first two
# teacher layers fine-tuned with the hard TIA loss only, same pairs, steps and lr); then measures
# all of them alone (benchmarks/distill_table.py; TEACHER_EVAL, if given, is the teacher's
# `fbinfer eval --json` on DATA, reused instead of evaluated again). The two distillations run
# side by side, one core each (2-core machine); the truncated model after them. Options after
# TEACHER_EVAL go to every `fbinfer distill` (the 500-step table: --lr 1e-4, the old default).
set -euo pipefail
TEACHER=${1:-runs/teacher7/model.pt}
DATA=${2:-runs/data}
STEPS=${3:-500}
DIR=${4:-runs/students}
TEACHER_EVAL=${5:-}
shift $(( $# < 5 ? $# : 5 ))
mkdir -p "$DIR"
common=(--data "$DATA" --steps "$STEPS" --no-compare "$@")
taskset -c 0 fbinfer distill "$TEACHER" -o "$DIR/distilled-2x384.pt" --layers 2 "${common[@]}" > "$DIR/2x384.log" 2>&1 &
taskset -c 1 fbinfer distill "$TEACHER" -o "$DIR/distilled-4x256.pt" --layers 4 --hidden 256 "${common[@]}" > "$DIR/4x256.log" 2>&1 &
wait
fbinfer distill "$TEACHER" -o "$DIR/truncated-2x384.pt" --layers 2 --init-layers first \
    --weights kd=0,rank=0,hidden=0,attention=0,embedding=0,tia=1 "${common[@]}" > "$DIR/truncated.log" 2>&1
python benchmarks/distill_table.py "$TEACHER" --data "$DATA" ${TEACHER_EVAL:+--teacher-eval "$TEACHER_EVAL"} \
    "distilled 2x384=$DIR/distilled-2x384.pt" "distilled 4x256=$DIR/distilled-4x256.pt" \
    "truncated 2x384 (paper)=$DIR/truncated-2x384.pt"
