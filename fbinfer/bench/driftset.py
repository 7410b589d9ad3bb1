"""The drift set: the queries every bench row is ranked on against torch fp32.

It must be large enough for the drift bar to decide. A row's Rank@1 change is a paired
difference over queries (``fbinfer.evaluation.paired``): a path that keeps 97 % of PyTorch's
top-1 choices needs about 1,280 queries per direction before its 95 % interval is no wider than
1 point either side, where the eval lists have 240 (synthetic data) or fewer.

So the drift set is made of galleries: groups of G products (16 by default), one image and one
caption each, neighbours in (category, sub-category) so that most negatives are the hardest
kind. Every caption of a group is scored against every image of the group, G^2 pairs, and each
product is then a query in both directions (its image among the G captions, its caption among
the G images): 2G ranked lists of G candidates from G^2 pairs, G/2 pairs per list where separate
lists of G candidates need G. The queries of one gallery share negatives; a query's hit depends
on one row or column of the gallery's scores. docs/bench.md says what lists of 16 instead of
the eval's 101 cost in sensitivity (benchmarks/drift_set_size.py).

For a synthetic data folder (it has ``synth.json``) the products come from a held-out catalogue
drawn by the same generator with the drift set's seed (1; 2 where the catalogue itself was drawn
with 1): products no model trained on, made once in ``DATA/.fbinfer/drift-PxG-seedS/``. For
other data they come from the test split, as many as it has. ``fbinfer tune`` chooses precision
on lists of its own (another seed; the training split for other data), never on the bench's.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from fbinfer.bench.config import DriftSetConfig
from fbinfer.bundle.io_spec import INPUT_IDS, make_feeds
from fbinfer.data.candidates import first_of_each_product
from fbinfer.data.records import Item, read_jsonl
from fbinfer.data.source import DataSource
from fbinfer.errors import FbinferError
from fbinfer.fileio import read_json

if TYPE_CHECKING:
    from fbinfer.data.features import FeatureStore


def drift_data(data: DataSource, cfg: DriftSetConfig, split: str = "test") -> DataSource:
    """The data whose test split makes the drift set (see the module docstring); ``split`` is where
    the products come from when ``data`` is not synthetic."""
    synth = data.path / "synth.json"
    if data.is_h5 or not synth.is_file():
        return DataSource(data.path, [], getattr(data, split))
    from fbinfer.data.synth import SynthConfig, synthesize

    base = SynthConfig(**read_json(synth)["config"])
    seed = cfg.seed + (cfg.seed == base.seed)  # never the catalogue's own draw
    products = max(math.ceil(cfg.queries / cfg.candidates) * cfg.candidates, 20)  # the generator's least
    folder = data.cache_dir / f"drift-{products}x{cfg.candidates}-seed{seed}"
    if not (folder / "synth.json").is_file():
        synthesize(folder, replace(base, products=products, views=1, test_fraction=1.0, seed=seed, eval_queries=2,
                                   eval_negatives=1), force=True)
    test, _ = read_jsonl(folder / "test.jsonl")  # every product is a query: the catalogue has no training split
    return DataSource(folder, [], test)


def galleries(items: list[Item], size: int, queries: int, seed: int) -> list[list[int]]:
    """Groups of ``size`` item indices, one item per product, neighbours in (category, sub-category)
    after a seeded shuffle; enough whole groups for ``queries`` (or as many as there are), in a
    shuffled order so that every look sees all kinds of products."""
    rng = np.random.default_rng(seed)
    first = first_of_each_product(items)
    reps = [first[j] for j in rng.permutation(len(first))]
    reps.sort(key=lambda i: (items[i].category, items[i].subcategory))  # stable: random within a sub-category
    groups = [reps[k:k + size] for k in range(0, len(reps) - size + 1, size)]
    if not groups:
        raise FbinferError(f"drift set: {len(reps)} products, fewer than one gallery of {size} (--drift-candidates)")
    return [groups[j] for j in rng.permutation(len(groups))][:math.ceil(queries / size)]


def look_ends(looks: tuple[float, ...], galleries: int) -> list[int]:
    """The galleries scored by each look: the shares ``looks`` of ``galleries``, rounded up (a
    float's last bit aside: 0.3 of 80 is 24, not 25)."""
    return sorted({max(1, math.ceil(f * galleries - 1e-9)) for f in looks})


def lists_of(grids: np.ndarray) -> dict[str, np.ndarray]:
    """(galleries, G, G) flat indices of (caption a, image b) -> per direction, (galleries * G, G)
    indices of each query's candidates, its truth first: captions ranked for an image (a column of
    its gallery), images ranked for a caption (a row)."""
    g = grids.shape[1]
    order = np.array([[a] + [c for c in range(g) if c != a] for a in range(g)])  # (G, G): truth first
    rows = np.arange(g)[:, None]
    return {"image_to_text": grids[:, order, rows].reshape(-1, g), "text_to_image": grids[:, rows, order].reshape(-1, g)}


@dataclass
class DriftPairs:
    """Every pair of the drift set as ready feeds, in look order: the batches up to
    ``batches_at[k]`` hold every pair of the galleries of the first ``looks[k]`` queries of both
    directions, so a row can stop after any look having scored only what that look needs."""

    data: DataSource
    looks: list[int]  # queries per direction at each look
    batches: list[dict[str, np.ndarray]]
    batches_at: list[int]
    grids: np.ndarray  # (galleries, G, G): index into the flat scores of (caption a, image b) of each gallery

    @classmethod
    def build(cls, data: DataSource, store: FeatureStore, tokenizer, cfg: DriftSetConfig) -> DriftPairs:
        """``store`` must hold the features of ``data.test``."""
        groups = galleries(data.test, cfg.candidates, cfg.queries, cfg.seed)
        ends = look_ends(cfg.looks, len(groups))
        batches: list[dict[str, np.ndarray]] = []
        batches_at, where, start = [], {}, 0
        for end in ends:
            pairs = sorted(((t, i) for g in groups[start:end] for t in g for i in g),
                           key=lambda p: (len(data.test[p[0]].text), p))  # like lengths batch together
            where.update({p: k for k, p in enumerate(pairs, start=len(where))})
            for k in range(0, len(pairs), cfg.batch_size):
                chunk = pairs[k:k + cfg.batch_size]
                batches.append(make_feeds(tokenizer, store.get([data.test[i] for _, i in chunk]).numpy(),
                                          [data.test[t].text for t, _ in chunk]))
            batches_at.append(len(batches))
            start = end
        grids = np.array([[[where[(t, i)] for i in g] for t in g] for g in groups])
        return cls(data, [e * cfg.candidates for e in ends], batches, batches_at, grids)

    @property
    def pairs(self) -> int:
        return sum(len(b[INPUT_IDS]) for b in self.batches)

    def matrices(self, flat: np.ndarray, queries: int, grids: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Per direction, (queries, candidates) scores from the flat scores (truth in column 0);
        ``grids`` picks other galleries from the same pairs (benchmarks/drift_set_size.py cuts them)."""
        return {d: flat[p[:queries]] for d, p in lists_of(self.grids if grids is None else grids).items()}

    def describe(self) -> dict:
        n, g, _ = self.grids.shape
        return {"data": str(self.data.path), "queries_per_direction": int(n * g), "candidates": int(g), "looks": self.looks,
                "pairs": self.pairs, "design": f"galleries of {g} products: every caption x every image of a gallery"}
