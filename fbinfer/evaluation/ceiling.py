"""The best Rank@1 any model can reach on a synthetic data set (on its eval lists, or a whole catalogue).

A synthetic caption names only some of its product's properties (synth.json records which).
A candidate product that has every property the caption names explains that caption exactly
as well as the true product does (the templates and synonyms do not depend on the product),
so no model can tell them apart: with k such ties a query's best expected Rank@1 is
1 / (1 + k). The mean over the queries is the ceiling. It assumes that an image shows every
property of its product, so it is an upper bound.
"""
from __future__ import annotations

from pathlib import Path

from fbinfer.data.candidates import DIRECTIONS
from fbinfer.data.source import DataSource
from fbinfer.fileio import read_json


def explains(caption_product: dict, image_product: dict) -> bool:
    """Whether a caption written for ``caption_product`` fits an image of ``image_product``."""
    same_kind = all(caption_product[k] == image_product[k] for k in ("category", "subcategory"))
    return same_kind and all(image_product.get(k) == caption_product[k] for k in caption_product["named"])


def query_ceiling(products: dict[str, dict], query: str, negatives: list[str], direction: str) -> float:
    """1 / (1 + number of negatives indistinguishable from the truth) for one query."""
    if direction == "image_to_text":
        ties = sum(explains(products[n], products[query]) for n in negatives)
    else:
        ties = sum(explains(products[query], products[n]) for n in negatives)
    return 1.0 / (1 + ties)


def rank1_ceiling(data: DataSource, queries: int | None = None) -> dict[str, float] | None:
    """Per direction, the ceiling in percent on the eval candidate lists; None where the data
    does not record what its captions name (user data, Fashion-Gen, older synthetic sets)."""
    file = data.path / "synth.json"
    if data.is_h5 or not file.is_file():
        return None
    products = read_json(file).get("products", {})
    needed = {it.product_id for it in data.test}
    if not needed <= products.keys() or any("named" not in products[p] for p in needed):
        return None
    out = {}
    for d in DIRECTIONS:
        per_query = [query_ceiling(products, data.test[q.query].product_id,
                                   [data.test[c].product_id for c in q.candidates[1:]], d)
                     for q in data.candidates.direction(d, queries)]
        out[d] = round(100.0 * sum(per_query) / len(per_query), 2)
    return out


def catalogue_ceiling(data_path: Path, product_ids: list[str]) -> dict[str, float] | None:
    """Per direction, the ceiling in percent when every item of a catalogue (its items' product
    ids, one per item) is a candidate, with ``eval-retrieval``'s queries: one per product for
    captions (its views share it), one per item for images. None where the data does not record
    what its captions name."""
    file = Path(data_path) / "synth.json"
    if not file.is_file():
        return None
    products = read_json(file).get("products", {})
    if not set(product_ids) <= products.keys() or any("named" not in products[p] for p in product_ids):
        return None
    unique = list(dict.fromkeys(product_ids))
    t2i = [query_ceiling(products, p, [q for q in unique if q != p], "text_to_image") for p in unique]
    i2t = [query_ceiling(products, p, [q for q in unique if q != p], "image_to_text") for p in product_ids]
    return {"text_to_image": round(100.0 * sum(t2i) / len(t2i), 2), "image_to_text": round(100.0 * sum(i2t) / len(i2t), 2)}
