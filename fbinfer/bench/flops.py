"""FLOPs per scored pair, counted from the config (2 x multiply-accumulates of the matmuls;
norms, softmax and activations are left out, as usual for transformer FLOP counts)."""
from __future__ import annotations

from dataclasses import dataclass

from fbinfer.model.config import FashionBertConfig


@dataclass(frozen=True)
class MatMul:
    """One matmul of the forward pass for one pair: ``per_pair`` products of (m x k) by (k x n),
    ``repeat`` times (once per layer); ``weight`` when the (k x n) operand is a parameter, shared
    by every pair of a batch (token-wise layers), else an activation (attention)."""

    name: str
    m: int
    k: int
    n: int
    per_pair: int = 1
    repeat: int = 1
    weight: bool = True

    @property
    def macs(self) -> int:
        return self.repeat * self.per_pair * self.m * self.k * self.n


def matmuls(cfg: FashionBertConfig, text_len: int) -> list[MatMul]:
    """Every matmul of one pair's forward pass with ``text_len`` text tokens."""
    h, i, p, d, heads, layers = (cfg.hidden_size, cfg.intermediate_size, cfg.num_patches, cfg.patch_feature_dim,
                                 cfg.num_heads, cfg.num_layers)
    n_img, dh = cfg.image_tokens, cfg.hidden_size // cfg.num_heads
    seq = text_len + n_img
    out = [MatMul("image context", n_img, p, d)] if cfg.global_image_context else []  # the export form's averaging matmul
    return out + [
        MatMul("patch projection", n_img, d, h),
        MatMul("query/key/value", seq, h, 3 * h, repeat=layers),
        MatMul("attention scores", seq, dh, seq, per_pair=heads, repeat=layers, weight=False),
        MatMul("attention context", seq, seq, dh, per_pair=heads, repeat=layers, weight=False),
        MatMul("attention output", seq, h, h, repeat=layers),
        MatMul("feed-forward in", seq, h, i, repeat=layers),
        MatMul("feed-forward out", seq, i, h, repeat=layers),
        MatMul("pooler", 1, h, h),
        MatMul("TIA head", 1, h, 1),
    ]


def flops_per_pair(cfg: FashionBertConfig, text_len: int) -> int:
    return 2 * sum(mm.macs for mm in matmuls(cfg, text_len))
