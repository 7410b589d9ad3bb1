"""One checkpoint discipline for every model fbinfer trains (FashionBERT, the dual encoder) and their
resume states: config, weights and vocab in one file that is verified before it is deserialised.

A file is one JSON header line, then a ``torch.save`` payload::

    fbinfer-checkpoint {"format": "fbinfer.fashionbert", "format_version": 2, "bytes": N, "sha256": "..."}\\n
    <N bytes: torch.save({"config", "state_dict", "vocab", "meta", "train_state"?})>

The payload's size and sha256 are checked before ``torch.load`` (``weights_only=True``) sees a byte,
so a truncated, shortened or flipped file is one line naming it; the config is checked field by
field and the weights' shapes against it on the meta device before the model is built. Writes go
through ``fbinfer.fileio.atomic_path``: a full disk keeps the last good file.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from fbinfer.errors import FbinferError, first_line
from fbinfer.fileio import atomic_path, sha256
from fbinfer.model.tokenizer import TextTokenizer

MAGIC = b"fbinfer-checkpoint "
HEADER_LIMIT = 4096  # a header line is ~150 bytes; a file without a newline this early is not a checkpoint


@dataclass(frozen=True)
class Kind:
    """What a checkpoint file holds: its format tag and version, the model class and how to name it."""

    format: str  # e.g. "fbinfer.fashionbert"
    version: int
    model: type[torch.nn.Module]  # built as model(config); model.config has to_dict()
    read_config: Callable[[Any, str], Any]  # (the stored dict, where) -> a validated config
    noun: str  # "FashionBERT checkpoint"
    article: str  # "a", or "an" for a noun that wants it
    make: str  # how to make a new one (a file of an older version is refused)

    def save(self, ck: Checkpoint, path: str | os.PathLike[str]) -> None:
        save(ck, path, self)

    def load(self, path: str | os.PathLike[str], with_train_state: bool = False) -> Checkpoint:
        """Load and check a file of this kind; every way it can be wrong is one FbinferError line naming it."""
        return load(path, self, with_train_state)


@dataclass
class Checkpoint:
    model: torch.nn.Module
    vocab: list[str]
    meta: dict[str, Any] = field(default_factory=dict)  # training summary, data fingerprint ...
    train_state: dict[str, Any] | None = None  # optimizer, scheduler, step, RNG: only for --resume
    path: Path | None = None  # where it was loaded from

    @property
    def config(self) -> Any:
        return self.model.config

    def tokenizer(self) -> TextTokenizer:
        return TextTokenizer(self.vocab, self.config.max_text_len)

    @property
    def sha256(self) -> str:
        """The model's identity: bundles and indexes record it."""
        if self.path is None:
            raise FbinferError("this model was never saved, so it has no identity to record")
        return sha256(self.path)

    def training_data(self, data: Path | None = None) -> Path:
        """``data`` if given, else the data this checkpoint was trained on (its meta records it)."""
        if data is not None:
            return data
        if not self.meta.get("data"):
            raise FbinferError(f"{self.path}: the checkpoint names no training data; pass --data")
        return Path(self.meta["data"])


def save(ck: Checkpoint, path: str | os.PathLike[str], kind: Kind) -> None:
    """Write ``ck`` (with its train_state, if any) as a ``kind`` file, atomically."""
    blob = {"config": ck.config.to_dict(), "state_dict": ck.model.state_dict(), "vocab": ck.vocab, "meta": ck.meta}
    if ck.train_state is not None:
        blob["train_state"] = ck.train_state
    write_blob(blob, path, kind)


def write_blob(blob: dict[str, Any], path: str | os.PathLike[str], kind: Kind) -> None:
    """``blob`` through ``torch.save``, behind a header recording the payload's size and sha256."""
    buf = io.BytesIO()
    torch.save(blob, buf)
    payload = buf.getbuffer()
    header = {"format": kind.format, "format_version": kind.version, "bytes": len(payload),
              "sha256": hashlib.sha256(payload).hexdigest()}
    with atomic_path(path) as tmp, tmp.open("wb") as f:
        f.write(MAGIC + json.dumps(header).encode() + b"\n")
        f.write(payload)


def read_blob(path: str | os.PathLike[str], kind: Kind) -> dict[str, Any]:
    """A ``kind`` file's verified payload, deserialised (``weights_only``), not yet checked against its config."""
    p = Path(path)
    payload = read_payload(p, kind)
    try:
        blob = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - a payload that hashes right but does not load: written by something else
        raise FbinferError(f"{p}: not a readable {kind.noun} ({type(e).__name__}: {first_line(e, 120)})") from None
    if not isinstance(blob, dict):
        raise FbinferError(f"{p}: not a readable {kind.noun} (its payload is not a mapping)")
    return blob


def read_payload(p: Path, kind: Kind) -> bytes:
    """The payload of a ``kind`` file whose header, size and sha256 all check, or one line saying which does not."""
    if not p.is_file():
        raise FbinferError(f"{p}: {kind.noun} not found")
    with p.open("rb") as f:
        line = f.readline(HEADER_LIMIT)
        payload = f.read()
    if not line.startswith(MAGIC) or not line.endswith(b"\n"):
        what = ("an empty file" if not line else f"a torch file without fbinfer's sha256 header: {kind.make}" if line.startswith(b"PK")
                else "no fbinfer-checkpoint header")
        raise FbinferError(f"{p}: not a readable {kind.noun} ({what})")
    try:
        header = json.loads(line[len(MAGIC):])
        tag, version, size, digest = header["format"], header["format_version"], header["bytes"], header["sha256"]
    except (ValueError, KeyError, TypeError):
        raise FbinferError(f"{p}: not a readable {kind.noun} (malformed header)") from None
    if tag != kind.format:
        raise FbinferError(f"{p}: not {kind.article} {kind.noun} (its format is {tag!r}, not {kind.format!r})")
    if version != kind.version:
        raise FbinferError(f"{p}: {kind.noun} format version {version} is not supported (this fbinfer reads {kind.version}; {kind.make})")
    if len(payload) != size:
        raise FbinferError(f"{p}: {len(payload)} bytes of weights, its header records {size} (truncated or grown)")
    got = hashlib.sha256(payload).hexdigest()
    if got != digest:
        raise FbinferError(f"{p}: sha256 {got[:12]}... of its weights, its header records {digest[:12]}... (changed in place)")
    return payload


def load(path: str | os.PathLike[str], kind: Kind, with_train_state: bool = False) -> Checkpoint:
    """Load and check a ``kind`` file; every way it can be wrong ends in one FbinferError line naming it."""
    p = Path(path)
    blob = read_blob(p, kind)
    for key in ("config", "state_dict", "vocab"):
        if key not in blob:
            raise FbinferError(f"{p}: {kind.noun} has no '{key}' field")
    cfg = kind.read_config(blob["config"], f"{p}: config")
    check_shapes(p, kind, cfg, blob["state_dict"])
    model = kind.model(cfg)
    model.load_state_dict(blob["state_dict"])
    vocab = blob["vocab"]
    if not isinstance(vocab, list) or len(vocab) != model.vocab_size:
        raise FbinferError(f"{p}: vocab has {len(vocab) if isinstance(vocab, list) else 'no'} tokens, its config says {model.vocab_size}")
    model.eval()
    return Checkpoint(model, list(vocab), dict(blob.get("meta", {})), blob.get("train_state") if with_train_state else None, p)


def check_shapes(path: Path, kind: Kind, cfg: Any, state: Any) -> None:
    """The weights are exactly those the config implies, in shape, checked on the meta device (no
    memory) before the model is built: a small file declaring a huge config must not allocate it."""
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise FbinferError(f"{path}: 'state_dict' is not a mapping of tensors")
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in kind.model(cfg).state_dict().items()}
    for name in sorted(set(expected) | set(state)):
        got = tuple(state[name].shape) if name in state else None
        if got != expected.get(name):
            raise FbinferError(f"{path}: weights do not match its config ({name} is {got}, the config implies {expected.get(name)})")
