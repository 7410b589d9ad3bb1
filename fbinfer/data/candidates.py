"""The fixed evaluation candidate lists (the paper's Rank@K protocol).

Each query ranks its ground truth among ``num_negatives`` negatives from other products of
the same sub-category, topped up from other sub-categories where one is too small. The lists
are made once, saved beside the data and reused, so every model and backend is ranked on
identical candidates.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from fbinfer.data.records import Item
from fbinfer.errors import FbinferError

DIRECTIONS = ("image_to_text", "text_to_image")
SHORT = {"image_to_text": "i2t", "text_to_image": "t2i"}


@dataclass(frozen=True)
class Query:
    query: int  # index into the test items
    candidates: list[int]  # test-item indices; candidates[0] is the ground truth

    @property
    def truth(self) -> int:
        return self.candidates[0]


@dataclass(frozen=True)
class CandidateLists:
    queries: list[int]  # test items used as queries (one per product), in a fixed shuffled order
    image_to_text: list[Query]
    text_to_image: list[Query]
    num_negatives: int
    seed: int

    def direction(self, name: str, limit: int | None = None) -> list[Query]:
        qs: list[Query] = getattr(self, name)
        return qs[:limit] if limit else qs

    def to_dict(self) -> dict:
        return {
            "version": 1, "seed": self.seed, "num_negatives": self.num_negatives, "queries": self.queries,
            **{d: [q.candidates for q in getattr(self, d)] for d in DIRECTIONS},
        }

    @classmethod
    def from_dict(cls, d: dict, n_items: int, where: str) -> CandidateLists:
        try:
            lists = {k: [Query(c[0], list(c)) for c in d[k]] for k in DIRECTIONS}
            out = cls(list(d["queries"]), lists["image_to_text"], lists["text_to_image"], int(d["num_negatives"]), int(d["seed"]))
        except (KeyError, TypeError, IndexError, ValueError) as e:
            raise FbinferError(f"{where}: malformed candidate lists ({type(e).__name__}: {e})") from None
        for qs in lists.values():
            for q in qs:
                if any(not 0 <= c < n_items for c in q.candidates):
                    raise FbinferError(f"{where}: candidate index out of range for {n_items} test items")
        return out


def first_of_each_product(items: list[Item]) -> list[int]:
    """The index of each product's first item (its first image), in the order products appear."""
    first: dict[str, int] = {}
    for i, it in enumerate(items):
        first.setdefault(it.product_id, i)
    return list(first.values())


def build_candidates(test: list[Item], max_queries: int = 1000, num_negatives: int = 100, seed: int = 0) -> CandidateLists:
    """One query item per product (its first image), both directions, fixed by ``seed``."""
    rng = np.random.default_rng(seed)
    reps = first_of_each_product(test)
    if len(reps) < 2:
        raise FbinferError("test split: needs at least 2 products to rank anything")
    by_sub: dict[str, list[int]] = defaultdict(list)
    for i in reps:
        by_sub[test[i].subcategory].append(i)
    order = [reps[j] for j in rng.permutation(len(reps))][:max_queries]
    negatives = min(num_negatives, len(reps) - 1)

    def negatives_for(q: int) -> list[int]:
        same = [i for i in by_sub[test[q].subcategory] if i != q]
        picked = list(rng.choice(same, size=min(negatives, len(same)), replace=False)) if same else []
        if len(picked) < negatives:  # small sub-category: top up from the others
            others = [i for i in reps if test[i].subcategory != test[q].subcategory]
            picked += list(rng.choice(others, size=negatives - len(picked), replace=False))
        return [int(i) for i in picked]

    i2t = [Query(q, [q] + negatives_for(q)) for q in order]
    t2i = [Query(q, [q] + negatives_for(q)) for q in order]
    return CandidateLists(order, i2t, t2i, negatives, seed)
