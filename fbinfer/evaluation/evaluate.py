"""``fbinfer eval``: the paper's Rank@K protocol on the fixed candidate lists, for any scorer.

A scorer maps aligned (text item, image item) pairs to match logits. The torch model is one
scorer; exported graphs and engines are others, so every backend is ranked on the same pairs.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from fbinfer.backends.base import Runner
from fbinfer.backends.pytorch import TorchRunner
from fbinfer.bundle.io_spec import LOGIT, make_feeds
from fbinfer.data.candidates import DIRECTIONS, Query
from fbinfer.data.features import FeatureStore
from fbinfer.data.records import Item
from fbinfer.data.source import DataSource
from fbinfer.errors import FbinferError
from fbinfer.evaluation.metrics import accuracy, auc, rank_at_k, ranks_of_truth
from fbinfer.model.fashionbert import FashionBert
from fbinfer.model.tokenizer import TextTokenizer

Scorer = Callable[[list[Item], list[Item]], np.ndarray]
MISS_KINDS = ("same_subcategory", "same_category", "other_category")


@dataclass
class RunnerScorer:
    """Any backend's runner as a scorer: the same tokenization and features for every backend."""

    runner: Runner
    tokenizer: TextTokenizer
    store: FeatureStore

    def __call__(self, texts: list[Item], images: list[Item]) -> np.ndarray:
        feeds = make_feeds(self.tokenizer, self.store.get(images).numpy(), [x.text for x in texts])
        return self.runner.infer(feeds)[LOGIT]


def torch_scorer(model: FashionBert, tokenizer: TextTokenizer, store: FeatureStore) -> RunnerScorer:
    """The PyTorch reference: fp32 eager on CPU."""
    return RunnerScorer(TorchRunner(model).activate(), tokenizer, store)


def eval_pairs(data: DataSource, queries: int | None = None) -> list[tuple[int, int]]:
    """Every distinct (text item, image item) pair the protocol needs, indices into data.test."""
    pairs: set[tuple[int, int]] = set()
    for d in DIRECTIONS:
        for q in data.candidates.direction(d, queries):
            pairs.update((q.query, c) if d == "text_to_image" else (c, q.query) for c in q.candidates)
    return sorted(pairs, key=lambda p: (len(data.test[p[0]].text), p))  # similar lengths batch together


def score_pairs(scorer: Scorer, data: DataSource, pairs: list[tuple[int, int]], batch_size: int = 64,
                desc: str = "scoring pairs") -> dict[tuple[int, int], float]:
    out: dict[tuple[int, int], float] = {}
    for b in tqdm(range(0, len(pairs), batch_size), desc=desc, unit="batch"):
        chunk = pairs[b : b + batch_size]
        logits = scorer([data.test[t] for t, _ in chunk], [data.test[i] for _, i in chunk])
        out.update(zip(chunk, logits.tolist()))
    return out


def score_matrices(data: DataSource, scores: dict[tuple[int, int], float], queries: int | None = None) -> dict[str, np.ndarray]:
    """Per direction, (queries, candidates) scores with the ground truth in column 0."""
    return {d: np.array([[scores[(q.query, c) if d == "text_to_image" else (c, q.query)] for c in q.candidates]
                         for q in data.candidates.direction(d, queries)]) for d in DIRECTIONS}


def misses_by_kind(queries: list[Query], items: list[Item], scores: np.ndarray) -> dict[str, int]:
    """Rank@1 misses, by how the best-scored wrong candidate relates to the truth: whether the
    model confuses fine attributes (same sub-category) or something coarser."""
    out = dict.fromkeys(MISS_KINDS, 0)
    for q, row, rank in zip(queries, scores, ranks_of_truth(scores)):
        if rank == 1:
            continue
        truth, wrong = items[q.truth], items[q.candidates[1 + int(row[1:].argmax())]]
        same_sub, same_cat = wrong.subcategory == truth.subcategory, wrong.category == truth.category
        out[MISS_KINDS[0] if same_sub else MISS_KINDS[1] if same_cat else MISS_KINDS[2]] += 1
    return out


def rank_metrics(data: DataSource, scores: dict[tuple[int, int], float], queries: int | None = None) -> dict:
    """The eval JSON: Rank@1/5/10 per direction (percent) with the misses by kind, TIA accuracy
    and AUC (matched vs. the first same-sub-category negative of each query, so the two classes
    are balanced)."""
    result: dict = {}
    pos, neg = [], []
    for d, mat in score_matrices(data, scores, queries).items():
        misses = misses_by_kind(data.candidates.direction(d, queries), data.test, mat)
        result[d] = {**rank_at_k(mat), "queries": len(mat), "candidates": mat.shape[1], "misses": misses}
        pos.append(mat[:, 0])
        neg.append(mat[:, 1])
    p, n = np.concatenate(pos), np.concatenate(neg)
    result["accuracy"] = round(accuracy(p, n), 4)
    result["auc"] = round(auc(p, n), 6)
    return result


def evaluate(scorer: Scorer, data: DataSource, queries: int | None = None, batch_size: int = 64,
             name: str = "the model") -> tuple[dict, dict[tuple[int, int], float]]:
    """(rank metrics, raw pair scores): the scores are kept so backends can be compared pair by pair.
    Non-finite scores are an error: ``scores >= truth`` is false for NaN, so they would rank first."""
    scores = score_pairs(scorer, data, eval_pairs(data, queries), batch_size)
    if not np.isfinite(np.fromiter(scores.values(), dtype=np.float64)).all():
        raise FbinferError(f"{name}: non-finite scores (NaN or inf) in eval; its weights are broken")
    return rank_metrics(data, scores, queries), scores
