"""Drift of a bench row against the reference on the drift set: per direction the Rank@1 change
with its paired 95 % interval, top-1 agreement and ties; Spearman's rho of candidate scores per
query; |delta logit|; and the bar's verdict, reached in looks so that a row stops being scored
once the verdict is clear (``sequential_drift``)."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from fbinfer.bench.config import DriftSetConfig
from fbinfer.bench.driftset import DriftPairs
from fbinfer.bundle.io_spec import LOGIT
from fbinfer.data.candidates import DIRECTIONS, SHORT
from fbinfer.errors import FbinferError
from fbinfer.evaluation.paired import BEYOND, WITHIN, PairedDelta, expected_hits, inside, paired_delta, verdict


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Rank correlation (average ranks for ties). Two constant lists agree (1); one constant list
    says nothing about the other's order (0), so a backend answering a constant cannot score well."""
    ra, rb = _ranks(a), _ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = np.sqrt((ra**2).sum() * (rb**2).sum())
    if denom > 0:
        return float((ra * rb).sum() / denom)
    return 1.0 if not ra.any() and not rb.any() else 0.0


def _ranks(x: np.ndarray) -> np.ndarray:
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    first = np.cumsum(counts) - counts
    return (first + (counts - 1) / 2.0)[inverse]


def rank_report(mats: dict[str, np.ndarray]) -> dict[str, dict]:
    """Rank@1/5 per direction in percent, ties broken at random (expected hits)."""
    return {d: {"rank1": round(100 * float(expected_hits(m, 1).mean()), 4), "rank5": round(100 * float(expected_hits(m, 5).mean()), 4),
                "queries": int(m.shape[0]), "candidates": int(m.shape[1])} for d, m in mats.items()}


@dataclass
class RowDrift:
    """What a row's numerics did to the ranking, and the bar's verdict on it."""

    verdict: str  # within / beyond / undecided
    bar: float
    queries: int  # per direction, when the verdict was reached
    directions: dict[str, PairedDelta]
    spearman: float
    max_abs_dlogit: float
    mean_abs_dlogit: float

    def to_dict(self) -> dict:
        return {"verdict": self.verdict, "bar": self.bar, "queries": self.queries,
                **{SHORT[d]: p.to_dict() for d, p in self.directions.items()},
                "top1_agreement": round(float(np.mean([p.top1_agreement for p in self.directions.values()])), 4),
                "spearman": round(self.spearman, 5), "max_abs_dlogit": self.max_abs_dlogit, "mean_abs_dlogit": self.mean_abs_dlogit}


def drift(ref_mats: dict[str, np.ndarray], mats: dict[str, np.ndarray], bar: float) -> RowDrift:
    """The drift of ``mats`` against ``ref_mats`` (per direction, (queries, candidates), truth first)."""
    deltas = {d: paired_delta(ref_mats[d], mats[d]) for d in DIRECTIONS}
    rho = [spearman(x, y) for d in DIRECTIONS for x, y in zip(ref_mats[d], mats[d])]
    dl = np.concatenate([np.abs(ref_mats[d] - mats[d]).ravel() for d in DIRECTIONS])
    return RowDrift(verdict(list(deltas.values()), bar), bar, len(ref_mats[DIRECTIONS[0]]), deltas, float(np.mean(rho)),
                    float(dl.max()), float(dl.mean()))


class LazyScores:
    """A runner's logits on the drift set's batches, scored only as far as a look needs."""

    def __init__(self, infer: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]], pairs: DriftPairs, name: str):
        self.infer, self.pairs, self.name = infer, pairs, name
        self.logits: list[np.ndarray] = []

    def upto(self, look: int) -> np.ndarray:
        for feeds in self.pairs.batches[len(self.logits):self.pairs.batches_at[look]]:
            out = np.asarray(self.infer(feeds)[LOGIT], dtype=np.float64)
            if not np.isfinite(out).all():
                raise FbinferError(f"{self.name}: non-finite scores (NaN or inf); the model or graph is broken")
            self.logits.append(out)
        return np.concatenate(self.logits[:self.pairs.batches_at[look]])

    @property
    def pairs_scored(self) -> int:
        return sum(len(x) for x in self.logits)


def sequential_drift(reference: LazyScores, row: LazyScores, bar: float, cfg: DriftSetConfig) -> RowDrift:
    """Score ``row`` (and the reference, as far as needed) look by look, and stop at the first
    interim look that settles the verdict: *within* once every direction's 95 % interval lies inside
    [-bar, bar] (an equivalence test, stricter than the last look's rule), *beyond* once some
    direction's interval at ``cfg.interim_z`` lies outside it (Haybittle-Peto: the repeated looks
    cost almost nothing of the 95 % level). The last look gives ``verdict``'s plain rule."""
    pairs = row.pairs
    for k, q in enumerate(pairs.looks):
        ref, got = pairs.matrices(reference.upto(k), q), pairs.matrices(row.upto(k), q)
        final = drift(ref, got, bar)
        if k == len(pairs.looks) - 1:
            return final
        if inside(final.directions.values(), bar):
            final.verdict = WITHIN
            return final
        if verdict([paired_delta(ref[d], got[d], cfg.interim_z) for d in DIRECTIONS], bar) == BEYOND:
            final.verdict = BEYOND
            return final
    raise FbinferError("the drift set has no looks")
