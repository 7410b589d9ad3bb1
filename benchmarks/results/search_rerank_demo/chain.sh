# Issue 35 part 2 at demo scale (2026-12-07), run in /work/exp/search; results beside this file.
set -x
. /work/main/.venv/bin/activate
D=/work/exp/demo  # made by: fbinfer demo --workdir /work/exp/demo
fbinfer data synth -o valid --products 150 --views 2 --seed 5  # the validation catalogue (run before this chain)
fbinfer embed train --data $D/data -o embed.pt --precision bf16 --image-size 128 --grid-size 4
fbinfer index build --data $D/data --model embed.pt --split test -o test.index
fbinfer index build --data valid --model embed.pt --split all -o valid.index
EV="--index test.index --fusion-index valid.index --depths 8,16,32 --full-queries 0 --latency-queries 4"
fbinfer eval-retrieval $EV --rerank $D/teacher.pt --json eval_teacher.json
fbinfer train --data $D/data --from $D/teacher.pt --mine-negatives embed.pt --hard-ratio 0.5 --steps 300 --lr 5e-5 --head-lr 5e-5 --precision bf16 -o teacher_mined.pt
fbinfer train --data $D/data --from $D/teacher.pt --hard-ratio 0.5 --steps 300 --lr 5e-5 --head-lr 5e-5 --precision bf16 -o teacher_control.pt
fbinfer eval-retrieval $EV --rerank teacher_mined.pt --json eval_mined.json
fbinfer eval-retrieval $EV --rerank teacher_control.pt --json eval_control.json
