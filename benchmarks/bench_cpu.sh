#!/usr/bin/env bash
# Regenerates README's bench table on this machine: every backend available here against torch
# fp32, on the fixed candidate lists (100 queries per direction), batches 1/8/64/256.
# MODEL defaults to the only above-chance model so far; pass the teacher once it exists.
set -euo pipefail
MODEL=${1:-runs/models/mini2l-seed1.pt}
DATA=${2:-runs/data}
OUT=${3:-benchmarks/results/bench_cpu}
fbinfer bench "$MODEL" --data "$DATA" --queries 100 --json "$OUT/bench.json" --report "$OUT"
