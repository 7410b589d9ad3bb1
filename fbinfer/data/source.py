"""``--data``: a data folder or a Fashion-Gen HDF5 file, behind one small interface."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from fbinfer.data.candidates import CandidateLists, build_candidates
from fbinfer.data.decode import decode_image, read_image_file
from fbinfer.data.records import Item, read_jsonl
from fbinfer.errors import FbinferError
from fbinfer.fileio import read_json, write_json


@dataclass
class DataSource:
    path: Path
    train: list[Item]
    test: list[Item]
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> count
    _h5: object = None
    _candidates: CandidateLists | None = None

    @property
    def is_h5(self) -> bool:
        return self.path.is_file()

    @property
    def cache_dir(self) -> Path:
        """Beside the data: ``DIR/.fbinfer`` or ``FILE.h5.fbinfer``."""
        return self.path / ".fbinfer" if not self.is_h5 else self.path.with_name(self.path.name + ".fbinfer")

    def image_bytes(self, item: Item) -> bytes:
        """Raw bytes that identify the image (the file, or the HDF5 row's pixels): the cache key's input."""
        if self.is_h5:
            return self._h5_row(item).tobytes()
        return read_image_file(self.image_path(item), f"{self.path / item.image} ({item.where})")

    def image_path(self, item: Item) -> Path:
        """The image's file, which must lie inside the data folder (after following links)."""
        if "\x00" in item.image:
            raise FbinferError(f"{item.where}: image path {item.image!r} contains a NUL byte")
        real = (self.path / item.image).resolve()
        if self.path.resolve() not in real.parents:
            raise FbinferError(f"{item.where}: image path {item.image!r} leads outside the data folder {self.path}")
        return real

    def image_hash(self, item: Item) -> str:
        return hashlib.sha1(self.image_bytes(item)).hexdigest()

    def open_image(self, item: Item) -> Image.Image:
        if self.is_h5:
            return Image.fromarray(self._h5_row(item))
        return decode_image(self.image_bytes(item), f"{self.path / item.image} ({item.where})")

    def _h5_row(self, item: Item) -> np.ndarray:
        if self._h5 is None:
            from fbinfer.data.fashiongen import open_h5

            self._h5 = open_h5(self.path)
        return np.asarray(self._h5["input_image"][int(item.image[3:])], dtype=np.uint8)

    @property
    def candidates(self) -> CandidateLists:
        """The fixed evaluation lists: read from the data, or made once and saved beside it."""
        if self._candidates is None:
            file = (self.path if not self.is_h5 else self.cache_dir) / "eval_candidates.json"
            if file.is_file():
                self._candidates = CandidateLists.from_dict(read_json(file), len(self.test), str(file))
            else:
                self._candidates = build_candidates(self.test)
                try:
                    write_json(file, self._candidates.to_dict())
                except (OSError, FbinferError):
                    pass  # a read-only data folder: the lists are still fixed by their seed
        return self._candidates

    def fingerprint(self) -> str:
        """Identifies the training data (for calibration caches and checkpoint metadata)."""
        h = hashlib.sha1()
        for it in self.train + self.test:
            h.update(f"{it.image}\t{it.text}\t{it.product_id}\n".encode())
        return h.hexdigest()[:16]


def load_data(path: str | Path) -> DataSource:
    p = Path(path)
    if p.is_dir():
        train, e1 = read_jsonl(p / "train.jsonl")
        test, e2 = read_jsonl(p / "test.jsonl")
        return DataSource(p, train, test, {"empty caption": e1 + e2} if e1 + e2 else {})
    if p.is_file() and p.suffix.lower() in (".h5", ".hdf5"):
        from fbinfer.data.fashiongen import read_fashiongen

        train, test, empty = read_fashiongen(p)
        return DataSource(p, train, test, {"empty caption": empty} if empty else {})
    if not p.exists():
        raise FbinferError(f"--data {p}: no such file or folder")
    raise FbinferError(f"--data {p}: expected a data folder (train.jsonl, test.jsonl, images/) or a Fashion-Gen .h5 file")
