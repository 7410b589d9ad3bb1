"""AdamW parameter groups for a model that starts from pretrained weights (nanoGPT's
``configure_optimizers``, shared by FashionBERT and the dual encoder)."""
from __future__ import annotations

from collections.abc import Callable

from torch import nn


def param_groups(model: nn.Module, pretrained: Callable[[str], bool], lr: float, head_lr: float,
                 weight_decay: float) -> list[dict]:
    """Pretrained parameters at ``lr``, new ones at ``head_lr``; weight decay only on matrices
    (not on norms, biases, scalars or embedding tables)."""
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        groups.setdefault((pretrained(name), p.ndim > 1 and "embeddings" not in name), []).append(p)
    return [{"params": ps, "lr": lr if pre else head_lr, "weight_decay": weight_decay if decay else 0.0}
            for (pre, decay), ps in groups.items()]
