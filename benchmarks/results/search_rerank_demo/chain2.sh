set -x
. /work/main/.venv/bin/activate
D=/work/exp/demo
fbinfer train --data $D/data --from teacher_mined.pt --mine-negatives embed.pt --hard-ratio 0.5 --steps 900 --lr 5e-5 --head-lr 5e-5 --precision bf16 -o teacher_mined1200.pt
fbinfer eval-retrieval --index test.index --fusion-index valid.index --depths 8,16,32 --full-queries 0 --latency-queries 4 --rerank teacher_mined1200.pt --json eval_mined1200.json
