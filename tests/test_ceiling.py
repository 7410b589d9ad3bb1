"""The Rank@1 ceiling of synthetic data: ties counted by hand, and the bound moving the right way."""
import dataclasses

import pytest

from fbinfer.data.source import load_data
from fbinfer.data.synth import SynthConfig, synthesize
from fbinfer.evaluation.ceiling import catalogue_ceiling, query_ceiling, rank1_ceiling

PRODUCTS = {
    "q": {"category": "TOPS", "subcategory": "t-shirt", "color": "red", "pattern": "solid", "sleeve": "long", "named": ["color"]},
    "same_color": {"category": "TOPS", "subcategory": "t-shirt", "color": "red", "pattern": "striped", "sleeve": "short", "named": ["color", "sleeve"]},
    "other_color": {"category": "TOPS", "subcategory": "t-shirt", "color": "blue", "pattern": "solid", "sleeve": "long", "named": ["pattern"]},
    "other_sub": {"category": "TOPS", "subcategory": "shirt", "color": "red", "pattern": "solid", "sleeve": "long", "named": []},
}


def test_query_ceiling_by_hand():
    negatives = ["same_color", "other_color", "other_sub"]
    # text query "red t-shirt": the red t-shirt image ties with the truth; blue and a shirt do not
    assert query_ceiling(PRODUCTS, "q", negatives, "text_to_image") == pytest.approx(1 / 2)
    # image query (red, solid, long t-shirt): "solid t-shirt" (other_color's caption) fits it too;
    # "red short-sleeved t-shirt" does not; a shirt's caption never fits a t-shirt
    assert query_ceiling(PRODUCTS, "q", negatives, "image_to_text") == pytest.approx(1 / 2)
    assert query_ceiling(PRODUCTS, "q", ["same_color"], "image_to_text") == 1.0


def test_catalogue_ceiling_by_hand(tmp_path):
    """The whole catalogue as candidates, same_color with three views, the others one: captions one
    per product, images one per item. Caption queries: q ties with same_color (1/2), same_color's "red
    short-sleeved t-shirt" fits only itself, other_color's "solid t-shirt" fits q too (1/2),
    other_sub's "shirt" fits only itself: (1/2 + 1 + 1/2 + 1) / 4. Image queries, per view: q's
    image fits other_color's "solid t-shirt" (1/2), same_color's (red, striped) fits q's "red
    t-shirt" (1/2), the other two fit only their own captions (1): (1/2 + 3 x 1/2 + 1 + 1) / 6 (the
    directions swapped would give 5 / 6)."""
    import json

    (tmp_path / "synth.json").write_text(json.dumps({"products": PRODUCTS}))
    ids = ["q", "same_color", "same_color", "same_color", "other_color", "other_sub"]
    got = catalogue_ceiling(tmp_path, ids)
    assert got == {"text_to_image": pytest.approx(75.0), "image_to_text": pytest.approx(100 * 4 / 6, abs=0.01)}
    assert catalogue_ceiling(tmp_path / "none", ids) is None


def test_rank1_ceiling_rises_when_captions_name_everything(tmp_path):
    """Same products and candidate lists; captions that name everything can only remove ties."""
    cfg = SynthConfig(products=200, views=1, test_fraction=0.5, seed=3)  # ~4 test products per sub-category
    ceilings = {}
    for name, c in {"partial": cfg, "full": dataclasses.replace(cfg, p_color=1.0, p_pattern=1.0, p_attribute=1.0)}.items():
        synthesize(tmp_path / name, c)
        ceilings[name] = rank1_ceiling(load_data(tmp_path / name))
    for d in ("image_to_text", "text_to_image"):
        assert 0 < ceilings["partial"][d] < ceilings["full"][d] <= 100


def test_no_ceiling_without_named_properties(tmp_path, tiny_data):
    assert rank1_ceiling(load_data(tiny_data)) is not None
    plain = tmp_path / "plain"
    plain.mkdir()
    for f in ("train.jsonl", "test.jsonl"):
        (plain / f).write_text((tiny_data / f).read_text())
    assert rank1_ceiling(load_data(plain)) is None
