#!/usr/bin/env bash
# Issue 35 part 2 with the teacher-short teacher: the chain the 2026-12-07 demo-scale section names.
set -euo pipefail
W=/work/exp/r35; cd "$W"
. /work/main/.venv/bin/activate
t() { local s=$(date +%s); "$@"; echo "[chain] $(( $(date +%s) - s )) s: $*"; }
t fbinfer data synth -o data
t fbinfer train --recipe teacher-short --data data -o teacher.pt
t fbinfer embed train --data data -o embed.pt --precision bf16
t fbinfer data synth -o valid --products 150 --seed 5
t fbinfer index build --data data -o test.index --model embed.pt --split test
t fbinfer index build --data valid -o valid.index --model embed.pt --split all
t fbinfer eval-retrieval --index test.index --fusion-index valid.index --depths 8,16,32 --full-queries 0 --latency-queries 4 \
    --rerank teacher.pt --json eval_teacher_short.json
sha256sum teacher.pt embed.pt
