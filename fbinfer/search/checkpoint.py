"""``embed.pt``: the dual encoder's config, weights and vocab in one file loaded with ``weights_only=True``.

A model's identity is the sha256 of this file: an index records it, and its exported bundle
carries it, so an index is never searched with vectors from another model.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from fbinfer.errors import FbinferError, first_line
from fbinfer.fileio import sha256
from fbinfer.model.checkpoint import write_torch
from fbinfer.model.tokenizer import TextTokenizer
from fbinfer.search.config import EmbedConfig
from fbinfer.search.model import DualEncoder

FORMAT = "fbinfer.embed"
FORMAT_VERSION = 1  # files written before versions carried none: they are refused (retrain with fbinfer embed train)


@dataclass
class EmbedCheckpoint:
    model: DualEncoder
    vocab: list[str]
    meta: dict[str, Any] = field(default_factory=dict)
    train_state: dict[str, Any] | None = None
    path: Path | None = None

    @property
    def config(self) -> EmbedConfig:
        return self.model.config

    def tokenizer(self) -> TextTokenizer:
        return TextTokenizer(self.vocab, self.config.max_text_len)

    @property
    def sha256(self) -> str:
        if self.path is None:
            raise FbinferError("this embedding model was never saved, so it has no identity to record")
        return sha256(self.path)


def save_embed(ck: EmbedCheckpoint, path: str | os.PathLike[str]) -> None:
    blob = {"format": FORMAT, "format_version": FORMAT_VERSION, "config": ck.config.to_dict(), "state_dict": ck.model.state_dict(),
            "vocab": ck.vocab, "meta": ck.meta}
    if ck.train_state is not None:
        blob["train_state"] = ck.train_state
    write_torch(blob, path)


def load_embed(path: str | os.PathLike[str], with_train_state: bool = False) -> EmbedCheckpoint:
    """Load and check; every way the file can be wrong is one FbinferError line naming it."""
    p = Path(path)
    if not p.is_file():
        raise FbinferError(f"{p}: embedding model not found")
    try:
        blob = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many types for truncated or foreign files
        raise FbinferError(f"{p}: not a readable embedding model ({type(e).__name__}: {first_line(e, 120)})") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise FbinferError(f"{p}: not an fbinfer embedding model (no '{FORMAT}' format tag; a FashionBERT checkpoint is not one)")
    if blob.get("format_version") != FORMAT_VERSION:
        raise FbinferError(f"{p}: embedding model format version {blob.get('format_version')} is not supported "
                           f"(this fbinfer reads {FORMAT_VERSION}; retrain with fbinfer embed train)")
    cfg = EmbedConfig.from_dict(blob.get("config"), f"{p}: config")
    model = DualEncoder(cfg)
    try:
        model.load_state_dict(blob["state_dict"])
    except (RuntimeError, KeyError, TypeError) as e:
        raise FbinferError(f"{p}: weights do not match its config ({first_line(e)})") from None
    vocab = blob.get("vocab")
    if not isinstance(vocab, list) or model.text.config.vocab_size != len(vocab):
        raise FbinferError(f"{p}: vocab does not match the text tower ({model.text.config.vocab_size} tokens expected)")
    model.eval()
    return EmbedCheckpoint(model, list(vocab), dict(blob.get("meta", {})), blob.get("train_state") if with_train_state else None, p)
