"""FashionBERT: one BERT encoder over ``[CLS] text [SEP]`` followed by image patch tokens.

Text tokens get BERT's own word + position + segment-T embeddings. Each of the grid's patches
gets Linear(patch feature -> hidden) + its grid-position embedding + segment I, then a
LayerNorm. Three heads sit on top: TIA (one match logit on the pooled [CLS], the score every
later stage ranks by), MLM (tied to the word embeddings) and MPM (predicts the masked patch's
feature; trained with a KL between softmaxes over feature dimensions).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers import BertConfig, BertModel

from fbinfer.model.config import FashionBertConfig
from fbinfer.model.groups import param_groups


def bert_config(cfg: FashionBertConfig) -> BertConfig:
    """The transformers BertConfig for the encoder, so any local BERT checkpoint can initialise it."""
    bc = BertConfig(
        vocab_size=cfg.vocab_size,
        hidden_size=cfg.hidden_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        intermediate_size=cfg.intermediate_size,
        max_position_embeddings=cfg.max_text_len,
        type_vocab_size=2,
        hidden_dropout_prob=cfg.dropout,
        attention_probs_dropout_prob=cfg.dropout,
        layer_norm_eps=cfg.layer_norm_eps,
    )
    bc._attn_implementation = "sdpa"
    return bc


class PatchEmbedding(nn.Module):
    """LayerNorm(Linear(patch) + grid position + segment I), with the whole image's context.

    With ``global_image_context`` (the default) the mean of the projected patches, g, leads the
    patches as an [IMG] token (as ViLBERT's IMG token) and is also added to every patch token.
    Why: the 64 patches differ mostly by background, so [CLS] sees no consistent image signal;
    in a TIA-only probe the variants with g in every image token left chance after ~150 steps
    and plain patches did not (one random stream; docs/results/training.md).
    Exported, it is still one MatMul + bias over all patches, a ReduceMean and adds (Linear is
    linear: g = Linear(mean feature)).

    With ``patch_input="pixels"`` the input is each cell's flattened 3 x p x p pixels, and the
    Linear is exactly a Conv2d(3, hidden, kernel=p, stride=p) over the image (tested).
    """

    def __init__(self, cfg: FashionBertConfig):
        super().__init__()
        self.proj = nn.Linear(cfg.patch_feature_dim, cfg.hidden_size)
        self.global_context = cfg.global_image_context
        self.position = nn.Embedding(cfg.image_tokens, cfg.hidden_size)
        self.norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, patches: torch.Tensor, segment: torch.Tensor) -> torch.Tensor:
        x = self.proj(patches)
        if self.global_context:
            g = x.mean(dim=1, keepdim=True)
            x = torch.cat([g, x + g], dim=1)
        return self.dropout(self.norm(x + self.position.weight + segment))


@dataclass
class FashionBertOutput:
    logit: torch.Tensor  # (B,) TIA match logit
    sequence: torch.Tensor  # (B, T + image tokens, H) last hidden states; the last P are the patches


class FashionBert(nn.Module):
    def __init__(self, cfg: FashionBertConfig):
        super().__init__()
        self.config = cfg
        self.bert = BertModel(bert_config(cfg), add_pooling_layer=True)
        self.patch_embed = PatchEmbedding(cfg)
        h = cfg.hidden_size
        self.tia = nn.Linear(h, 1)
        self.mlm_transform = nn.Sequential(nn.Linear(h, h), nn.GELU(), nn.LayerNorm(h, eps=cfg.layer_norm_eps))
        self.mlm_bias = nn.Parameter(torch.zeros(cfg.vocab_size))
        self.mpm = nn.Sequential(
            nn.Linear(h, h), nn.GELU(), nn.LayerNorm(h, eps=cfg.layer_norm_eps), nn.Linear(h, cfg.patch_feature_dim)
        )
        for m in (self.patch_embed, self.tia, self.mlm_transform, self.mpm):
            m.apply(self.bert._init_weights)

    @property
    def vocab_size(self) -> int:
        return self.config.vocab_size

    def param_groups(self, lr: float, head_lr: float, weight_decay: float) -> list[dict]:
        """The pretrained encoder at ``lr``; the new patch embedding and heads at ``head_lr``."""
        return param_groups(self, lambda name: name.startswith("bert."), lr, head_lr, weight_decay)

    def embed(self, input_ids: torch.Tensor, patches: torch.Tensor) -> torch.Tensor:
        """Text and image embeddings, concatenated: (B, T + image tokens, H)."""
        emb = self.bert.embeddings
        text = emb(input_ids=input_ids, token_type_ids=torch.zeros_like(input_ids))
        image = self.patch_embed(patches, emb.token_type_embeddings.weight[1])
        return torch.cat([text, image], dim=1)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, patches: torch.Tensor) -> FashionBertOutput:
        """input_ids/attention_mask: (B, T) text; patches: (B, P, D) features. Returns the match logit."""
        hidden = self.embed(input_ids, patches)
        keep = torch.cat([attention_mask, attention_mask.new_ones(hidden.shape[0], self.config.image_tokens)], dim=1)
        additive = (1.0 - keep[:, None, None, :].to(hidden.dtype)) * torch.finfo(hidden.dtype).min
        seq = self.bert.encoder(hidden, attention_mask=additive).last_hidden_state
        logit = self.tia(self.bert.pooler(seq)).squeeze(-1)
        return FashionBertOutput(logit=logit, sequence=seq)

    def mlm_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Vocabulary logits for (N, H) hidden states, decoder tied to the word embeddings."""
        return self.mlm_transform(hidden) @ self.bert.embeddings.word_embeddings.weight.T + self.mlm_bias

    def mpm_features(self, hidden: torch.Tensor) -> torch.Tensor:
        """Predicted patch features for (N, H) hidden states of masked patches."""
        return self.mpm(hidden)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
