"""The training options as dataclasses, torch-free: the CLI states its defaults from them."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fbinfer.errors import FbinferError

PRECISIONS = ("fp32", "bf16")  # of the forward pass (autocast; weights and optimizer stay fp32)
MODES = ("grad", "loss", "fixed")  # the task weighting (training/adaptive.py)


def check_schedule(cfg: Any) -> None:
    """The options train and distill share, checked before any work (one line each): step count or
    epochs, batch size and learning rate positive, sampling shares in range, a known precision."""
    for name in ("steps", "epochs", "batch_size", "lr"):
        value = getattr(cfg, name)
        if value is not None and (not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0):
            raise FbinferError(f"--{name.replace('_', '-')}: must be positive, got {value}")
    if cfg.lists < 0 or cfg.list_size < 2:
        raise FbinferError(f"--lists {cfg.lists} --list-size {cfg.list_size}: need lists >= 0 and at least 2 pairs per list")
    if not 0.0 <= cfg.hard_ratio <= 1.0:
        raise FbinferError(f"--hard-ratio: a share between 0 and 1, got {cfg.hard_ratio}")
    for name in ("checkpoint_every", "log_every"):
        if getattr(cfg, name) < 1:
            raise FbinferError(f"--{name.replace('_', '-')}: must be >= 1, got {getattr(cfg, name)}")
    if cfg.precision not in PRECISIONS:
        raise FbinferError(f"--precision {cfg.precision!r}: training runs {' or '.join(PRECISIONS)}")



@dataclass
class TrainConfig:
    steps: int | None = None  # or epochs
    epochs: float | None = None
    batch_size: int = 32
    lr: float = 1e-4  # pretrained encoder
    head_lr: float = 1e-4  # new parameters: patch embedding and heads (1e-3 kept TIA at chance: docs/training.md)
    warmup: float = 0.06  # fraction of steps
    weight_decay: float = 0.01
    weighting: str = "grad"
    fixed_weights: tuple[float, float, float] = (1.0, 1.0, 1.0)
    mlm_prob: float = 0.15
    mpm_prob: float = 0.1
    align_steps: int = 300  # projector alignment warm-up (training/align.py), batch align_batch_size
    align_batch_size: int = 128
    # share of negatives from the same sub-category, the rest from any other product: with 1.0 the
    # teacher never learnt to reject another category's caption (docs/training.md)
    hard_ratio: float = 0.5
    tia_warmup_steps: int = 200  # first steps: TIA only, random negatives, no masking, constant lr (docs/training.md)
    lists: int = 0  # ranking lists per batch after the warm-up: TIA adds their softmax cross-entropy
    list_size: int = 16  # pairs per list: the truth and list_size - 1 candidates from its sub-category
    start: str | None = None  # a FashionBERT checkpoint to fine-tune (no projector alignment, no TIA warm-up)
    mine_negatives: str | None = None  # the embedding model the hard negatives were mined with (search/mining.py), for the record
    mined_k: int = 16
    precision: str = "fp32"  # of the forward pass: fp32 or bf16 (autocast; weights and optimizer stay fp32)
    checkpoint_every: int = 200
    log_every: int = 10
    seed: int = 0

    def validate(self) -> TrainConfig:
        """Every option checked before any work, each error one line naming the option."""
        check_schedule(self)
        if self.head_lr <= 0:
            raise FbinferError(f"--head-lr: must be positive, got {self.head_lr}")
        if self.weighting not in MODES:
            raise FbinferError(f"--loss-weighting: {self.weighting!r} is not one of {', '.join(MODES)}")
        if len(self.fixed_weights) != 3 or not all(math.isfinite(w) and w >= 0 for w in self.fixed_weights):
            raise FbinferError(f"--fixed-weights: {','.join(map(str, self.fixed_weights))} is not three numbers >= 0 (MLM,MPM,TIA)")
        if self.tia_warmup_steps < 0:
            raise FbinferError(f"--tia-warmup-steps: must be >= 0, got {self.tia_warmup_steps}")
        if self.mined_k < 1:
            raise FbinferError(f"--mined-k: must be >= 1, got {self.mined_k}")
        if self.mine_negatives is not None and not Path(self.mine_negatives).exists():
            raise FbinferError(f"--mine-negatives {self.mine_negatives}: no such embedding model")
        return self
