"""How much of a reduced-precision row's Rank@1 drift is ties? Ranks every eval query with the
reference (torch fp32) and with each row, counting a tie against the truth (the protocol) and
in its favour; a drift that vanishes when ties go the truth's way comes from rounded logits, not
from a changed ranking.

    python benchmarks/reduced_precision_ties.py runs/teacher7/model.bundle --data runs/data --rows ov-bf16,ov-int8-bf16
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from fbinfer.bench.run import REFERENCE, VARIANTS, resolve, runner_for
from fbinfer.data.features import FeatureStore
from fbinfer.evaluation.evaluate import RunnerScorer, eval_pairs, score_matrices, score_pairs
from fbinfer.evaluation.metrics import ranks_of_truth
from fbinfer.fileio import write_json
from fbinfer.threads import torch_threads


def rank1(mat: np.ndarray, ties_against: bool) -> float:
    """Percent of queries whose truth (column 0) is first; ties count against it or for it."""
    return round(100.0 * float((ranks_of_truth(mat, ties_against) == 1).mean()), 2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--rows", default="ov-bf16,ov-int8-bf16")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/reduced_precision_ties.json"))
    args = ap.parse_args()
    torch_threads()
    mb = resolve(args.model, args.data)
    store = FeatureStore(mb.data, mb.ck.config).ensure(mb.data.test)
    pairs = eval_pairs(mb.data)
    by_key = {v.key: v for v in VARIANTS}
    result = {"model": mb.name, "rows": {}}
    for key in [REFERENCE, *args.rows.split(",")]:
        runner, why = runner_for(by_key[key], mb)
        if runner is None:
            raise SystemExit(f"{key}: {why}")
        mats = score_matrices(mb.data, score_pairs(RunnerScorer(runner, mb.ck.tokenizer(), store), mb.data, pairs, desc=key))
        result["rows"][key] = {d: {"rank1 ties against": rank1(m, True), "rank1 ties for": rank1(m, False),
                                   "queries whose truth ties a candidate": int(((m[:, 1:] == m[:, :1]).any(1)).sum())}
                               for d, m in mats.items()}
        runner.deactivate()
        print(key, result["rows"][key])
    write_json(args.out, result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
