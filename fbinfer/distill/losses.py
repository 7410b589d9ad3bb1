"""Distillation loss terms, each a plain function of tensors (tested on hand-made ones)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def tia_kd(student_logit: torch.Tensor, teacher_logit: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(teacher || student) between the match probabilities sigmoid(logit / T), times T^2
    (Hinton et al.: keeps the gradient's size independent of T). Zero when the logits agree."""
    s, t = student_logit.float() / temperature, teacher_logit.float() / temperature
    p = torch.sigmoid(t)
    kl = p * (F.logsigmoid(t) - F.logsigmoid(s)) + (1 - p) * (F.logsigmoid(-t) - F.logsigmoid(-s))
    return kl.mean() * temperature**2


def list_kd(student_logit: torch.Tensor, teacher_logit: torch.Tensor, temperature: float) -> torch.Tensor:
    """Listwise ranking distillation: KL(teacher || student) between softmax(logits / T) over each
    row of (lists, candidates), times T^2. Rank@1 is decided among fine-grained negatives of one
    sub-category; this term teaches the order within such a list, not each pair's probability."""
    s = F.log_softmax(student_logit.float() / temperature, dim=-1)
    t = F.log_softmax(teacher_logit.float() / temperature, dim=-1)
    return (t.exp() * (t - s)).sum(-1).mean() * temperature**2


def row_mean(values: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """(B, L) per-token values -> the mean over each pair's real tokens, then over pairs. Every
    pair weighs the same, so shards of equal size average to the global batch's loss (DDP)."""
    return ((values * keep).sum(-1) / keep.sum(-1).clamp_min(1)).mean()


def masked_mse(student: torch.Tensor, teacher: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the hidden size, averaged over the tokens where ``keep`` (B, L) is set."""
    return row_mean((student.float() - teacher.float()).pow(2).mean(-1), keep)


def attention_kl(sq: torch.Tensor, sk: torch.Tensor, tq: torch.Tensor, tk: torch.Tensor, keep: torch.Tensor,
                 relation_heads: int) -> torch.Tensor:
    """KL(teacher || student) of the self-attention distributions softmax(Q K^T / sqrt(d)).

    Queries and keys (B, L, width) are split into ``relation_heads`` heads on both sides
    (MiniLMv2's relation heads): with the teacher's head count this is exactly TinyBERT's and
    MiniLM's attention-map loss; with fewer, it compares a student of another width or head
    count. Padding keys are masked; the KL is averaged over heads and real query tokens.
    """
    def log_attention(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        q = q.float().unflatten(-1, (relation_heads, -1)).transpose(1, 2)  # B, R, L, d
        k = k.float().unflatten(-1, (relation_heads, -1)).transpose(1, 2)
        scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
        scores = scores.masked_fill(~keep.bool()[:, None, None, :], torch.finfo(scores.dtype).min)
        return scores.log_softmax(-1)

    log_s, log_t = log_attention(sq, sk), log_attention(tq, tk)
    kl = (log_t.exp() * (log_t - log_s)).sum(-1)  # B, R, L
    return row_mean(kl.mean(1), keep)


def relation_heads(student_heads: int, teacher_hidden: int, student_hidden: int) -> int:
    """The student's head count when both widths split into it, else their largest common divisor."""
    if teacher_hidden % student_heads == 0:
        return student_heads
    return math.gcd(math.gcd(teacher_hidden, student_hidden), student_heads)
