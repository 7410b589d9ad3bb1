"""FLOPs per scored pair, counted from the config (2 x multiply-accumulates of the matmuls;
norms, softmax and activations are left out, as usual for transformer FLOP counts)."""
from __future__ import annotations

from fbinfer.model.config import FashionBertConfig


def flops_per_pair(cfg: FashionBertConfig, text_len: int) -> int:
    h, i, p, d = cfg.hidden_size, cfg.intermediate_size, cfg.num_patches, cfg.patch_feature_dim
    n_img = cfg.image_tokens
    seq = text_len + n_img
    macs = n_img * p * d if cfg.global_image_context else 0  # the averaging matmul of the export form
    macs += n_img * d * h  # patch projection
    per_layer = 4 * seq * h * h + 2 * seq * seq * h + 2 * seq * h * i  # QKV + output, QK^T and PV, FFN
    macs += cfg.num_layers * per_layer
    macs += h * h + h  # pooler + TIA
    return 2 * macs
