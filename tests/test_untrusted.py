"""Untrusted inputs: image paths confined to their data folder, bounded image decoding, HDF5
field checks, and a feature cache that is verified before use (issue 23)."""
from __future__ import annotations

import io
import json
import os
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from helpers import assert_one_line_error, run_cli_here
from PIL import Image

from fbinfer.data.decode import MAX_PIXELS
from fbinfer.data.features import FeatureStore
from fbinfer.data.source import load_data
from fbinfer.errors import FbinferError
from fbinfer.model.config import preset


def copy_data(tiny_data: Path, dest: Path, first_image: str | None = None) -> Path:
    """The tiny data without its caches; ``first_image`` replaces the image of test.jsonl's first line."""
    shutil.copytree(tiny_data, dest, ignore=shutil.ignore_patterns(".fbinfer"))
    if first_image is not None:
        lines = (dest / "test.jsonl").read_text().splitlines()
        lines[0] = json.dumps({**json.loads(lines[0]), "image": first_image})
        (dest / "test.jsonl").write_text("\n".join(lines) + "\n")
    return dest


def bomb_png(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares ``width`` x ``height`` pixels (the IHDR rewritten, CRC fixed)."""
    buf = io.BytesIO()
    Image.new("L", (8, 8)).save(buf, format="PNG")
    png = bytearray(buf.getvalue())
    ihdr = png.index(b"IHDR")
    png[ihdr + 4:ihdr + 12] = struct.pack(">II", width, height)
    png[ihdr + 17:ihdr + 21] = struct.pack(">I", zlib.crc32(bytes(png[ihdr:ihdr + 17])))
    return bytes(png)


@pytest.mark.parametrize("image", ["/etc/hostname", "../outside.jpg", "images/../../outside.jpg", "link.jpg"])
def test_image_paths_stay_inside_the_data_folder(tmp_path, tiny_data, image):
    (tmp_path / "outside.jpg").write_bytes((tiny_data / load_data(tiny_data).test[0].image).read_bytes())
    d = copy_data(tiny_data, tmp_path / "d", image)
    (d / "link.jpg").symlink_to(tmp_path / "outside.jpg")  # a link out of the folder counts as outside
    src = load_data(d)
    with pytest.raises(FbinferError, match=r"test.jsonl:1: image path .* leads outside the data folder"):
        src.open_image(src.test[0])


def test_a_link_inside_the_folder_is_followed(tmp_path, tiny_data):
    d = copy_data(tiny_data, tmp_path / "d", "alias.jpg")
    first = load_data(tiny_data).test[0]
    (d / "alias.jpg").symlink_to(d / first.image)
    assert np.array_equal(np.asarray(load_data(d).open_image(load_data(d).test[0])), np.asarray(load_data(tiny_data).open_image(first)))


def test_nul_bytes_devices_and_fifos_are_refused(tmp_path, tiny_data):
    src = load_data(copy_data(tiny_data, tmp_path / "nul", "images/a\x00.jpg"))
    with pytest.raises(FbinferError, match="contains a NUL byte"):
        src.open_image(src.test[0])
    d = copy_data(tiny_data, tmp_path / "fifo", "pipe.jpg")
    os.mkfifo(d / "pipe.jpg")  # a reader would block forever, as /dev/zero would read forever
    src = load_data(d)
    with pytest.raises(FbinferError, match="pipe.jpg .*: not a regular file"):
        src.open_image(src.test[0])


def test_decompression_bombs_are_one_line(tmp_path, tiny_data, tiny_model):
    import fbinfer

    d = copy_data(tiny_data, tmp_path / "d")
    first = load_data(d).test[0]
    (d / first.image).write_bytes(bomb_png(7000, 7000))  # above ours, below PIL's own limit
    src = load_data(d)
    with pytest.raises(FbinferError, match=f"image is 7000 x 7000 pixels, over the limit of {MAX_PIXELS:,}"):
        src.open_image(src.test[0])
    assert_one_line_error(run_cli_here("eval", str(tiny_model), "--data", str(d), "--queries", "2"), "7000 x 7000 pixels")
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(bomb_png(20000, 20000))  # the reported 20000 x 20000: above PIL's hard limit too
    with pytest.raises(FbinferError, match="over the limit"):
        fbinfer.load(tiny_model).score(["a dress"], [bomb])
    with pytest.raises(FbinferError, match="/dev/zero: not a regular file"):
        fbinfer.load(tiny_model).score(["a dress"], ["/dev/zero"])


def test_hdf5_fields_of_different_lengths_are_one_line(tmp_path):
    import h5py
    from test_data import fashiongen_rows, write_fashiongen

    path = tmp_path / "fg.h5"
    write_fashiongen(path, fashiongen_rows())
    with h5py.File(path, "a") as f:
        del f["input_category"]
        f.create_dataset("input_category", data=np.array([[b"SWEATERS"]] * 10, dtype="S"))
    with pytest.raises(FbinferError, match=r"fg.h5: field 'input_category' has 10 rows, input_image has 80"):
        load_data(path)


def _damage_zero(store: FeatureStore) -> None:
    f = store.dir / "features.npy"
    header = len(f.read_bytes()) - store.array.nbytes
    with f.open("r+b") as fh:
        fh.seek(header)
        fh.write(bytes(store.array.nbytes))


def _damage_truncate(store: FeatureStore) -> None:
    f = store.dir / "features.npy"
    f.write_bytes(f.read_bytes()[:-1000])


def _damage_row(store: FeatureStore) -> None:
    idx = json.loads((store.dir / "index.json").read_text())
    first = next(iter(idx["rows"]))
    idx["rows"][first][0] = 10_000
    (store.dir / "index.json").write_text(json.dumps(idx))


def _damage_index(store: FeatureStore) -> None:
    (store.dir / "index.json").write_text('{"version": 2, "rows": [1, 2')


@pytest.mark.parametrize("damage", [_damage_zero, _damage_truncate, _damage_row, _damage_index])
def test_a_damaged_feature_cache_is_rebuilt_not_used(tmp_path, tiny_data, capfd, damage):
    data = load_data(copy_data(tiny_data, tmp_path / "d"))
    cfg = preset("fashionbert-tiny", patch_input="pixels")  # a cheap extractor: the cache logic is the same
    items = data.train + data.test
    store = FeatureStore(data, cfg).ensure(items)
    want = store.get(items).numpy().copy()
    assert np.abs(want).sum() > 0
    damage(store)
    del store
    again = FeatureStore(data, cfg).ensure(items)
    assert "feature cache damaged" in capfd.readouterr().err
    assert np.array_equal(again.get(items).numpy(), want)
