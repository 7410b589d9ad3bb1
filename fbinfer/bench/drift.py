"""Drift of a backend against the reference on the eval candidate lists: Rank@K differences in
points, top-1 agreement, Spearman's rho of candidate scores per query, |delta logit|."""
from __future__ import annotations

import numpy as np

from fbinfer.data.candidates import DIRECTIONS, SHORT


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


def drift(reference: dict, other: dict, ref_mats: dict[str, np.ndarray], mats: dict[str, np.ndarray]) -> dict[str, float]:
    """``reference``/``other``: eval reports; ``*_mats``: per direction, (queries, candidates) scores."""
    out: dict[str, float] = {}
    for d in DIRECTIONS:
        for k in ("rank1", "rank5", "rank10"):
            out[f"d_{k}_{SHORT[d]}"] = round(other[d][k] - reference[d][k], 2)
    agree, rho, diffs = [], [], []
    for d in DIRECTIONS:
        a, b = ref_mats[d], mats[d]
        agree += list(a.argmax(1) == b.argmax(1))
        rho += [spearman(x, y) for x, y in zip(a, b)]
        diffs.append(np.abs(a - b).ravel())
    dl = np.concatenate(diffs)
    out.update(top1_agreement=round(float(np.mean(agree)), 4), spearman=round(float(np.mean(rho)), 5),
               max_abs_dlogit=float(dl.max()), mean_abs_dlogit=float(dl.mean()))
    return out
