"""The plain data-folder format: ``images/``, ``train.jsonl``, ``test.jsonl``, ``eval_candidates.json``.

One JSON object per line: ``image`` (path relative to the folder), ``text``, ``category``,
``subcategory``, ``product_id``. It is what ``fbinfer data synth`` writes and how users bring
their own data.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from fbinfer.errors import FbinferError
from fbinfer.fileio import atomic_path

FIELDS = ("image", "text", "category", "subcategory", "product_id")


@dataclass(frozen=True)
class Item:
    image: str  # path relative to the data folder, or "h5:<row>" for a Fashion-Gen file
    text: str
    category: str
    subcategory: str
    product_id: str
    where: str = field(default="", compare=False)  # "train.jsonl:12", for error messages; not written

    def to_dict(self) -> dict[str, str]:
        return {f: getattr(self, f) for f in FIELDS}


def parse_line(line: str, where: str) -> Item:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as e:
        raise FbinferError(f"{where}: malformed JSON ({e.msg})") from None
    if not isinstance(obj, dict):
        raise FbinferError(f"{where}: expected a JSON object")
    for f in FIELDS:
        if f not in obj:
            raise FbinferError(f"{where}: missing field '{f}'")
        if not isinstance(obj[f], (str, int)):
            raise FbinferError(f"{where}: field '{f}' must be a string")
    return Item(**{f: str(obj[f]) for f in FIELDS}, where=where)


def read_jsonl(path: Path) -> tuple[list[Item], int]:
    """Items of one split, and how many were skipped for an empty caption."""
    if not path.is_file():
        raise FbinferError(f"{path}: file not found")
    items, empty = [], 0
    with path.open(encoding="utf-8", errors="strict") as f:
        try:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                item = parse_line(line, f"{path}:{n}")
                if not item.text.strip():
                    empty += 1
                    continue
                items.append(item)
        except UnicodeDecodeError as e:
            raise FbinferError(f"{path}: not UTF-8 ({e.reason} at byte {e.start})") from None
    if not items:
        raise FbinferError(f"{path}: no usable items")
    return items, empty


def write_jsonl(path: Path, items: list[Item]) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text("".join(json.dumps(i.to_dict()) + "\n" for i in items), encoding="utf-8")
