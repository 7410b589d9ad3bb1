"""The dual encoder that makes a catalogue searchable: one normalised space for text, image and
image+text (product), so a query is one forward pass and a vector search, not a pass per item.

Text tower: MiniLM's BERT encoder (all-MiniLM-L6-v2 was trained for mean-pooled sentence
vectors, so it starts as a good text encoder), mean-pooled over real tokens, projected.
Image tower: the same 8 x 8 EfficientNet-Lite0 patch features FashionBERT reads, embedded with
a grid position, one small transformer layer, then attention pooling (a learned query), projected.
Product: a linear map of [text; image], started as their sum (the seed paper's image+text modality).
"""
from __future__ import annotations

import math

import torch
from torch import nn
from transformers import BertModel

from fbinfer.model.fashionbert import bert_config
from fbinfer.model.groups import param_groups
from fbinfer.search.config import EmbedConfig


class TextTower(nn.Module):
    def __init__(self, cfg: EmbedConfig):
        super().__init__()
        self.config = cfg.text_config()
        self.bert = BertModel(bert_config(self.config), add_pooling_layer=False)
        self.proj = nn.Linear(self.config.hidden_size, cfg.dim)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(B, T) tokens -> (B, dim) unit vectors."""
        x = self.bert.embeddings(input_ids=input_ids, token_type_ids=torch.zeros_like(input_ids))
        keep = attention_mask.to(x.dtype)
        additive = (1.0 - keep[:, None, None, :]) * torch.finfo(x.dtype).min
        x = self.bert.encoder(x, attention_mask=additive).last_hidden_state
        pooled = (x * keep[..., None]).sum(1) / keep.sum(1, keepdim=True).clamp(min=1.0)  # mean over real tokens
        return nn.functional.normalize(self.proj(pooled), dim=-1)


class Block(nn.Module):
    """Pre-norm transformer layer (written out: exports to plain ONNX ops, unlike PyTorch's fused encoder layer)."""

    def __init__(self, h: int, heads: int, dropout: float):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.norm1, self.norm2 = nn.LayerNorm(h), nn.LayerNorm(h)
        self.qkv, self.out = nn.Linear(h, 3 * h), nn.Linear(h, h)
        self.mlp = nn.Sequential(nn.Linear(h, 4 * h), nn.GELU(), nn.Linear(4 * h, h), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, p, h = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, p, 3, self.heads, h // self.heads).permute(2, 0, 3, 1, 4)  # 3 x (B, heads, P, h/heads)
        a = nn.functional.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        x = x + self.out(a.transpose(1, 2).reshape(b, p, h))
        return x + self.mlp(self.norm2(x))


class ImageTower(nn.Module):
    def __init__(self, cfg: EmbedConfig):
        super().__init__()
        fc = cfg.feature_config()
        h = cfg.image_hidden
        self.embed = nn.Linear(fc.patch_feature_dim, h)
        self.position = nn.Parameter(torch.zeros(fc.num_patches, h))
        self.norm = nn.LayerNorm(h)
        self.layers = nn.ModuleList(Block(h, cfg.image_heads, cfg.dropout) for _ in range(cfg.image_layers))
        self.pool = nn.Linear(h, 1, bias=False)  # the learned pooling query
        self.proj = nn.Linear(h, cfg.dim)
        nn.init.normal_(self.position, std=0.02)

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        """(B, P, D) patch features -> (B, dim) unit vectors."""
        x = self.norm(self.embed(patches) + self.position)
        for layer in self.layers:
            x = layer(x)
        weights = torch.softmax(self.pool(x).squeeze(-1), dim=1)  # (B, P): attention pooling
        return nn.functional.normalize(self.proj((weights[..., None] * x).sum(1)), dim=-1)


class ProductHead(nn.Module):
    """[text; image] -> one product vector, started as normalise(text + image)."""

    def __init__(self, dim: int):
        super().__init__()
        self.mix = nn.Linear(2 * dim, dim)
        with torch.no_grad():
            self.mix.weight.copy_(torch.cat([torch.eye(dim), torch.eye(dim)], dim=1))
            self.mix.bias.zero_()

    def forward(self, text: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(self.mix(torch.cat([text, image], dim=-1)), dim=-1)


class DualEncoder(nn.Module):
    def __init__(self, cfg: EmbedConfig):
        super().__init__()
        self.config = cfg
        self.text = TextTower(cfg)
        self.image = ImageTower(cfg)
        self.product = ProductHead(cfg.dim)
        self.log_scale = nn.Parameter(torch.tensor(math.log(20.0)))  # similarity -> logit (CLIP's learned temperature)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, patches: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Row i's caption and image -> (text, image, product) unit vectors (B, dim) each, and the logit scale."""
        t, v = self.text(input_ids, attention_mask), self.image(patches)
        return t, v, self.product(t, v), self.scale

    @property
    def vocab_size(self) -> int:
        return self.text.config.vocab_size

    def param_groups(self, lr: float, head_lr: float, weight_decay: float) -> list[dict]:
        """The pretrained text encoder at ``lr`` (when it was loaded), everything new at ``head_lr``."""
        loaded = self.config.init is not None and not self.config.tiny
        return param_groups(self, lambda name: loaded and name.startswith("text.bert."), lr, head_lr, weight_decay)

    @property
    def scale(self) -> torch.Tensor:
        return self.log_scale.exp().clamp(max=100.0)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
