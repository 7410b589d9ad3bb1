"""``fbinfer data synth``: a Fashion-Gen-like catalogue drawn procedurally (no data set ships here)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from fbinfer.data.candidates import build_candidates
from fbinfer.data.catalog import ATTRIBUTES, BRANDS, CATEGORIES, COLORS, DISTRACTORS, PATTERNS
from fbinfer.data.draw import render
from fbinfer.data.records import Item, write_jsonl
from fbinfer.errors import FbinferError
from fbinfer.fileio import atomic_path, write_json
from fbinfer.output_paths import check_folder_output, output_lock


@dataclass(frozen=True)
class SynthConfig:
    products: int = 2000
    views: int = 2  # images per product
    test_fraction: float = 0.12
    seed: int = 0
    # How often a caption names each property: real product text leaves things out, which
    # keeps a good teacher below 100% Rank@1.
    p_color: float = 0.85
    p_pattern: float = 0.7
    p_attribute: float = 0.7
    eval_queries: int = 1000  # the saved Rank@K lists: queries per direction ...
    eval_negatives: int = 100  # ... and negatives per query


@dataclass(frozen=True)
class Product:
    product_id: str
    category: str
    subcategory: str
    color: str
    pattern: str
    attributes: dict[str, str]


def sample_product(i: int, rng: np.random.Generator) -> Product:
    cats = list(CATEGORIES)
    category = cats[i % len(cats)]  # balanced categories
    attr_names, subs = CATEGORIES[category]
    sub = list(subs)[(i // len(cats)) % len(subs)]
    attrs = {a: str(rng.choice(list(ATTRIBUTES[a]))) for a in attr_names}
    return Product(f"P{i:06d}", category, sub, str(rng.choice(list(COLORS))), str(rng.choice(list(PATTERNS))), attrs)


def caption(p: Product, cfg: SynthConfig, rng: np.random.Generator) -> tuple[str, list[str]]:
    """A product description from one of several templates, with synonyms and distractors, and
    the properties it names (kept in synth.json: they bound the best Rank@1 any model can reach)."""
    pick = lambda xs: str(xs[rng.integers(len(xs))])
    noun = pick(CATEGORIES[p.category][1][p.subcategory])
    color = pick(COLORS[p.color][1]) if rng.random() < cfg.p_color else None
    named = ["color"] if color else []
    phrases = []
    if rng.random() < cfg.p_pattern:
        phrases.append(pick(PATTERNS[p.pattern]))
        named.append("pattern")
    for a, v in p.attributes.items():
        if rng.random() < cfg.p_attribute:
            phrases.append(pick(ATTRIBUTES[a][v]))
            named.append(a)
    rng.shuffle(phrases)
    adjs = [x for x in phrases if not x.startswith("with ")]
    withs = [x for x in phrases if x.startswith("with ")]
    tail = "".join(f" {w}" if k == 0 else f" and {w[5:]}" for k, w in enumerate(withs))
    distract = pick(DISTRACTORS)
    template = int(rng.integers(5))
    if template == 0 or color is None:
        text = " ".join(([color] if color else []) + adjs + [noun]) + tail + "."
    elif template == 1:
        text = " ".join(adjs + [noun]) + f" in {color}" + tail + "."
    elif template == 2:
        text = f"{pick(BRANDS)} " + " ".join([color] + adjs + [noun]) + tail + "."
    elif template == 3:
        text = f"This {noun} comes in {color}." + (f" It is {', '.join(adjs)}." if adjs else "") + (f" Designed{tail}." if tail else "")
    else:
        text = f"{distract} " + " ".join(adjs + [color, noun]) + tail + "."
        distract = pick(DISTRACTORS)
    if rng.random() < 0.6:
        text = f"{text} {distract}"
    return text[0].upper() + text[1:], named


def synthesize(out: Path, cfg: SynthConfig, force: bool = False) -> dict[str, int]:
    """Write a complete data folder at ``out`` (built under a temporary name, then renamed)."""
    if cfg.products < 20:
        raise FbinferError(f"--products {cfg.products}: need at least 20 products")
    check_folder_output(out, "-o", force, marker="synth.json")
    rng = np.random.default_rng(cfg.seed)
    products = [sample_product(i, rng) for i in range(cfg.products)]
    test_ids = set(rng.choice(cfg.products, size=max(2, round(cfg.products * cfg.test_fraction)), replace=False).tolist())
    splits: dict[str, list[Item]] = {"train": [], "test": []}
    named: dict[str, list[str]] = {}
    with output_lock(out), atomic_path(out) as tmp:
        (tmp / "images").mkdir(parents=True)
        for i, p in enumerate(tqdm(products, desc="drawing products", unit="product")):
            prng = np.random.default_rng([cfg.seed, i])
            text, named[p.product_id] = caption(p, cfg, prng)
            for v in range(cfg.views):
                rel = f"images/{p.product_id}_{v}.jpg"
                render(p.category, p.subcategory, p.attributes, COLORS[p.color][0], p.pattern, prng).save(tmp / rel, quality=92)
                splits["test" if i in test_ids else "train"].append(Item(rel, text, p.category, p.subcategory, p.product_id))
        for name, items in splits.items():
            write_jsonl(tmp / f"{name}.jsonl", items)
        write_json(tmp / "eval_candidates.json", build_candidates(splits["test"], cfg.eval_queries, cfg.eval_negatives, seed=cfg.seed).to_dict())
        write_json(tmp / "synth.json", {"config": cfg.__dict__, "products": {p.product_id: {
            "category": p.category, "subcategory": p.subcategory, "color": p.color, "pattern": p.pattern, **p.attributes,
            "named": named[p.product_id]}
            for p in products}})
    return {"products": cfg.products, "train_items": len(splits["train"]), "test_items": len(splits["test"])}
