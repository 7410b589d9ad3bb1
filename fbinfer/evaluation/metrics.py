"""Rank@K, accuracy and AUC from scores: pure functions, checked on hand-made matrices."""
from __future__ import annotations

import numpy as np


def ranks_of_truth(scores: np.ndarray, ties_against: bool = True) -> np.ndarray:
    """(Q, C) scores with the ground truth in column 0 -> 1-based rank of the truth per query.

    Ties count against the truth (a constant scorer ranks last, not first); ``ties_against=False``
    counts them for it, to measure how much of a difference is ties.
    """
    truth = scores[:, :1]
    return 1 + ((scores[:, 1:] >= truth) if ties_against else (scores[:, 1:] > truth)).sum(axis=1)


def rank_at_k(scores: np.ndarray, ks: tuple[int, ...] = (1, 5, 10)) -> dict[str, float]:
    """Percent of queries whose truth is in the top K."""
    r = ranks_of_truth(scores)
    return {f"rank{k}": round(float((r <= k).mean() * 100.0), 4) for k in ks}


def auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """Probability that a random matched pair outscores a random unmatched one (ties count half)."""
    allv = np.concatenate([pos, neg])
    order = allv.argsort(kind="mergesort")
    ranks = np.empty(len(allv))
    sorted_v = allv[order]
    # average ranks over ties
    _, first, counts = np.unique(sorted_v, return_index=True, return_counts=True)
    avg = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def accuracy(pos: np.ndarray, neg: np.ndarray, threshold: float = 0.0) -> float:
    """TIA accuracy on matched (logit > threshold) and unmatched (logit <= threshold) pairs, percent."""
    correct = (pos > threshold).sum() + (neg <= threshold).sum()
    return float(correct / (len(pos) + len(neg)) * 100.0)
