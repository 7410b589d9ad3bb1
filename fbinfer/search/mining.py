"""Negatives mined from the recall stage, as ALBEF and BLIP train their matching heads: for each
training item, the other products whose images the dual encoder ranks highest for its caption.
These are the near-duplicates a reranker sees in the dual encoder's top-k and must separate; a
random or same-sub-category negative is mostly easier than that.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from fbinfer.data.features import FeatureStore
from fbinfer.data.records import Item
from fbinfer.data.source import DataSource
from fbinfer.search.embedder import embed_items, open_embedder


def mine_negatives(embed_model: Path, data: DataSource, items: list[Item], k: int, backend: str | None = None) -> list[list[int]]:
    """For item i, the indices of the ``k`` items of other products whose image vectors are nearest
    its caption's vector (cosine), best first (``fbinfer train --mine-negatives``)."""
    emb = open_embedder(embed_model, backend)
    patches = FeatureStore(data, emb.config.feature_config()).ensure(items).get(items).numpy()
    vec = embed_items(emb, [it.text for it in items], patches, desc="mining negatives")
    products = np.array([it.product_id for it in items])
    out = []
    for b in range(0, len(items), 1024):  # (1024, N) similarities at a time
        sim = vec["text"][b:b + 1024] @ vec["image"].T
        sim[products[b:b + 1024, None] == products[None, :]] = -np.inf  # the item's own product is no negative
        top = np.argsort(-sim, axis=1, kind="stable")[:, :k]
        out += [[int(j) for j in row if np.isfinite(s[j])] for row, s in zip(top, sim)]
    return out
