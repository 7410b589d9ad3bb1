"""``model.pt``: a FashionBERT checkpoint (``fbinfer.checkpoint``'s verified file of kind FASHIONBERT)."""
from __future__ import annotations

from fbinfer.checkpoint import Checkpoint, Kind
from fbinfer.model.config import FashionBertConfig
from fbinfer.model.fashionbert import FashionBert

FASHIONBERT = Kind("fbinfer.fashionbert", 2, FashionBert, FashionBertConfig.from_dict, "FashionBERT checkpoint", "a",
                   "files of version 1 were written before checkpoints carried their sha256: retrain with fbinfer train")
load_checkpoint, save_checkpoint = FASHIONBERT.load, FASHIONBERT.save

__all__ = ["FASHIONBERT", "Checkpoint", "load_checkpoint", "save_checkpoint"]
