"""Does a row timed in turns among all the bench's rows run as it would alone? The OpenVINO rows
that decide the bench's summary (fbinfer's bf16 and INT8 graphs, the OpenVINO and NNCF peers),
timed in turns among every timed row with an untimed pause of 0, 5, 20 and 50 ms before each
call, and in turns among themselves only; the median pairs/s of each, per seeded order.

    python benchmarks/turns_pause.py /work/exp/demo/student.pt --json benchmarks/results/.../student.json

Why: on an Intel Xeon with AMX (7 December 2026) the bench's all-rows turns put fbinfer's
OpenVINO bf16 row at 0.85x OpenVINO's defaults, where the two alone were 1.04-1.08x; a runtime's
threads that keep spinning after its call (OpenMP, ONNX Runtime, TBB) slow the call after it.
"""
from __future__ import annotations

import statistics
import time

import numpy as np
from timing_batch import model_and_batch

from fbinfer.bench.config import VARIANTS
from fbinfer.bench.run import runner_for
from fbinfer.fileio import write_json
from fbinfer.machine import cpu_flags

DECIDING = ("ov-bf16", "ov-default", "ov-int8-bf16", "ov-plain-nncf-int8")


def turns(calls: dict, keys: list[str], pause: float, rounds: int, seed: int, batch: int) -> dict[str, float]:
    rng, ms = np.random.default_rng(seed), {k: [] for k in keys}
    for _ in range(rounds):
        for i in rng.permutation(len(keys)):
            if pause:
                time.sleep(pause)
            start = time.perf_counter()
            calls[keys[i]]()
            ms[keys[i]].append(time.perf_counter() - start)
    return {k: round(batch / statistics.median(v), 1) for k, v in ms.items()}


def main() -> None:
    args, mb, feeds = model_and_batch(__doc__, rounds=12)
    runners = {}
    for v in VARIANTS:
        if v.timed and not v.tuned and v.key != "torch-compile":  # torch.compile: a minute to compile, an fp32 row like eager
            runner, _ = runner_for(v, mb)
            if runner is not None:
                runners[v.key] = runner
    calls = {k: (lambda r=r: r.infer(feeds)) for k, r in runners.items()}
    for call in [*calls.values()] * 2:  # warm-up
        call()
    out = []
    for seed in (0, 1):
        for label, keys, pause in [*((f"all rows, {p * 1e3:g} ms pause", list(calls), p) for p in (0, 0.005, 0.02, 0.05)),
                                   ("OpenVINO rows only, no pause", list(DECIDING), 0)]:
            speed = turns(calls, keys, pause, args.rounds, seed, args.batch)
            out.append({"seed": seed, "mode": label, "pairs_per_s": {k: speed[k] for k in DECIDING},
                        "ov_bf16_over_ov_default": round(speed["ov-bf16"] / speed["ov-default"], 3)})
            print(out[-1], flush=True)
    for r in runners.values():
        r.deactivate()
    if args.json:
        write_json(args.json, {"model": str(args.model), "checkpoint_sha256": mb.bundle.manifest["source"]["sha256"],
                               "batch": args.batch, "rounds": args.rounds, "rows_in_turns": list(calls), "cpu": cpu_flags(),
                               "results": out})


if __name__ == "__main__":
    main()
