"""``model.pt``: config, weights and vocab in one file that loads with ``weights_only=True``."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from fbinfer.errors import FbinferError, first_line
from fbinfer.fileio import atomic_path
from fbinfer.model.config import FashionBertConfig
from fbinfer.model.fashionbert import FashionBert
from fbinfer.model.tokenizer import TextTokenizer

FORMAT = "fbinfer.fashionbert"
FORMAT_VERSION = 1


@dataclass
class Checkpoint:
    model: FashionBert
    vocab: list[str]
    meta: dict[str, Any] = field(default_factory=dict)  # training summary, data fingerprint ...
    train_state: dict[str, Any] | None = None  # optimizer, scheduler, step, RNG: only for --resume
    path: Path | None = None  # where it was loaded from

    @property
    def config(self) -> FashionBertConfig:
        return self.model.config

    def tokenizer(self) -> TextTokenizer:
        return TextTokenizer(self.vocab, self.config.max_text_len)

    def training_data(self, data: Path | None = None) -> Path:
        """``data`` if given, else the data this checkpoint was trained on (its meta records it)."""
        if data is not None:
            return data
        if not self.meta.get("data"):
            raise FbinferError(f"{self.path}: the checkpoint names no training data; pass --data")
        return Path(self.meta["data"])


def save_checkpoint(ckpt: Checkpoint, path: str | os.PathLike[str]) -> None:
    blob = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": ckpt.config.to_dict(),
        "state_dict": ckpt.model.state_dict(),
        "vocab": ckpt.vocab,
        "meta": ckpt.meta,
    }
    if ckpt.train_state is not None:
        blob["train_state"] = ckpt.train_state
    write_torch(blob, path)


def write_torch(blob: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """``torch.save`` under a temporary name, renamed when complete: a failed write (a full disk)
    keeps the earlier file and raises the OSError itself (fbinfer.fileio turns it into one line)."""
    with atomic_path(path) as tmp, tmp.open("wb") as f:
        try:
            torch.save(blob, f)
        except RuntimeError as e:  # torch's zip writer hides the file's OSError (a full disk) behind its own
            if isinstance(e.__context__, OSError):
                raise e.__context__ from None
            raise


def load_checkpoint(path: str | os.PathLike[str], with_train_state: bool = False) -> Checkpoint:
    """Load and check a checkpoint; every way it can be wrong ends in one FbinferError line."""
    p = Path(path)
    if not p.is_file():
        raise FbinferError(f"{p}: checkpoint not found")
    if p.stat().st_size == 0:
        raise FbinferError(f"{p}: not a readable checkpoint (an empty file)")
    try:
        blob = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many types for truncated or foreign files
        raise FbinferError(f"{p}: not a readable checkpoint ({type(e).__name__}: {first_line(e, 120)})") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise FbinferError(f"{p}: not a FashionBERT checkpoint (no '{FORMAT}' format tag)")
    if blob.get("format_version") != FORMAT_VERSION:
        raise FbinferError(f"{p}: checkpoint format version {blob.get('format_version')} is not supported")
    for key in ("config", "state_dict", "vocab"):
        if key not in blob:
            raise FbinferError(f"{p}: checkpoint has no '{key}' field")
    try:
        cfg = FashionBertConfig.from_dict(blob["config"])
    except FbinferError as e:
        raise FbinferError(f"{p}: {e}") from None
    check_shapes(p, cfg, blob["state_dict"])
    model = FashionBert(cfg)
    try:
        model.load_state_dict(blob["state_dict"])
    except RuntimeError as e:
        raise FbinferError(f"{p}: weights do not match its config ({first_line(e)})") from None
    if len(blob["vocab"]) != cfg.vocab_size:
        raise FbinferError(f"{p}: vocab has {len(blob['vocab'])} tokens, config says {cfg.vocab_size}")
    model.eval()
    return Checkpoint(model, list(blob["vocab"]), dict(blob.get("meta", {})), blob.get("train_state") if with_train_state else None, p)


def check_shapes(path: Path, cfg: FashionBertConfig, state: Any) -> None:
    """The weights' shapes are what the config implies, checked on the meta device (no memory) before
    the model is built: a small file declaring a huge config must not allocate it."""
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise FbinferError(f"{path}: 'state_dict' is not a mapping of tensors")
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in FashionBert(cfg).state_dict().items()}
    for name, shape in expected.items():
        got = tuple(state[name].shape) if name in state else None
        if got != shape:
            raise FbinferError(f"{path}: weights do not match its config ({name} is {got}, the config implies {shape})")

