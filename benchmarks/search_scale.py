"""Catalogue search at scale: index build time, size, query latency and approximate recall at 100k
and 1M items, and the end-to-end latency of a reranked text query over 100k items.

Drawing 100,000 synthetic products is slow here, so the catalogue is grown from the real
vectors of the data's items: each synthetic item is a real item's image vector plus Gaussian
noise (std ``--noise`` per dimension, then re-normalised; with 256 dimensions the default 0.03
puts a copy at cosine ~0.9 to its source, about as far as two views of one product), and it
keeps its source's patch features for the reranker. Quality is measured on the real test
catalogue only (``fbinfer eval-retrieval``); these figures are speed, size and recall against
exact search.

    python benchmarks/search_scale.py --model runs/embed.pt --data runs/data --rerank runs/student2.bundle \\
        --json docs/results/search_scale.json
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from fbinfer import terminal
from fbinfer.data.features import FeatureStore
from fbinfer.data.source import load_data
from fbinfer.search.embedder import embed_items, open_embedder
from fbinfer.search.index import CatalogIndex, fill_faiss, item_record, make_faiss, vocab_sha256, write_index


def grow(vectors: np.ndarray, n: int, noise: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` unit vectors: the real ones, then noisy copies; and each row's source row."""
    rng = np.random.default_rng(seed)
    src = np.concatenate([np.arange(len(vectors)), rng.integers(0, len(vectors), n - len(vectors))])[:n]
    out = vectors[src] + np.where(np.arange(n)[:, None] < len(vectors), 0.0, rng.normal(0, noise, (n, vectors.shape[1]))).astype(np.float32)
    return out / np.linalg.norm(out, axis=1, keepdims=True), src


def time_search(index, queries: np.ndarray, k: int) -> tuple[dict, np.ndarray]:
    ms, rows = [], []
    for q in queries:
        t0 = time.perf_counter()
        _, r = index.search(q[None], k)
        ms.append(1000 * (time.perf_counter() - t0))
        rows.append(r[0])
    return {"p50": round(float(np.percentile(ms, 50)), 3), "p99": round(float(np.percentile(ms, 99)), 3)}, np.array(rows)


def scale_rows(image: np.ndarray, queries: np.ndarray, sizes: list[int], kinds: list[str], noise: float, console: Console,
               hnsw_max: int) -> list[dict]:
    import faiss

    rows = []
    for n in sizes:
        vecs, _ = grow(image, n, noise)
        exact = None
        for kind in ["flat", *[k for k in kinds if k != "flat" and (k != "hnsw" or n <= hnsw_max)]]:
            index = make_faiss(kind, vecs.shape[1], n)
            t0 = time.perf_counter()
            fill_faiss(index, vecs)
            build = time.perf_counter() - t0
            lat, found = time_search(index, queries, 64)
            if kind == "flat":
                exact = found
            recall = float(np.mean([len(set(a) & set(b)) / 64 for a, b in zip(found, exact)]))
            row = {"items": n, "kind": kind, "build_s": round(build, 1), "bytes": len(faiss.serialize_index(index)),
                   "search_ms": lat, "recall@64_vs_exact": round(recall, 4)}
            rows.append(row)
            console.print(row)
            del index
    return rows


def grown_index(model: Path, data, n: int, noise: float, work: Path, embed_backend: str | None = None) -> tuple[CatalogIndex, float]:
    """A real index of ``n`` items on disk at ``work``: the data's items, then noisy copies of their
    vectors (each keeping its source's patch features); and the seconds ``write_index`` took."""
    emb = open_embedder(model, embed_backend)
    items = data.train + data.test
    patches = FeatureStore(data, emb.config.feature_config()).ensure(items).get(items).numpy()
    vec = embed_items(emb, [it.text for it in items], patches)
    grown = {}
    for t in ("image", "text", "product"):
        grown[t], src = grow(vec[t], n, noise)
    records = [item_record(data, items[s], int(s)) | {"synthetic": bool(i >= len(items))} for i, s in enumerate(src)]
    meta = {"model": str(model.resolve()), "model_sha256": emb.identity, "dim": emb.config.dim, "feature_key": emb.config.feature_key,
            "vocab_sha256": vocab_sha256(emb.vocab), "data": f"{data.path} grown to {n} (noise {noise})", "split": "all"}
    t0 = time.perf_counter()
    write_index(work, meta, records, grown, patches, "auto")
    return CatalogIndex(work, emb), time.perf_counter() - t0


def end_to_end(model: Path, data, rerank: Path, n: int, noise: float, depth: int, queries: int, work: Path, console: Console,
               backend: str, precision: str, hints: dict, embed_backend: str | None) -> dict:
    """A real CatalogIndex of ``n`` items on disk, a text query embedded, searched and reranked at ``depth``."""
    import fbinfer

    idx, build = grown_index(model, data, n, noise, work, embed_backend)
    emb = idx.embedder
    matcher = fbinfer.load(rerank, backend=backend, precision=precision, **({"hints": hints} if hints else {}))
    texts = list(dict.fromkeys(it.text for it in data.test))[:queries]
    idx.search(text=texts[0], k=10, rerank=matcher, depth=depth)  # warm-up: compile, caches
    stages: dict[str, list[float]] = {"embed": [], "search": [], "rerank": [], "total": [], "search_call": []}
    for q in texts:  # each query by stages, then through the library call, in turns
        t0 = time.perf_counter()
        v = emb.texts([q])
        t1 = time.perf_counter()
        _, rows = idx.search_vectors("image", v, depth)
        t2 = time.perf_counter()
        matcher.score([q] * depth, idx.item_patches(rows[0]))
        t3 = time.perf_counter()
        idx.search(text=q, k=10, rerank=matcher, depth=depth)
        t4 = time.perf_counter()
        for k, a, b in (("embed", t0, t1), ("search", t1, t2), ("rerank", t2, t3), ("total", t0, t3), ("search_call", t3, t4)):
            stages[k].append(1000 * (b - a))
    out = {"items": n, "depth": depth, "embedder": emb.name, "queries": len(texts), "kind": idx.meta["kind"], "faiss": idx.meta["faiss"]["image"],
           "write_index_s": round(build, 1), "reranker": matcher.backend, "precision": precision, "hints": hints,
           "stages_ms": {k: {"p50": round(float(np.percentile(v, 50)), 2), "p99": round(float(np.percentile(v, 99)), 2)} for k, v in stages.items()},
           "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}
    console.print(out)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--rerank", type=Path, required=True, help="the 2 x 384 student's bundle")
    ap.add_argument("--sizes", default="100000,1000000")
    ap.add_argument("--kinds", default="flat,hnsw,ivfpq")
    ap.add_argument("--noise", type=float, default=0.03)
    ap.add_argument("--hnsw-max", type=int, default=100_000, help="skip HNSW above this size (its build is the slow one here)")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--depth", type=int, default=32)
    ap.add_argument("--embed-backend", help="for an embedding bundle: onnxruntime or openvino")
    ap.add_argument("--backend", default="openvino")
    ap.add_argument("--precision", default="int8")
    ap.add_argument("--hints", default="", help="OpenVINO properties, k=v,k=v (e.g. INFERENCE_PRECISION_HINT=bf16)")
    ap.add_argument("--work", type=Path, default=Path("runs/scale.index"))
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    console = terminal.console()
    data = load_data(args.data)
    emb = open_embedder(args.model, args.embed_backend)
    items = data.train + data.test
    patches = FeatureStore(data, emb.config.feature_config()).ensure(items).get(items).numpy()
    t0 = time.perf_counter()
    vec = embed_items(emb, [it.text for it in items], patches)
    embed_rate = len(items) / (time.perf_counter() - t0)
    queries = emb.texts(list(dict.fromkeys(it.text for it in data.test))[:args.queries])
    hints = dict(kv.split("=", 1) for kv in args.hints.split(",") if kv)
    result = {"date": time.strftime("%Y-%m-%d"), "cpus": os.cpu_count(), "model": str(args.model), "noise": args.noise,
              "embed_items_per_s": round(embed_rate, 1),
              "scale": scale_rows(vec["image"], queries, [int(s) for s in args.sizes.split(",") if s], args.kinds.split(","), args.noise, console,
                                  args.hnsw_max),
              "end_to_end": end_to_end(args.model, data, args.rerank, 100_000, args.noise, args.depth, args.queries, args.work, console,
                                       args.backend, args.precision, hints, args.embed_backend)}
    t = Table(title="index at scale (2 cores)")
    for c in ("items", "kind", "build s", "MB", "search p50 ms", "p99 ms", "recall@64 vs exact"):
        t.add_column(c, justify="right")
    for r in result["scale"]:
        t.add_row(f"{r['items']:,}", r["kind"], str(r["build_s"]), f"{r['bytes'] / 2**20:.0f}", str(r["search_ms"]["p50"]),
                  str(r["search_ms"]["p99"]), f"{r['recall@64_vs_exact']:.4f}")
    console.print(t)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
