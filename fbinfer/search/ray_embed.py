"""Catalogue embedding on Ray Data: ``map_batches`` over a pool of actors, each holding the model.

The same code runs on a laptop's local Ray and on a cluster (``RAY_ADDRESS``, or ``ray.init``
before calling). Rows carry their position, so the vectors come back in catalogue order and equal
the single-process path's (tested). On 2 cores Ray's start-up and serialisation make it slower
than one process (docs/results/search.md); it pays where the catalogue outgrows one machine.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from fbinfer.errors import FbinferError
from fbinfer.search.embedder import TARGETS, embed_items


class EmbedActor:
    """One model per actor, loaded once; a batch of rows -> their vectors."""

    def __init__(self, model: str, backend: str | None):
        from fbinfer.search.embedder import open_embedder

        if Path(model).is_file():  # embed.pt: share the node's cores among the actors (a bundle's actors never import torch)
            from fbinfer.threads import torch_threads

            torch_threads(int(os.environ.get("FBINFER_ACTORS", "1")))
        self.emb = open_embedder(model, backend)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        vecs = embed_items(self.emb, [str(t) for t in batch["text"]], batch["patches"], desc="actor")
        return {"row": batch["row"], **{t: vecs[t] for t in TARGETS}}


def ray_embed(model: Path, texts: list[str], patches: np.ndarray, backend: str | None = None, actors: int | None = None,
              batch_size: int = 256) -> dict[str, np.ndarray]:
    """Text, image and product vectors for every row, computed by ``actors`` Ray actors (default: one per CPU Ray sees)."""
    try:
        import ray
    except ImportError:
        raise FbinferError("--ray needs Ray Data: pip install -e '.[search]'") from None
    started = not ray.is_initialized()
    if started:
        ray.init(address=os.environ.get("RAY_ADDRESS"), include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    try:
        actors = actors or max(1, int(ray.available_resources().get("CPU", 1)))
        os.environ["FBINFER_ACTORS"] = str(actors)
        rows = [{"row": i, "text": t, "patches": np.asarray(p, dtype=np.float16)} for i, (t, p) in enumerate(zip(texts, patches))]
        ds = ray.data.from_items(rows).map_batches(EmbedActor, fn_constructor_kwargs={"model": str(model), "backend": backend},
                                                   batch_size=batch_size, concurrency=actors, num_cpus=1, batch_format="numpy")
        parts = list(ds.iter_batches(batch_size=None, batch_format="numpy"))
    finally:
        if started:
            ray.shutdown()
    order = np.concatenate([p["row"] for p in parts])
    out = {}
    for t in TARGETS:
        vecs = np.concatenate([p[t] for p in parts])
        out[t] = np.empty_like(vecs)
        out[t][order] = vecs
    if sorted(order.tolist()) != list(range(len(texts))):
        raise FbinferError("--ray: the actors returned another set of rows than they were given")
    return out
