"""The dual encoder's losses: contrastive over in-batch negatives (several positives allowed: two
views of one product both match its caption), and a KL towards the cross-encoder's ranking."""
from __future__ import annotations

import torch
from torch import nn


def multi_positive_nce(logits: torch.Tensor, positive: torch.Tensor) -> torch.Tensor:
    """Mean over rows of -log(sum of exp over the row's positives / sum over the row).

    logits: (N, M) similarities times the scale; positive: (N, M) bool, at least one per row.
    """
    all_ = torch.logsumexp(logits, dim=1)
    pos = torch.logsumexp(logits.masked_fill(~positive, torch.finfo(logits.dtype).min), dim=1)
    return (all_ - pos).mean()


def symmetric_nce(a: torch.Tensor, b: torch.Tensor, scale: torch.Tensor, same: torch.Tensor) -> torch.Tensor:
    """InfoNCE both ways between unit vectors a (N, d) and b (N, d); ``same``: (N, N) bool, the pairs that match."""
    logits = scale * a @ b.T
    return 0.5 * (multi_positive_nce(logits, same) + multi_positive_nce(logits.T, same.T))


def ranking_kl(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(teacher || student) between softmaxes over each list's candidates; both (lists, size) logits.
    The teacher's logits are divided by ``temperature``; the student's are its scaled similarities."""
    target = torch.softmax(teacher.float() / temperature, dim=-1)
    return nn.functional.kl_div(torch.log_softmax(student.float(), dim=-1), target, reduction="batchmean")
