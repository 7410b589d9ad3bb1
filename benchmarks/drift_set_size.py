"""What shorter candidate lists cost the drift set in sensitivity.

Scores a held-out catalogue in galleries of LONG products (as the drift set does, every caption
against every image of a gallery) with the reference and each row, then cuts every gallery into
galleries of C neighbours for several C, from the same scores: per C, the share of queries whose
Rank@1 hit changes (the discordance the bar's interval is made of), the top-1 agreement and the
Rank@1 change with its 95 % interval. A row that drifts changes fewer queries on shorter lists;
the ratio to the long lists says how many more queries a short list needs to see the same
drift, and C / 2 pairs per query says what each costs.

    python benchmarks/drift_set_size.py MODEL --rows ov-bf16,ov-int8-bf16,ort-int8 --queries 300 --long 64 \
        --json benchmarks/results/drift_set_size.json
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from fbinfer.bench.config import REFERENCE, VARIANTS, DriftSetConfig
from fbinfer.bench.drift import LazyScores
from fbinfer.bench.driftset import DriftPairs, drift_data
from fbinfer.bench.run import resolve, runner_for
from fbinfer.data.features import FeatureStore
from fbinfer.evaluation.paired import expected_hits, paired_delta
from fbinfer.fileio import sha256, write_json
from fbinfer.machine import cpu_flags
from fbinfer.threads import torch_threads

CUTS = (2, 4, 8, 16, 32, 64, 128)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("--data", type=Path)
    ap.add_argument("--rows", default="ov-bf16,ov-int8-bf16,ort-int8")
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--long", type=int, default=64)
    ap.add_argument("--json", type=Path, required=True)
    a = ap.parse_args()
    torch_threads()
    mb = resolve(a.model, a.data)
    cfg = DriftSetConfig(queries=a.queries, candidates=a.long, looks=(1.0,))
    dset = drift_data(mb.data, cfg)
    pairs = DriftPairs.build(dset, FeatureStore(dset, mb.ck.config).ensure(dset.test), mb.ck.tokenizer(), cfg)
    variants = {v.key: v for v in VARIANTS}
    flat = {}
    for key in (REFERENCE, *a.rows.split(",")):
        runner, why = runner_for(variants[key], mb)
        if runner is None:
            raise SystemExit(f"{key}: {why}")
        start = time.perf_counter()
        flat[key] = LazyScores(runner.infer, pairs, key).upto(0)
        runner.deactivate()
        print(f"{key}: {len(flat[key])} pairs in {time.perf_counter() - start:.0f} s", flush=True)
    rows = []
    for c in (c for c in CUTS if c <= a.long and a.long % c == 0):
        n, g = pairs.grids.shape[:2]
        cut = pairs.grids.reshape(n, g // c, c, g // c, c).diagonal(axis1=1, axis2=3).transpose(0, 3, 1, 2).reshape(-1, c, c)
        ref = pairs.matrices(flat[REFERENCE], n * g, cut)
        for key in a.rows.split(","):
            got = pairs.matrices(flat[key], n * g, cut)
            for d in ref:
                r, g_ = ref[d], got[d]
                p = paired_delta(r, g_)
                changed = float(np.mean(expected_hits(r) != expected_hits(g_)))
                rows.append({"row": key, "direction": d, "candidates": c, "changed_share": round(changed, 4),
                             "reference_rank1": round(100 * float(expected_hits(r).mean()), 2), **p.to_dict()})
    for r in rows:
        long = next(x for x in rows if x["row"] == r["row"] and x["direction"] == r["direction"] and x["candidates"] == a.long)
        r["changed_vs_long"] = round(r["changed_share"] / long["changed_share"], 3) if long["changed_share"] else None
    out = {"command": "python benchmarks/drift_set_size.py " + " ".join(f"{k}={v}" for k, v in vars(a).items()),
           "model": {"path": str(a.model), "checkpoint_sha256": sha256(mb.ck.path)}, "cpu": cpu_flags(),
           "drift_set": pairs.describe(), "rows": rows}
    write_json(a.json, out)
    print(json.dumps([{k: r[k] for k in ("row", "direction", "candidates", "changed_share", "changed_vs_long", "delta", "half_width")}
                      for r in rows], indent=0))


if __name__ == "__main__":
    main()
