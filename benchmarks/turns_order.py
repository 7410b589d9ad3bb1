"""Does timing in turns charge a row for the row before it? OpenVINO's default (the strongest peer)
timed alone, right after ONNX Runtime INT8 in every round (a fixed order: ONNX Runtime's threads
spin after a call), and in the bench's shuffled order; the three modes alternate in blocks.

    python benchmarks/turns_order.py runs/teacher7/model.bundle --data runs/data --batch 1,64
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from fbinfer.bench.run import VARIANTS, resolve, runner_for, timing_feeds
from fbinfer.data.features import FeatureStore
from fbinfer.evaluation.evaluate import eval_pairs
from fbinfer.evaluation.timing import times_in_turns
from fbinfer.fileio import write_json
from fbinfer.threads import torch_threads


def ms(call) -> float:
    start = time.perf_counter()
    call()
    return (time.perf_counter() - start) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--batch", default="1,64")
    ap.add_argument("--blocks", type=int, default=4, help="blocks per mode, alternating")
    ap.add_argument("--seconds", type=float, default=4.0, help="per block")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/turns_order.json"))
    args = ap.parse_args()
    torch_threads()
    mb = resolve(args.model, args.data)
    store = FeatureStore(mb.data, mb.ck.config).ensure(mb.data.test)
    by_key = {v.key: v for v in VARIANTS}
    ort, ov = (runner_for(by_key[k], mb)[0] for k in ("ort-int8", "ov-default"))
    result = {"model": mb.name, "rows": ["ort-int8", "ov-default"], "batches": {}}
    for b in (int(x) for x in args.batch.split(",")):
        feeds = timing_feeds(mb, store, eval_pairs(mb.data), b)
        run_ort, run_ov = (lambda f=feeds: ort.infer(f)), (lambda f=feeds: ov.infer(f))
        rounds = max(10, round(args.seconds * 1e3 / (ms(run_ort) + ms(run_ov))))
        modes: dict[str, list[float]] = {"alone": [], "after ort-int8 (fixed order)": [], "shuffled (the bench)": []}
        for _ in range(args.blocks):
            modes["alone"] += [ms(run_ov) for _ in range(rounds)]
            fixed = []
            for _ in range(rounds):
                run_ort()
                fixed.append(ms(run_ov))
            modes["after ort-int8 (fixed order)"] += fixed
            modes["shuffled (the bench)"] += times_in_turns([run_ort, run_ov], rounds, desc=f"batch {b}")[1]
        result["batches"][b] = {k: round(statistics.median(v), 3) for k, v in modes.items()}
        print(b, result["batches"][b])
    write_json(args.out, result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
