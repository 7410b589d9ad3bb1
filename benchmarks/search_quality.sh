#!/usr/bin/env bash
# Makes the search quality table (docs/results/search.md): the dual encoder trained without and with
# the FashionBERT teacher term (same data, steps and seed), an index of the test catalogue for each,
# and `fbinfer eval-retrieval` of each with the teacher as the reranker (two-stage at depths
# 16/32/64/128 and the cross-encoder alone). About 35 min without the teacher term's runs on 2 cores;
# the kd run takes about twice the plain one. Options after RERANK go to both `fbinfer embed train`.
# Usage: search_quality.sh [DATA] [TEACHER.pt] [DIR] [RERANK (bundle or checkpoint; default TEACHER)]
set -euo pipefail
DATA=${1:-runs/data}
TEACHER=${2:-runs/teacher7/model.pt}
DIR=${3:-runs/search}
RERANK=${4:-$TEACHER}
shift $(( $# < 4 ? $# : 4 ))
mkdir -p "$DIR"
fbinfer embed train --data "$DATA" -o "$DIR/embed.pt" "$@"
fbinfer embed train --data "$DATA" -o "$DIR/embed_kd.pt" --teacher "$TEACHER" "$@"
for m in embed embed_kd; do
    fbinfer index build --data "$DATA" --model "$DIR/$m.pt" --split test -o "$DIR/$m.test.index" --force
    fbinfer eval-retrieval --index "$DIR/$m.test.index" --rerank "$RERANK" --json "$DIR/$m.retrieval.json" --plot "$DIR/$m.retrieval.png"
done
