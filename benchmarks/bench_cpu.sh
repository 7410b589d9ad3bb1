#!/usr/bin/env bash
# Regenerates README's bench table on this machine: every backend available here against torch
# fp32, on the fixed candidate lists (100 queries per direction), batches 1/8/64/256.
# MODEL defaults to the 2-layer model the committed results were measured on; the default teacher
# (runs/teacher6/model.pt, see README "Training") has not been benched yet.
set -euo pipefail
MODEL=${1:-runs/models/mini2l-seed1.pt}
DATA=${2:-runs/data}
OUT=${3:-benchmarks/results/bench_cpu}
fbinfer bench "$MODEL" --data "$DATA" --queries 100 --json "$OUT/bench.json" --report "$OUT"
