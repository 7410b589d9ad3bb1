#!/usr/bin/env bash
# The CPU goal run (docs/results/cpu_backends.md): the default teacher and the 2 x 384 student, every
# CPU row (fbinfer's and the peers') in one process, drift on the drift set (docs/bench.md), batches 1, 8 and 64.
# Usage: bench_cpu_peers.sh TEACHER.bundle STUDENT.bundle [DATA] [OUT]
set -euo pipefail
TEACHER=${1:?teacher bundle or checkpoint}
STUDENT=${2:?student bundle or checkpoint}
DATA=${3:-runs/data}
OUT=${4:-benchmarks/results/bench_cpu_peers}
ROWS=torch-fp32,torch-compile,torch-int8-dynamic,ort-plain,ort-plain-dynamic-int8,ov-default,ov-plain-nncf-int8,ort-fused,ort-int8,ov-fp32,ov-bf16,ov-int8,ov-int8-bf16
fbinfer bench "$TEACHER" "$STUDENT" --data "$DATA" --backends "$ROWS" --batch 1,8,64 --seconds 10 \
    --json "$OUT/bench.json" --report "$OUT"
