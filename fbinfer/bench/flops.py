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


def matmuls(cfg: FashionBertConfig, text_len: int, cls_only: bool = False) -> list[MatMul]:
    """Every matmul of one pair's forward pass with ``text_len`` text tokens; ``cls_only``: the
    last layer's query, attention, output and feed-forward on [CLS] alone, as fbinfer's export
    graph runs it (``ExportGraph``), its keys and values on every token."""
    h, i, p, d, heads, layers = (cfg.hidden_size, cfg.intermediate_size, cfg.num_patches, cfg.patch_feature_dim,
                                 cfg.num_heads, cfg.num_layers)
    n_img, dh = cfg.image_tokens, cfg.hidden_size // cfg.num_heads
    seq, full = text_len + n_img, layers - cls_only
    out = [MatMul("image context", n_img, p, d)] if cfg.global_image_context else []  # the export form's averaging matmul
    out += [
        MatMul("patch projection", n_img, d, h),
        MatMul("query/key/value", seq, h, 3 * h, repeat=full),
        MatMul("attention scores", seq, dh, seq, per_pair=heads, repeat=full, weight=False),
        MatMul("attention context", seq, seq, dh, per_pair=heads, repeat=full, weight=False),
        MatMul("attention output", seq, h, h, repeat=full),
        MatMul("feed-forward in", seq, h, i, repeat=full),
        MatMul("feed-forward out", seq, i, h, repeat=full),
    ]
    if cls_only:
        out += [
            MatMul("last layer: key/value", seq, h, 2 * h),
            MatMul("last layer: [CLS] query", 1, h, h),
            MatMul("last layer: [CLS] attention scores", 1, dh, seq, per_pair=heads, weight=False),
            MatMul("last layer: [CLS] attention context", 1, seq, dh, per_pair=heads, weight=False),
            MatMul("last layer: [CLS] output", 1, h, h),
            MatMul("last layer: [CLS] feed-forward in", 1, h, i),
            MatMul("last layer: [CLS] feed-forward out", 1, i, h),
        ]
    return out + [MatMul("pooler", 1, h, h), MatMul("TIA head", 1, h, 1)]


def flops_per_pair(cfg: FashionBertConfig, text_len: int, cls_only: bool = False) -> int:
    return 2 * sum(mm.macs for mm in matmuls(cfg, text_len, cls_only))
