import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from fbinfer.data.candidates import build_candidates
from fbinfer.data.catalog import ATTRIBUTES, CATEGORIES, COLORS, PATTERNS
from fbinfer.data.records import Item, read_jsonl
from fbinfer.data.source import load_data
from fbinfer.data.synth import SynthConfig, synthesize
from fbinfer.errors import FbinferError


def test_catalogue_breadth():
    assert len(CATEGORIES) >= 8 and all(len(subs) >= 3 for _, subs in CATEGORIES.values())
    assert len(COLORS) >= 10 and len(PATTERNS) >= 5
    assert {"sleeve", "neckline", "length", "heel"} <= set(ATTRIBUTES)


def test_synth_is_deterministic_and_split_by_product(tmp_path, tiny_data):
    again = tmp_path / "again"
    synthesize(again, SynthConfig(products=48, views=2, test_fraction=0.25, seed=3))
    for f in ("train.jsonl", "test.jsonl", "eval_candidates.json"):
        assert (again / f).read_text() == (tiny_data / f).read_text()
    assert (again / "images/P000005_1.jpg").read_bytes() == (tiny_data / "images/P000005_1.jpg").read_bytes()
    d = load_data(tiny_data)
    assert not {i.product_id for i in d.train} & {i.product_id for i in d.test}
    assert Counter(i.product_id for i in d.train + d.test).most_common(1)[0][1] == 2  # views per product
    other = tmp_path / "other"
    synthesize(other, SynthConfig(products=48, views=2, test_fraction=0.25, seed=4))
    assert (other / "train.jsonl").read_text() != (tiny_data / "train.jsonl").read_text()


def test_synth_refuses_non_empty_folder(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "f").write_text("keep")
    with pytest.raises(FbinferError, match="not empty"):
        synthesize(tmp_path / "x", SynthConfig(products=20))


def test_each_product_carries_exactly_its_categorys_attributes(tiny_data):
    products = json.loads((tiny_data / "synth.json").read_text())["products"]
    for p in products.values():
        attrs = set(p) - {"category", "subcategory", "color", "pattern", "named"}
        assert attrs == set(CATEGORIES[p["category"]][0])


def test_synth_json_records_what_each_caption_names(tiny_data):
    products = json.loads((tiny_data / "synth.json").read_text())["products"]
    phrases = lambda prop, value: COLORS[value][1] if prop == "color" else PATTERNS[value] if prop == "pattern" else ATTRIBUTES[prop][value]
    items = [json.loads(line) for line in (tiny_data / "train.jsonl").read_text().splitlines()]
    properties = lambda p: set(p) - {"category", "subcategory", "named"}
    assert any(set(p["named"]) < properties(p) for p in products.values())  # some captions leave things out
    assert all(set(p["named"]) <= properties(p) for p in products.values())
    for it in items:
        p = products[it["product_id"]]
        for prop in p["named"]:
            words = [w.removeprefix("with ") for w in phrases(prop, p[prop])]  # "with a and b" lists drop the "with"
            assert any(w in it["text"].lower() for w in words), (prop, it["text"])


def _items(spec: dict[str, int]) -> list[Item]:
    """spec: sub-category -> number of products (one item each)."""
    out = []
    for sub, n in spec.items():
        out += [Item(f"{sub}{i}.jpg", f"{sub} {i}", "CAT", sub, f"{sub}-{i}") for i in range(n)]
    return out


def test_candidates_same_subcategory_then_topped_up():
    test = _items({"big": 130, "small": 5})
    cl = build_candidates(test, max_queries=1000, num_negatives=100, seed=0)
    assert len(cl.queries) == 135 and len(cl.image_to_text) == 135
    for q in cl.text_to_image + cl.image_to_text:
        assert q.truth == q.query and len(q.candidates) == 101 and len(set(q.candidates)) == 101
        subs = Counter(test[c].subcategory for c in q.candidates[1:])
        if test[q.query].subcategory == "big":
            assert subs == {"big": 100}
        else:  # 4 others in its own sub-category, topped up with 96 from 'big'
            assert subs == {"small": 4, "big": 96}
    assert build_candidates(test, seed=0).to_dict() == cl.to_dict()
    assert len(build_candidates(test, max_queries=10).queries) == 10


def test_candidates_one_query_per_product():
    test = _items({"a": 3}) + _items({"a": 3})  # each product twice (two views)
    cl = build_candidates(test, num_negatives=100)
    assert len(cl.queries) == 3 and cl.num_negatives == 2


def _write(path: Path, lines: list[str]) -> None:
    path.write_text("\n".join(lines) + "\n")


def test_jsonl_errors_name_file_and_line(tmp_path):
    good = json.dumps({"image": "a.jpg", "text": "red tee", "category": "TOPS", "subcategory": "t", "product_id": "1"})
    f = tmp_path / "train.jsonl"
    _write(f, [good, "{not json"])
    with pytest.raises(FbinferError, match=r"train.jsonl:2: malformed JSON"):
        read_jsonl(f)
    _write(f, [good, json.dumps({"image": "b.jpg", "text": "x", "category": "TOPS", "product_id": "2"})])
    with pytest.raises(FbinferError, match=r"train.jsonl:2: missing field 'subcategory'"):
        read_jsonl(f)
    _write(f, [good, json.dumps({"image": "b.jpg", "text": "  ", "category": "T", "subcategory": "t", "product_id": "2"})])
    items, empty = read_jsonl(f)
    assert len(items) == 1 and empty == 1
    f.write_bytes(good.encode() + b"\n\xff\xfe\n")
    with pytest.raises(FbinferError, match="not UTF-8"):
        read_jsonl(f)


def test_unreadable_image_is_named(tmp_path, tiny_data):
    import shutil

    d = tmp_path / "d"
    shutil.copytree(tiny_data, d, ignore=shutil.ignore_patterns(".fbinfer"))
    first = load_data(d).test[0]
    (d / first.image).write_bytes(b"not an image")
    src = load_data(d)
    with pytest.raises(FbinferError, match=rf"{first.image} \(.*test.jsonl:1\): not a readable image"):
        src.open_image(src.test[0])


def test_load_data_errors(tmp_path):
    with pytest.raises(FbinferError, match="no such file or folder"):
        load_data(tmp_path / "missing")
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(FbinferError, match="expected a data folder"):
        load_data(tmp_path / "x.txt")
    with pytest.raises(FbinferError, match="train.jsonl: file not found"):
        load_data(tmp_path)


def write_fashiongen(path: Path, rows: list[tuple[bytes, bytes, bytes, bytes]], drop: str | None = None) -> None:
    """rows: (description, category, subcategory, productID) as raw bytes, in the Fashion-Gen schema."""
    import h5py

    n = len(rows)
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        cols = {
            "input_image": rng.integers(0, 255, size=(n, 256, 256, 3), dtype=np.uint8),
            "input_description": np.array([[r[0]] for r in rows], dtype="S"),
            "input_name": np.array([[b"name"]] * n, dtype="S"),
            "input_category": np.array([[r[1]] for r in rows], dtype="S"),
            "input_subcategory": np.array([[r[2]] for r in rows], dtype="S"),
            "input_productID": np.array([[r[3]] for r in rows], dtype="S"),
            "index": np.arange(n).reshape(n, 1),
        }
        for k, v in cols.items():
            if k != drop:
                f.create_dataset(k, data=v)


def fashiongen_rows() -> list[tuple[bytes, bytes, bytes, bytes]]:
    rows = []
    for p in range(40):
        sub = b"CREWNECKS" if p < 34 else b"V-NECKS"  # a sub-category with fewer than 100 others
        desc = f"Wool sweater {p}".encode() if p != 7 else b"Caf\xe9 cr\xe8me knit"  # latin-1, not UTF-8
        for view in range(2):
            rows.append((desc if p != 9 else b"", b"SWEATERS", sub, str(1000 + p).encode()))
    return rows


def test_fashiongen_reader(tmp_path):
    path = tmp_path / "fashiongen_256_256_train.h5"
    write_fashiongen(path, fashiongen_rows())
    d = load_data(path)
    items = d.train + d.test
    assert len(items) == 78 and d.skipped == {"empty caption": 2}
    assert any(i.text == "Café crème knit" for i in items)
    assert not {i.product_id for i in d.train} & {i.product_id for i in d.test}
    assert np.asarray(d.open_image(d.test[0])).shape == (256, 256, 3)
    cl = d.candidates  # made and cached beside the file
    assert (tmp_path / "fashiongen_256_256_train.h5.fbinfer" / "eval_candidates.json").is_file()
    assert all(len(q.candidates) == len(cl.queries) for q in cl.text_to_image)  # fewer than 100 others: all of them


def test_fashiongen_missing_field(tmp_path):
    path = tmp_path / "f.h5"
    write_fashiongen(path, fashiongen_rows()[:4], drop="input_productID")
    with pytest.raises(FbinferError, match="missing field 'input_productID'"):
        load_data(path)
    path.write_bytes(b"not hdf5")
    with pytest.raises(FbinferError, match="not a readable HDF5 file"):
        load_data(path)


def test_data_errors_reach_the_cli_as_one_line(tmp_path, tiny_data):
    """The reader's messages survive the CLI: one line naming the file (and line), exit 1."""
    import shutil

    from helpers import assert_one_line_error, run_cli_here

    features = lambda d: run_cli_here("data", "features", "--data", str(d), "--config", "fashionbert-tiny")
    jsonl = tmp_path / "jsonl"
    shutil.copytree(tiny_data, jsonl, ignore=shutil.ignore_patterns(".fbinfer"))
    with (jsonl / "train.jsonl").open("a") as f:
        f.write("{not json\n")
    lines = len((jsonl / "train.jsonl").read_text().splitlines())
    assert_one_line_error(features(jsonl), f"train.jsonl:{lines}: malformed JSON")
    h5 = tmp_path / "f.h5"
    write_fashiongen(h5, fashiongen_rows()[:4], drop="input_productID")
    assert_one_line_error(features(h5), "f.h5: missing field 'input_productID'")
    image = tmp_path / "image"
    shutil.copytree(tiny_data, image, ignore=shutil.ignore_patterns(".fbinfer"))
    first = load_data(image).test[0]
    (image / first.image).write_bytes(b"not an image")
    r = features(image)
    assert_one_line_error(r, "not a readable image")
    assert first.image in r.stderr.strip().splitlines()[-1]
