"""Paired Rank@1 differences with a confidence interval, and the drift bar's verdict.

Two scorers rank the same queries, so the difference of their Rank@1 is a paired difference:
per query, the reference hits and the other misses (-1), the reverse (+1) or both agree (0).
Only discordant queries carry information, and with few of them a plain bootstrap says the
difference is exactly 0 with no uncertainty. The interval here is Tango's score interval for a
difference of paired proportions (Tango 1998, Stat. Med. 17:891, https://doi.org/10.1002/
(SICI)1097-0258(19980430)17:8<891::AID-SIM780>3.0.CO;2-B), which keeps its coverage with zero
discordant queries: 0 of n gives an upper bound near 3.84 / n.

Ties are scored as the expected hit under random tie-breaking (a two-way tie at the top is half
a hit), so bf16 rounding that makes two candidates equal is not counted as a whole miss; the
discordant counts may then be fractional, which the score statistic takes as they are.
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass

import numpy as np

Z95 = 1.959964  # two-sided 95 %
WITHIN, BEYOND, UNDECIDED = "within", "beyond", "undecided"


def expected_hits(scores: np.ndarray, k: int = 1) -> np.ndarray:
    """(Q, C) scores with the ground truth in column 0 -> per query, the probability that the truth
    is in the top ``k`` when ties are broken at random."""
    truth = scores[:, :1]
    greater = (scores[:, 1:] > truth).sum(axis=1)
    tied = (scores[:, 1:] == truth).sum(axis=1)
    return np.clip(k - greater, 0, tied + 1) / (tied + 1)


def truth_ties(scores: np.ndarray) -> int:
    """Queries whose ground truth ties at least one other candidate."""
    return int((scores[:, 1:] == scores[:, :1]).any(axis=1).sum())


def _z(delta: float, b: float, c: float, n: int) -> float:
    """Tango's score statistic for ``p_b - p_c = delta``, with p_c at its maximum-likelihood value
    under that constraint (the larger root of 2n t^2 - B t - c delta (1 - delta) = 0)."""
    m = n - b - c
    big_b = (b + c) * (1 - delta) - 2 * delta * (c + m)
    t = (big_b + math.sqrt(max(big_b * big_b + 8 * n * c * delta * (1 - delta), 0.0))) / (4 * n)
    t = min(max(t, max(0.0, -delta)), (1 - delta) / 2)
    var = 2 * t + delta - delta * delta  # Var(d) per query: p_b + p_c - delta^2
    if var <= 0:
        return math.inf if b - c > n * delta else -math.inf if b - c < n * delta else 0.0
    return (b - c - n * delta) / math.sqrt(n * var)


def score_interval(b: float, c: float, n: int, z: float = Z95) -> tuple[float, float]:
    """Interval for ``(b - c) / n``: ``b`` queries gained, ``c`` lost, of ``n`` (fractions allowed).
    The statistic falls as delta rises, so each bound is one bisection."""
    if n <= 0:
        return (-1.0, 1.0)

    def solve(target: float) -> float:
        lo, hi = -1.0 + 1e-12, 1.0 - 1e-12
        for _ in range(80):
            mid = (lo + hi) / 2
            if _z(mid, b, c, n) > target:
                lo = mid
            else:
                hi = mid
        return (lo + hi) / 2

    return solve(z), solve(-z)


@dataclass(frozen=True)
class PairedDelta:
    """One direction's Rank@1 change, in points, with its interval."""

    delta: float  # other - reference, points of Rank@1
    low: float  # 95 % interval, points
    high: float
    queries: int
    gained: float  # queries (expected, under random tie-breaking) the other hits and the reference misses
    lost: float
    top1_agreement: float  # share of queries whose top-1 candidate is the same
    truth_ties_reference: int
    truth_ties_other: int

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    def to_dict(self) -> dict:
        return {**{k: round(v, 4) if isinstance(v, float) else v for k, v in asdict(self).items()},
                "half_width": round(self.half_width, 4)}


def paired_delta(reference: np.ndarray, other: np.ndarray, z: float = Z95) -> PairedDelta:
    """Rank@1 of ``other`` minus ``reference`` on the same (Q, C) lists (truth in column 0)."""
    if reference.shape != other.shape:
        raise ValueError(f"paired_delta: shapes differ, {reference.shape} vs {other.shape}")
    d = expected_hits(other) - expected_hits(reference)
    b, c, n = float(d[d > 0].sum()), float(-d[d < 0].sum()), len(d)
    low, high = score_interval(b, c, n, z)
    agree = float(np.mean(reference.argmax(1) == other.argmax(1))) if n else float("nan")
    return PairedDelta(100 * (b - c) / max(n, 1), 100 * low, 100 * high, n, b, c, agree, truth_ties(reference), truth_ties(other))


def inside(deltas: Iterable[PairedDelta], bar: float) -> bool:
    """Every direction's whole interval inside [-bar, bar]: the equivalence test, stricter than
    ``verdict``'s *within* (the bench's interim looks stop on it, the tuner chooses by it)."""
    return all(-bar <= d.low and d.high <= bar for d in deltas)


def verdict(deltas: list[PairedDelta], bar: float) -> str:
    """``within`` when every direction moved at most ``bar`` points and its interval is no wider
    than ``bar`` either side; ``beyond`` when some direction's whole interval lies outside
    [-bar, bar]; else ``undecided`` (more queries would tell)."""
    if any(d.low > bar or d.high < -bar for d in deltas):
        return BEYOND
    if all(abs(d.delta) <= bar and d.half_width <= bar for d in deltas):
        return WITHIN
    return UNDECIDED
