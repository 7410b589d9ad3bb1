"""Files checked against their records before any deserialiser (faiss, numpy, torch) reads them: the
size always, then the sha256.

Hashing is what costs (about 1 s per GB here, docs/security.md), so a file already hashed by this
user is not hashed again while it is unchanged: ``~/.cache/fbinfer/verified.json`` (or
``$XDG_CACHE_HOME``) maps its real path to (device, inode, size, mtime in ns, sha256). Any
rewrite of the file changes its inode or mtime, and the cache is only a shortcut to a hash that
was computed from the file: it never vouches for a file it has not seen. ``FBINFER_VERIFY_CACHE=0``
turns it off.
"""
from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from fbinfer.errors import FbinferError
from fbinfer.fileio import sha256, write_json

_LOCK = threading.Lock()


def record(path: Path, **extra) -> dict:
    """What a writer records of a file it made: its size and sha256 (and e.g. an array's shape)."""
    return {"bytes": path.stat().st_size, "sha256": sha256(path), **extra}


def _cache_file() -> Path | None:
    if os.environ.get("FBINFER_VERIFY_CACHE", "1") == "0":
        return None
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "fbinfer" / "verified.json"


def _stamp(path: Path) -> list[int]:
    s = path.stat()
    return [s.st_dev, s.st_ino, s.st_size, s.st_mtime_ns]


def _cached() -> dict:
    f = _cache_file()
    if f is None or not f.is_file():
        return {}
    try:
        data = json.loads(f.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def check_file(path: Path, expected: dict, what: str) -> None:
    """One line naming ``path`` and what differs when it is missing, of another size, or of
    another sha256 than ``expected`` (a record from ``record``); ``what`` names whose record."""
    if not path.is_file():
        raise FbinferError(f"{path}: missing ({what} lists it); rebuild it")
    size = path.stat().st_size
    if size != expected["bytes"]:
        raise FbinferError(f"{path}: {size} bytes, {what} records {expected['bytes']} (truncated, grown or replaced); rebuild it")
    key, stamp = str(path.resolve()), _stamp(path)
    if _cached().get(key) == [*stamp, expected["sha256"]]:
        return
    digest = sha256(path)
    if digest != expected["sha256"]:
        raise FbinferError(f"{path}: sha256 {digest[:12]}..., {what} records {expected['sha256'][:12]}... "
                           "(changed in place, or another file of the same kind); rebuild it")
    remember(key, [*stamp, digest])


def remember(key: str, value: list) -> None:
    """Add a verified file to the cache (best effort: a cache that cannot be written is skipped)."""
    f = _cache_file()
    if f is None:
        return
    with _LOCK:
        data = _cached()
        data[key] = value
        if len(data) > 10_000:  # forget the oldest half (insertion order)
            data = dict(list(data.items())[-5_000:])
        try:
            write_json(f, data)
        except (FbinferError, OSError):
            pass
