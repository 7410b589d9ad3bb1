import numpy as np
import pytest

from fbinfer.data.candidates import Query
from fbinfer.data.records import Item
from fbinfer.evaluation.evaluate import misses_by_kind
from fbinfer.evaluation.metrics import accuracy, auc, rank_at_k, ranks_of_truth


def test_rank_at_k_hand_made_matrix():
    scores = np.array([
        [0.9, 0.1, 0.2, 0.3],  # truth first -> rank 1
        [0.5, 0.9, 0.1, 0.2],  # one above -> rank 2
        [0.1, 0.2, 0.3, 0.4],  # all above -> rank 4
        [0.7, 0.7, 0.0, 0.0],  # a tie counts against the truth -> rank 2
    ])
    assert ranks_of_truth(scores).tolist() == [1, 2, 4, 2]
    assert ranks_of_truth(scores, ties_against=False).tolist() == [1, 2, 4, 1]  # the tie for the truth
    r = rank_at_k(scores, ks=(1, 2, 5))
    assert r == {"rank1": 25.0, "rank2": 75.0, "rank5": 100.0}


def test_constant_scorer_ranks_last():
    assert ranks_of_truth(np.zeros((3, 101))).tolist() == [101, 101, 101]


def test_auc_and_accuracy_hand_cases():
    assert auc(np.array([3.0, 4.0]), np.array([1.0, 2.0])) == 1.0
    assert auc(np.array([1.0, 2.0]), np.array([3.0, 4.0])) == 0.0
    # pos {1, 3}, neg {2, 2}: pairs (1>2? no) (1>2? no) (3>2 yes) (3>2 yes) -> 0.5
    assert auc(np.array([1.0, 3.0]), np.array([2.0, 2.0])) == 0.5
    assert auc(np.array([2.0]), np.array([2.0])) == 0.5  # tie counts half
    assert accuracy(np.array([1.0, -1.0]), np.array([-2.0, 0.5])) == pytest.approx(50.0)


def test_misses_by_kind_names_what_the_best_wrong_candidate_shares_with_the_truth():
    items = [Item(f"i{k}.png", f"t{k}", cat, sub, f"p{k}") for k, (cat, sub) in
             enumerate([("TOPS", "shirt"), ("TOPS", "shirt"), ("TOPS", "blouse"), ("BAGS", "tote")])]
    queries = [Query(0, [0, 1, 2, 3])] * 4
    scores = np.array([
        [0.9, 0.1, 0.2, 0.3],  # hit
        [0.1, 0.9, 0.2, 0.3],  # best wrong: same sub-category
        [0.1, 0.2, 0.9, 0.3],  # same category, other sub-category
        [0.5, 0.2, 0.3, 0.5],  # a tie with another category's candidate counts as a miss
    ])
    assert misses_by_kind(queries, items, scores) == {"same_subcategory": 1, "same_category": 1, "other_category": 1}
