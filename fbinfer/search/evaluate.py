"""``fbinfer eval-retrieval``: every test query against the whole test catalogue, both directions,
three systems side by side: the dual encoder alone, the two-stage system (dual encoder top
``depth``, reranked by FashionBERT) at several depths, and FashionBERT alone scoring every item.

Truth: a caption's truth is any image of its product, an image's truth any caption of its
product (a product's views share one caption in the synthetic data; both views count as hits).
Caption queries are one per (product, caption): duplicates would count a product twice.
Two-stage rankings at every depth come from one pass over the deepest candidates (a pair's
logit does not depend on which other pairs are scored); latency is timed per query, separately.
"""
from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from fbinfer.errors import FbinferError
from fbinfer.evaluation.ceiling import catalogue_ceiling
from fbinfer.search.index import CatalogIndex, check_identity, check_reranker, rerank_scores

KS = (1, 5, 10)
MISS = 1 << 30  # the truth is not among the ranked items


@dataclass
class RetrievalConfig:
    depths: tuple[int, ...] = (16, 32, 64, 128)
    full_queries: int = 120  # queries per direction that the cross-encoder scores against every item (0: skip)
    latency_queries: int = 32  # queries per direction and system timed one by one


@dataclass
class Queries:
    direction: str
    target: str  # the index the queries search
    texts: list[str] | None  # caption queries
    rows: list[int] | None  # image queries: their catalogue rows
    truth: list[set[int]]  # rows that count as a hit

    def __len__(self) -> int:
        return len(self.truth)


def make_queries(index: CatalogIndex) -> dict[str, Queries]:
    by_product: dict[str, list[int]] = defaultdict(list)
    for r, it in enumerate(index.items):
        by_product[it["product_id"]].append(r)
    captions = list(dict.fromkeys((it["product_id"], it["text"]) for it in index.items))
    return {"text_to_image": Queries("text_to_image", "image", [t for _, t in captions], None, [set(by_product[p]) for p, _ in captions]),
            "image_to_text": Queries("image_to_text", "text", None, list(range(len(index.items))),
                                     [set(by_product[it["product_id"]]) for it in index.items])}


def query_vectors(index: CatalogIndex, q: Queries, rows: list[int] | None = None) -> np.ndarray:
    pick = range(len(q)) if rows is None else rows
    emb = index.embedder
    if q.texts is not None:
        return emb.texts([q.texts[i] for i in pick])
    return emb.images(index.item_patches([q.rows[i] for i in pick]))


def first_hit(ranked: np.ndarray, truth: set[int]) -> int:
    """0-based rank of the first true item, or MISS if none is there."""
    for i, r in enumerate(ranked):
        if int(r) in truth:
            return i
    return MISS


def summarize(ranks: list[int], pairs: int, depths: tuple[int, ...] = ()) -> dict:
    r = np.asarray(ranks)
    out = {f"rank{k}": round(100 * float(np.mean(r < k)), 2) for k in KS}
    out.update({f"recall@{d}": round(100 * float(np.mean(r < d)), 2) for d in depths})
    return {**out, "pairs_per_query": pairs, "queries": len(r)}


def cross_scores(matcher, index: CatalogIndex, q: Queries, i: int, rows: np.ndarray) -> np.ndarray:
    """FashionBERT's logits for query i against catalogue rows (the reranker's own scoring)."""
    if q.texts is not None:
        return rerank_scores(matcher, list(rows), index, q.texts[i], None)
    return rerank_scores(matcher, list(rows), index, None, index.item_patches([q.rows[i]]))


def percentiles(ms: list[float]) -> dict:
    return {"p50": round(float(np.percentile(ms, 50)), 2), "p99": round(float(np.percentile(ms, 99)), 2), "n": len(ms)}


def time_queries(index: CatalogIndex, q: Queries, matcher, picks: list[int], depth: int | None, full: bool = False) -> dict:
    """Per-query latency, end to end: embed the query, search, rerank ``depth`` (or score every item)."""
    ms = []
    for i in picks:
        t0 = time.perf_counter()
        if full:
            cross_scores(matcher, index, q, i, np.arange(len(index)))
        else:
            vec = query_vectors(index, q, [i])
            _, rows = index.search_vectors(q.target, vec, depth or max(KS))
            if depth:
                cross_scores(matcher, index, q, i, rows[0])
        ms.append(1000 * (time.perf_counter() - t0))
    return percentiles(ms)


@dataclass
class Stages:
    """One direction's recall stage (cosine scores and rows, deepest first) and the cross-encoder's
    logits of each query's top ``depth``: everything the two-stage and fused rankings need."""
    dual: np.ndarray  # (Q, deep) cosine
    rows: np.ndarray  # (Q, deep) catalogue rows
    cross: list[np.ndarray] | None  # Q x (depth,) logits

    @classmethod
    def run(cls, index: CatalogIndex, q: Queries, matcher, deep: int, depth: int) -> Stages:
        dual, rows = index.search_vectors(q.target, query_vectors(index, q), deep)
        cross = None if matcher is None else [
            cross_scores(matcher, index, q, i, rows[i][:depth]) for i in tqdm(range(len(q)), desc=f"rerank {q.direction}", unit="query")]
        return cls(dual, rows, cross)

    def ranks(self, truth: list[set[int]], depth: int, weight: float | None = None, picks=None) -> list[int]:
        """First-hit ranks of the top ``depth`` ordered by the cross-encoder (``weight`` None) or by
        cosine + weight * logit (0: the dual encoder's own order)."""
        out = []
        for i in range(len(truth)) if picks is None else picks:
            key = self.cross[i][:depth] if weight is None else self.dual[i][:depth] + weight * self.cross[i][:depth]
            out.append(first_hit(self.rows[i][:depth][np.argsort(-key, kind="stable")], truth[i]))
        return out


FUSION_WEIGHTS = (0.0, *np.geomspace(1e-3, 10.0, 28).round(5).tolist())  # of the logit, against cosine; 0: the dual encoder alone


def fit_fusion(index: CatalogIndex, matcher, depths: tuple[int, ...]) -> dict[str, dict[int, float]]:
    """Per direction and depth, the weight of FashionBERT's logit against the dual encoder's cosine
    with the best mean Rank@1 on ``index`` (a validation catalogue: never the test one); the
    smallest such weight on ties, so that without a gain the fusion is the dual encoder."""
    depths = tuple(d for d in sorted(depths) if d <= len(index))
    out = {}
    for direction, q in make_queries(index).items():
        st = Stages.run(index, q, matcher, max(depths), max(depths))
        out[direction] = {d: best_weight(st, q.truth, d) for d in depths}
    return out


def best_weight(st: Stages, truth: list[set[int]], depth: int) -> float:
    """The logit weight with the best Rank@1 at ``depth``; the smallest on ties."""
    return max(FUSION_WEIGHTS, key=lambda w: (np.mean(np.asarray(st.ranks(truth, depth, w)) < 1), -w))


def evaluate_direction(index: CatalogIndex, q: Queries, matcher, cfg: RetrievalConfig, fusion: dict[int, float] | None = None) -> dict:
    depths = tuple(d for d in sorted(cfg.depths) if d <= len(index))
    if matcher is not None and not depths:
        raise FbinferError(f"--depths {','.join(map(str, cfg.depths))}: every depth exceeds the catalogue's {len(index)} items")
    st = Stages.run(index, q, matcher, max(depths + (max(KS),)), max(depths, default=0))
    dual = [first_hit(r, t) for r, t in zip(st.rows, q.truth)]
    lat = list(np.linspace(0, len(q) - 1, min(cfg.latency_queries, len(q))).astype(int))
    out = {"dual": summarize(dual, 0, depths) | {"latency_ms": time_queries(index, q, None, lat, None)}}
    if matcher is None:
        return out
    for d in depths:
        out[f"two_stage@{d}"] = summarize(st.ranks(q.truth, d), d) | {"latency_ms": time_queries(index, q, matcher, lat, d)}
        if fusion and d in fusion:
            # the two-stage system's work plus one multiply-add per candidate: its latency
            out[f"fused@{d}"] = summarize(st.ranks(q.truth, d, fusion[d]), d) | {"weight": fusion[d],
                                                                                  "latency_ms": out[f"two_stage@{d}"]["latency_ms"]}
    if cfg.full_queries:
        sub = sorted(set(np.linspace(0, len(q) - 1, min(cfg.full_queries, len(q))).astype(int).tolist()))
        full = []
        for i in tqdm(sub, desc=f"cross-encoder {q.direction}", unit="query"):
            s = cross_scores(matcher, index, q, i, np.arange(len(index)))
            full.append(first_hit(np.argsort(-s, kind="stable"), q.truth[i]))
        out["cross_encoder"] = summarize(full, len(index)) | {"latency_ms": time_queries(index, q, matcher, lat[:8], None, full=True)}
        # the same queries through the other systems, for a like-for-like comparison
        out["on_cross_encoder_queries"] = {"dual": summarize([dual[i] for i in sub], 0)} | {
            f"two_stage@{d}": summarize(st.ranks(q.truth, d, picks=sub), d) for d in depths}
    return out


def same_style(index: CatalogIndex, ks: tuple[int, ...] = KS) -> dict:
    """Product-to-product: each item's image+text vector (and its image vector alone) against the
    catalogue's, itself excluded; a hit is another view of the same product."""
    by_product: dict[str, set[int]] = defaultdict(set)
    for r, it in enumerate(index.items):
        by_product[it["product_id"]].add(r)
    queries = [r for r, it in enumerate(index.items) if len(by_product[it["product_id"]]) > 1]
    if not queries:
        return {"queries": 0, "note": "no product has two views in this catalogue"}
    emb = index.embedder
    image = emb.images(index.item_patches(queries))
    vecs = {"image": image, "product": emb.products(emb.texts([index.items[r]["text"] for r in queries]), image)}
    out: dict = {"queries": len(queries)}
    for target, v in vecs.items():
        _, rows = index.search_vectors(target, v, max(ks) + 1)
        ranks = [first_hit([x for x in rows[j] if x != r], by_product[index.items[r]["product_id"]] - {r}) for j, r in enumerate(queries)]
        out[target] = {f"recall@{k}": round(100 * float(np.mean(np.asarray(ranks) < k)), 2) for k in ks}
    return out


def evaluate_retrieval(index: CatalogIndex, matcher=None, cfg: RetrievalConfig | None = None, fusion_index: CatalogIndex | None = None) -> dict:
    """Every system's figures over the index's whole catalogue (build it from the test split); with
    ``fusion_index`` (a validation catalogue) also the fused two-stage ranking, its weights fitted there."""
    cfg = cfg or RetrievalConfig()
    if any(d < 1 for d in cfg.depths) or cfg.full_queries < 0 or cfg.latency_queries < 1:
        raise FbinferError(f"--depths {cfg.depths}, --full-queries {cfg.full_queries}, --latency-queries {cfg.latency_queries}: "
                           "depths and latency queries must be positive, full queries >= 0")
    if matcher is not None:
        check_reranker(matcher.tokenizer.vocab, matcher.config.feature_key, index.meta, index.folder)
    result = {"catalogue": len(index), "index": str(index.folder), "model": index.meta["model"], "kind": index.meta["kind"],
              "reranker": None if matcher is None else matcher.backend, "depths": list(cfg.depths),
              "truth": "any image (caption) of the query's product; views of one product share their caption",
              "same_style": same_style(index),
              "ceiling": catalogue_ceiling(Path(index.meta["data"]), [it["product_id"] for it in index.items])}
    fusion = None
    if fusion_index is not None and matcher is not None:
        check_identity(fusion_index.meta, index.embedder, fusion_index.folder)  # the weights fit one embedding model
        fusion = fit_fusion(fusion_index, matcher, cfg.depths)
        result["fusion"] = {"fitted_on": str(fusion_index.folder), "catalogue": len(fusion_index),
                            "weights": {k: {str(d): w for d, w in v.items()} for k, v in fusion.items()},
                            "rule": "cosine + weight * logit, the weight with the best Rank@1 on the fitting catalogue"}
    for direction, q in make_queries(index).items():
        result[direction] = evaluate_direction(index, q, matcher, cfg, fusion and fusion[direction])
    return result


def plot_retrieval(result: dict, path: Path) -> Path:
    """Rank@1 against depth, and against pairs scored per query (the cost), both directions."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fbinfer.fileio import write_png

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    for direction, color in (("text_to_image", "tab:blue"), ("image_to_text", "tab:orange")):
        r = result[direction]
        two = sorted((int(k.split("@")[1]), v) for k, v in r.items() if k.startswith("two_stage@"))
        if not two:
            continue
        a.plot([d for d, _ in two], [v["rank1"] for _, v in two], "o-", color=color, label=f"two-stage {direction}")
        a.axhline(r["dual"]["rank1"], color=color, ls=":", label=f"dual encoder {direction}")
        pts = [(1, r["dual"]["rank1"])] + [(d, v["rank1"]) for d, v in two]
        if "cross_encoder" in r:
            a.axhline(r["cross_encoder"]["rank1"], color=color, ls="--", label=f"cross-encoder alone {direction}")
            pts.append((r["cross_encoder"]["pairs_per_query"], r["cross_encoder"]["rank1"]))
        b.plot([p for p, _ in pts], [v for _, v in pts], "o-", color=color, label=direction)
    a.set(xscale="log", xlabel="rerank depth", ylabel="Rank@1 (%)", title="Rank@1 against depth")
    b.set(xscale="log", xlabel="cross-encoder pairs per query (dual encoder alone plotted at 1)", ylabel="Rank@1 (%)",
          title="Rank@1 against cost")
    a.legend(fontsize=7)
    b.legend(fontsize=7)
    fig.tight_layout()
    return write_png(fig, path)
