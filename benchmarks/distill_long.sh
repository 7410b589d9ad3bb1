#!/usr/bin/env bash
# The long 2 x 384 student (docs/results/distillation.md): distil for the first step count, then extend the finished run to
# each further count with --resume (the linear schedule restarts at the remaining fraction of the
# peak lr), keeping every segment's checkpoint as DIR/distilled-2x384-N.pt for the table.
# Usage: distill_long.sh TEACHER DATA DIR 2000,4000,6000 [more `fbinfer distill` options]
set -euo pipefail
TEACHER=$1 DATA=$2 DIR=$3 COUNTS=$4
shift 4
mkdir -p "$DIR"
prev=
for steps in ${COUNTS//,/ }; do
    out="$DIR/distilled-2x384-$steps.pt"
    if [ -n "$prev" ]; then  # the finished run and its resume state and log, copied to the longer run's name
        cp "$prev" "$out" && cp "$prev.resume" "$out.resume" && cp "${prev%.pt}.distill.jsonl" "${out%.pt}.distill.jsonl"
    fi
    fbinfer distill "$TEACHER" -o "$out" --layers 2 --data "$DATA" --steps "$steps" ${prev:+--resume} --no-compare "$@"
    prev=$out
done
