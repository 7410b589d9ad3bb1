"""Paired Rank@1 differences: expected hits under ties, the score interval (a closed form, a
coverage simulation), hand-made matrices with known discordance and ties, the bar's verdict, and
the drift set's default size against its goal."""
from __future__ import annotations

import numpy as np
import pytest

from fbinfer.bench.config import DriftSetConfig
from fbinfer.evaluation.paired import BEYOND, UNDECIDED, WITHIN, Z95, expected_hits, paired_delta, score_interval, truth_ties, verdict


def test_expected_hits_break_ties_at_random():
    s = np.array([[2.0, 1, 0], [1, 1, 0], [1, 1, 1], [0, 1, 2], [1, 2, 1]])
    assert expected_hits(s).tolist() == pytest.approx([1, 1 / 2, 1 / 3, 0, 0])
    assert expected_hits(s, k=2).tolist() == pytest.approx([1, 1, 2 / 3, 0, 1 / 2])  # last: one above, one tied for 2nd
    assert truth_ties(s) == 3


def test_no_discordant_query_gives_the_closed_form_bound():
    """With b = c = 0 the score statistic is sqrt(n d / (1 - d)), so the bound is z^2 / (n + z^2)."""
    for n in (50, 400, 1300):
        low, high = score_interval(0, 0, n)
        assert high == pytest.approx(Z95**2 / (n + Z95**2), rel=1e-6) and low == pytest.approx(-high, rel=1e-6)


def test_interval_covers_the_true_difference_95_percent_of_the_time():
    rng = np.random.default_rng(0)
    for p_gain, p_loss, n in ((0.01, 0.03, 300), (0.02, 0.02, 1300), (0.003, 0.0, 400)):
        hits = 0
        for _ in range(400):
            u = rng.random(n)
            low, high = score_interval(float((u < p_gain).sum()), float(((u >= p_gain) & (u < p_gain + p_loss)).sum()), n)
            hits += low <= p_gain - p_loss <= high
        assert hits / 400 >= 0.92, (p_gain, p_loss, n, hits)


def test_paired_delta_on_hand_made_lists():
    """10 queries, truth in column 0. The reference hits all; the other misses two outright and
    ties the truth with one negative on a third (half a hit): -2.5 of 10 = -25 points."""
    ref = np.tile([3.0, 1.0, 0.0], (10, 1))
    other = ref.copy()
    other[0] = [0.0, 1.0, 2.0]
    other[1] = [1.0, 2.0, 0.0]
    other[2] = [1.0, 1.0, 0.0]
    d = paired_delta(ref, other)
    assert d.delta == pytest.approx(-25.0) and (d.gained, d.lost) == (0.0, 2.5)
    assert d.top1_agreement == pytest.approx(0.8)  # argmax keeps column 0 on the tie
    assert (d.truth_ties_reference, d.truth_ties_other) == (0, 1)
    assert d.low < -25.0 < 0 < d.high  # 2.5 of 10 queries cannot exclude chance
    gained = paired_delta(other, ref)  # the same lists the other way round
    assert gained.delta == pytest.approx(25.0) and gained.low == pytest.approx(-d.high) and gained.high == pytest.approx(-d.low)


def test_verdict_needs_a_narrow_interval_inside_the_bar():
    ref = np.tile([3.0, 1.0, 0.0], (1300, 1))
    same = paired_delta(ref, ref)
    assert same.half_width < 0.3 and verdict([same, same], bar=1.0) == WITHIN
    few = paired_delta(ref[:100], ref[:100])  # no change, but 100 queries cannot say "within 1 point"
    assert few.half_width > 1 and verdict([few, few], bar=1.0) == UNDECIDED
    worse = ref.copy()
    worse[:60] = [0.0, 1.0, 2.0]  # 60 of 1,300 lost: -4.6 points
    lost = paired_delta(ref, worse)
    assert lost.high < -1 and verdict([same, lost], bar=1.0) == BEYOND
    assert verdict([same, lost], bar=4.0) == UNDECIDED  # beyond a 4-point bar, but its interval [-5.9, -3.6] reaches inside
    assert verdict([same, lost], bar=5.0) == WITHIN  # |-4.6| <= 5 and a half-width of 1.1 <= 5: the rule


def test_default_drift_set_decides_a_path_with_97_percent_agreement():
    """The goal: with the defaults, 3 % of queries changing their top-1 (every change a hit gained
    or lost, the worst case) gives a 95 % half-width of at most 1 point."""
    n = DriftSetConfig().queries
    for gained, lost in ((0.015 * n, 0.015 * n), (0.0, 0.03 * n), (0.01 * n, 0.02 * n)):
        low, high = score_interval(gained, lost, n)
        assert 100 * (high - low) / 2 <= 1.0


def test_default_first_look_settles_a_row_that_changes_no_query():
    """The bench's first look is the fewest whole galleries whose interval with no query changed
    lies inside the 1-point bar (an exact row stops there); one gallery fewer would not."""
    from fbinfer.bench.driftset import look_ends

    cfg = DriftSetConfig()
    galleries = -(-cfg.queries // cfg.candidates)
    first = look_ends(cfg.looks, galleries)[0]
    assert look_ends(cfg.looks, galleries) == [24, 40, 60, 80]  # 0.3 of 80 is 24 galleries, not 25
    low, high = score_interval(0, 0, first * cfg.candidates)
    assert -0.01 <= low and high <= 0.01
    low, high = score_interval(0, 0, (first - 1) * cfg.candidates)
    assert high > 0.01
