#!/usr/bin/env bash
# The bench table of docs/results/bench_2026-11.md, on today's protocol: every backend available here against torch fp32 on
# the drift set (QUERIES per direction, galleries of 16; November's run used 50 queries of the eval lists), batches 1/8/64/256.
# MODEL defaults to the default teacher (docs/results/training.md); more models (e.g. a distilled
# student) can follow it in EXTRA and are benched side by side in the same run.
set -euo pipefail
MODEL=${1:-runs/teacher7/model.pt}
DATA=${2:-runs/data}
OUT=${3:-benchmarks/results/bench_cpu}
QUERIES=${4:-1300}
EXTRA=${5:-}
fbinfer bench "$MODEL" $EXTRA --data "$DATA" --drift-queries "$QUERIES" --json "$OUT/bench.json" --report "$OUT"
