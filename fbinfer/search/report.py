"""Rich tables for search results and for ``eval-retrieval``."""
from __future__ import annotations

from rich.console import Console
from rich.table import Table

from fbinfer.search.index import Hit


def hits_table(hits: list[Hit], title: str) -> Table:
    t = Table(title=title)
    for col in ("#", "cosine", "rerank logit", "product", "sub-category", "text", "image"):
        t.add_column(col, overflow="fold")
    for i, h in enumerate(hits, 1):
        t.add_row(str(i), f"{h.score:.4f}", "" if h.rerank is None else f"{h.rerank:.3f}", h.item["product_id"], h.item["subcategory"],
                  h.item["text"][:60], h.item["image"])
    return t


def retrieval_tables(result: dict, console: Console) -> None:
    for direction in ("text_to_image", "image_to_text"):
        r = result[direction]
        ceiling = (result.get("ceiling") or {}).get(direction)
        t = Table(title=f"{direction.replace('_', ' ')}: {r['dual']['queries']} queries over {result['catalogue']} items"
                        + (f" (the data's Rank@1 ceiling: {ceiling:.1f})" if ceiling is not None else ""))
        for col in ("system", "queries", "Rank@1", "Rank@5", "Rank@10", "recall stage", "pairs / query", "p50 ms", "p99 ms"):
            t.add_column(col, justify="right" if col != "system" else "left")
        for name, v in r.items():
            if name == "on_cross_encoder_queries":
                continue
            recall = ", ".join(f"R@{k.split('@')[1]} {x:.1f}" for k, x in v.items() if k.startswith("recall@"))
            if name.startswith(("two_stage@", "fused@")):
                recall = f"R@{name.split('@')[1]} {r['dual'].get('recall@' + name.split('@')[1], float('nan')):.1f}"
            lat = v.get("latency_ms", {})
            label = name.replace("_", " ") + (f" (logit weight {v['weight']:g})" if "weight" in v else "")
            t.add_row(label, str(v["queries"]), f"{v['rank1']:.1f}", f"{v['rank5']:.1f}", f"{v['rank10']:.1f}", recall,
                      str(v["pairs_per_query"]), f"{lat.get('p50', float('nan')):.1f}", f"{lat.get('p99', float('nan')):.1f}")
        console.print(t)
        if "on_cross_encoder_queries" in r:
            sub = r["on_cross_encoder_queries"]
            same = ", ".join(f"{k.replace('_', ' ')} {v['rank1']:.1f}" for k, v in sub.items())
            console.print(f"  on the cross-encoder's {r['cross_encoder']['queries']} queries, Rank@1: {same}; "
                          f"cross-encoder alone {r['cross_encoder']['rank1']:.1f}")
    s = result["same_style"]
    if s.get("queries"):
        console.print(f"same-style ({s['queries']} queries, another view of the product): "
                      + "; ".join(f"{k} vectors " + ", ".join(f"{m} {x:.1f}" for m, x in s[k].items()) for k in ("product", "image")))
