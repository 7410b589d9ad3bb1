"""Task weights for FashionBERT's three losses (MLM, MPM, TIA).

The paper (Algorithm 1) solves, per batch,
    min_w  -1/2 sum_i ||w_i grad l_i||^2 + 1/2 sum_{i,j} ||w_i - w_j||^2,  sum w = 1, w >= 0
whose closed form is  w_i = (L - g_i^2)^-1 / sum_j (L - g_j^2)^-1,  g_i = ||grad l_i||.
"grad": that closed form. g_i is the norm of the gradient of l_i with respect to the encoder's
        output (the representation all three tasks share), divided by the sum over tasks so
        that every g_i lies in [0, 1] where the closed form is non-negative. Weights are
        constants for the step (no gradient flows through them).
"loss": the released code's variant on loss values: nG = softmax(losses)^2 in the same
        closed form, and the gradient is not stopped through the weights (as released).
"fixed": constant weights, for ablation.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from fbinfer.training.config import MODES


def closed_form(g: torch.Tensor) -> torch.Tensor:
    """w_i = (L - g_i^2)^-1 / sum_j (L - g_j^2)^-1 for a vector g of L task magnitudes."""
    inv = 1.0 / (g.numel() - g**2)
    return inv / inv.sum()


def gradient_norms(losses: Sequence[torch.Tensor], shared: torch.Tensor) -> torch.Tensor:
    """||d l_i / d shared|| per task (each a backward pass through that task's head only)."""
    norms = []
    for loss in losses:
        if not loss.requires_grad:
            norms.append(torch.zeros((), device=shared.device))
            continue
        (g,) = torch.autograd.grad(loss, shared, retain_graph=True, allow_unused=True)
        norms.append(torch.zeros((), device=shared.device) if g is None else g.norm())
    return torch.stack(norms)


class TaskWeights:
    def __init__(self, mode: str = "grad", fixed: Sequence[float] = (1.0, 1.0, 1.0)):
        if mode not in MODES:
            raise ValueError(f"loss weighting must be one of {MODES}, not {mode!r}")
        self.mode = mode
        self.fixed = torch.tensor(list(fixed), dtype=torch.float32)

    def __call__(self, losses: Sequence[torch.Tensor], shared: torch.Tensor) -> torch.Tensor:
        if self.mode == "fixed":
            return self.fixed.to(shared.device)
        if self.mode == "loss":
            return closed_form(torch.softmax(torch.stack(list(losses)), dim=0))  # closed_form squares: nG = softmax^2
        g = gradient_norms(losses, shared)
        return closed_form(g / g.sum().clamp_min(1e-12)).detach()
