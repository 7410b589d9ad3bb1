"""Reading a Fashion-Gen HDF5 file (``fashiongen_256_256_*.h5``) directly.

Datasets of N rows: ``input_image`` uint8 [N,256,256,3]; ``input_description``,
``input_category``, ``input_subcategory``, ``input_productID`` byte strings [N,1]. Some
strings are not valid UTF-8: latin-1 is the fallback.
"""
from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np

from fbinfer.data.records import Item
from fbinfer.errors import FbinferError

REQUIRED = ("input_image", "input_description", "input_category", "input_subcategory", "input_productID")


def decode(raw: object) -> str:
    if isinstance(raw, np.ndarray):
        raw = raw.reshape(-1)[0]
    if isinstance(raw, bytes):
        try:
            return raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            return raw.decode("latin-1").strip()
    return str(raw).strip()


def is_test_product(product_id: str, test_percent: int = 10) -> bool:
    """A stable product-level split: the same product is always on the same side."""
    return zlib.crc32(product_id.encode()) % 100 < test_percent


def open_h5(path: Path):
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise FbinferError(f"{path}: not a readable HDF5 file ({e})") from None
    for name in REQUIRED:
        if name not in f:
            f.close()
            raise FbinferError(f"{path}: missing field '{name}' (a Fashion-Gen file has {', '.join(REQUIRED)})")
    n = f["input_image"].shape[0]
    for name in REQUIRED[1:]:
        rows = f[name].shape[0]
        if rows != n:
            f.close()  # the message's figures are read before: a closed file's fields are gone
            raise FbinferError(f"{path}: field '{name}' has {rows} rows, input_image has {n}")
    return f


def read_fashiongen(path: Path) -> tuple[list[Item], list[Item], int]:
    """Train items, test items (split by product), and the number of rows skipped for an empty caption."""
    train, test, empty = [], [], 0
    with open_h5(path) as f:
        cols = {name: f[name][:] for name in REQUIRED[1:]}
        for row in range(f["input_image"].shape[0]):
            text = decode(cols["input_description"][row])
            if not text:
                empty += 1
                continue
            pid = decode(cols["input_productID"][row])
            item = Item(f"h5:{row}", text, decode(cols["input_category"][row]), decode(cols["input_subcategory"][row]), pid, where=f"{path}:row {row}")
            (test if is_test_product(pid) else train).append(item)
    if not train or not test:
        raise FbinferError(f"{path}: too few products to split into train and test ({len(train)} / {len(test)} items)")
    return train, test, empty
