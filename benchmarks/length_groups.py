"""What scoring a batch as sub-batches by caption length buys each of the bench's rows: fbinfer's
rows (torch bf16, its graphs on OpenVINO and ONNX Runtime, the tuned plan where the bundle has
one) with ``length_groups`` 1, 2 and 4 (``fbinfer.backends.length_groups``),
and the peers as the bench runs them (whole), on the bench's timing batch, in shuffled turns with
50 ms pauses; the logits of every split against the whole batch's.

    python benchmarks/length_groups.py /work/exp/demo/teacher.pt --json benchmarks/results/length_groups_teacher.json

Why: the teacher stayed under 1.3x the fastest peer with its last layer on [CLS] alone
(docs/results/cls_only.md), and a third of the timing batch's text tokens are padding.
"""
from __future__ import annotations

import numpy as np
from timing_batch import model_and_batch, pairs_per_s, provenance

from fbinfer.bench.config import VARIANTS
from fbinfer.bench.run import runner_for, tuned_variant
from fbinfer.bundle.io_spec import ATTENTION_MASK, LOGIT
from fbinfer.evaluation.timing import times_in_turns
from fbinfer.fileio import write_json

OURS = ("torch-bf16", "ov-bf16", "ov-int8", "ov-int8-bf16", "ov-tuned", "ort-fused", "ort-int8")
PEERS = ("ov-default", "ov-plain-nncf-int8", "ort-plain")
GROUPS = (1, 2, 4)


def main() -> None:
    args, mb, feeds = model_and_batch(__doc__, rounds=20)
    variants = {v.key: v for v in VARIANTS}
    runners = {}
    for key in OURS + PEERS:
        for k in GROUPS if key in OURS else (1,):
            row = tuned_variant(variants[key], mb)
            runner, why = runner_for(row, mb, k) if not isinstance(row, str) else (None, row)
            if runner is None:
                print(f"{key}: not run ({why})")
                continue
            runners[f"{key} x{k}"] = runner
    whole = {name: r.infer(feeds)[LOGIT] for name, r in runners.items()}
    parity = {name: float(np.abs(out - whole[name.split(" x")[0] + " x1"]).max()) for name, out in whole.items()}
    times = times_in_turns([lambda r=r: r.infer(feeds) for r in runners.values()], args.rounds, "length groups, in turns", pause_s=0.05)
    speed = pairs_per_s(runners, times, args.batch)
    speedup = {name: round(v / speed[name.split(" x")[0] + " x1"], 3) for name, v in speed.items()}
    lengths = feeds[ATTENTION_MASK].sum(1)
    result = {**provenance(args, mb),
              "caption_tokens": {"min": int(lengths.min()), "max": int(lengths.max()), "real": int(lengths.sum()),
                                 "padded": int(feeds[ATTENTION_MASK].size)}, "image_tokens_per_pair": mb.ck.config.image_tokens,
              "pairs_per_s_median": speed, "speedup_over_whole": speedup, "max_abs_logit_diff_vs_whole": parity}
    for name in runners:
        print(f"{name:26s} {speed[name]:8.1f} pairs/s  {speedup[name]:.2f}x  max|dlogit| vs whole {parity[name]:.1e}")
    if args.json:
        write_json(args.json, result)


if __name__ == "__main__":
    main()
