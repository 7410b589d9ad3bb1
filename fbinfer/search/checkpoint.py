"""``embed.pt``: the dual encoder (``fbinfer.checkpoint``'s verified file of kind EMBED).

A model's identity is the sha256 of this file: an index records it, and its exported bundle
carries it, so an index is never searched with vectors from another model.
"""
from __future__ import annotations

from fbinfer.checkpoint import Checkpoint, Kind
from fbinfer.search.config import EmbedConfig
from fbinfer.search.model import DualEncoder

EMBED = Kind("fbinfer.embed", 2, DualEncoder, EmbedConfig.from_dict, "fbinfer embedding model", "an",
             "files of version 1 were written before checkpoints carried their sha256: retrain with fbinfer embed train")
load_embed, save_embed = EMBED.load, EMBED.save

__all__ = ["EMBED", "Checkpoint", "load_embed", "save_embed"]
