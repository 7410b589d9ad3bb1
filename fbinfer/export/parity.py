"""Parity: a graph against the PyTorch model on held-out real pairs, Polygraphy-comparator style.

The pairs are the first queries of the fixed Rank@K candidate lists (test split), each with its
101 candidates, so besides the logit differences we can say how often the graph picks the same
top-1 candidate as PyTorch (Rank@1 agreement)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from fbinfer.backends.base import Runner
from fbinfer.bundle.io_spec import LOGIT, PATCHES, make_feeds
from fbinfer.data.candidates import DIRECTIONS, SHORT
from fbinfer.data.features import FeatureStore
from fbinfer.data.records import Item
from fbinfer.data.source import DataSource, load_data
from fbinfer.evaluation.paired import paired_delta
from fbinfer.model.checkpoint import Checkpoint, load_checkpoint


@dataclass
class ParitySet:
    """Feeds in batches, for each query the slice of the flat logit vector holding its candidates
    and its direction, and each pair's image item (in that flat order)."""
    batches: list[dict[str, np.ndarray]]
    queries: list[slice]
    images: list[Item]
    directions: list[str]

    @classmethod
    def from_data(cls, data: DataSource, store: FeatureStore, tokenizer, queries: int, batch_size: int = 64) -> ParitySet:
        """``store`` must already hold the test split's features (``ensure``d by the caller)."""
        texts, images, spans, directions = [], [], [], []
        for d in DIRECTIONS:
            for q in data.candidates.direction(d, queries):
                start = len(texts)
                for c in q.candidates:
                    t, i = (q.query, c) if d == "text_to_image" else (c, q.query)
                    texts.append(data.test[t]), images.append(data.test[i])
                spans.append(slice(start, len(texts)))
                directions.append(d)
        batches = [make_feeds(tokenizer, store.get(images[b:b + batch_size]).numpy(), [x.text for x in texts[b:b + batch_size]])
                   for b in range(0, len(texts), batch_size)]
        return cls(batches, spans, images, directions)

    def with_patches(self, features: dict[str, np.ndarray]) -> ParitySet:
        """The same pairs with each image's patches taken from ``features`` (image -> (P, D)): the
        matcher end to end with another extractor."""
        batches, start = [], 0
        for b in self.batches:
            n = len(b[PATCHES])
            batches.append({**b, PATCHES: np.stack([features[it.image] for it in self.images[start:start + n]]).astype(np.float32)})
            start += n
        return ParitySet(batches, self.queries, self.images, self.directions)

    def logits(self, runner: Runner, desc: str) -> np.ndarray:
        with runner:
            return np.concatenate([runner.infer(f)[LOGIT] for f in tqdm(self.batches, desc=desc, unit="batch", leave=False)])


def held_out(model: Path, data_path: Path, queries: int) -> tuple[Checkpoint, DataSource, FeatureStore, ParitySet]:
    """A checkpoint, its data with every feature cached, and the parity pairs of ``queries`` per
    direction: what the precision experiments in benchmarks/ start from."""
    ck, data = load_checkpoint(model), load_data(data_path)
    store = FeatureStore(data, ck.config).ensure(data.train + data.test)
    return ck, data, store, ParitySet.from_data(data, store, ck.tokenizer(), queries)


def compare(reference: np.ndarray, other: np.ndarray, queries: list[slice], k: int = 5,
            directions: list[str] | None = None) -> dict:
    """max/mean |delta logit|, the same relative to the reference's spread, how often each query
    keeps PyTorch's top-1 candidate and its top-k set, and with ``directions`` (one per query) the
    Rank@1 change per direction with its paired 95 % interval (``fbinfer.evaluation.paired``): on a
    few parity queries that interval is wide, and says so; ``fbinfer bench`` measures on enough.

    The spread is the mean over queries of the std of their candidates' reference logits: a
    difference is only small against the gaps it could reorder, and a model whose scores are
    near-ties makes every absolute tolerance vacuous (a constant graph would pass it)."""
    ref, got = reference.astype(np.float64), other.astype(np.float64)
    diff = np.abs(ref - got)
    spread = float(np.mean([ref[s].std() for s in queries])) if queries else float(ref.std())
    agree = [int(np.argmax(ref[s]) == np.argmax(got[s])) for s in queries]
    top = [len(set(np.argsort(-ref[s])[:k]) & set(np.argsort(-got[s])[:k])) / min(k, len(ref[s])) for s in queries]
    return {"max_abs_logit_diff": float(diff.max()), "mean_abs_logit_diff": float(diff.mean()),
            "logit_spread": spread, "max_rel_logit_diff": float(diff.max() / spread) if spread > 0 else float("inf"),
            "rank1_agreement": float(np.mean(agree)) if agree else float("nan"),
            f"top{k}_agreement": float(np.mean(top)) if top else float("nan"), "pairs": int(diff.size),
            "queries": len(queries), **_rank1_change(ref, got, queries, directions or [])}


def _rank1_change(ref: np.ndarray, got: np.ndarray, queries: list[slice], directions: list[str]) -> dict:
    """Per direction, {delta, low, high, ...} of Rank@1 (truth first in each query's candidates)."""
    out = {}
    for d in dict.fromkeys(directions):
        spans = [s for s, x in zip(queries, directions) if x == d]
        if len({s.stop - s.start for s in spans}) == 1:
            out[SHORT[d]] = paired_delta(np.stack([ref[s] for s in spans]), np.stack([got[s] for s in spans])).to_dict()
    return out
