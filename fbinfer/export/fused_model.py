"""The export form of FashionBERT: the same function as ``FashionBert.forward``, written as the
few large ops an inference engine wants.

- Patch embedding, fused: the global-context token and the context added to each patch are a
  constant (image_tokens x patches) averaging matrix A, so every image token is
  ``(A @ patches) @ W + C`` with ONE MatMul over all patches and ONE constant add C that holds
  the projection bias, the grid-position and the segment-I embeddings; then one
  LayerNormalization. No Gather or Concat chain.
- Text embedding: one Gather (word ids) plus a constant (position + segment T) slice, LayerNorm.
- Attention, selectable: ``"matmul"``: MatMul-Softmax-MatMul with 1/sqrt(d) applied to Q before
  Q.K^T (the pattern TensorRT's guide asks for, fused by every TensorRT since 8.x, so it parses
  on the 10.12 floor); ``"onnx-attention"``: ``scaled_dot_product_attention``, exported at opset
  23 as one ONNX ``Attention`` node (TensorRT's parser maps it to IAttention from 10.14 on).
- The last layer runs its query, output and feed-forward on [CLS] alone: the pooler reads
  nothing else, and keys and values still come from every token, so the logit is the same
  while the last layer costs about a sixth of the others (a 2-layer student: 1.4x the pairs/s
  in OpenVINO bf16, docs/results/cls_only.md).
- The additive key mask uses -10000, not the dtype's minimum, so FP16 graphs cannot overflow it.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from fbinfer.errors import FbinferError
from fbinfer.model.fashionbert import FashionBert

ATTENTION_KINDS = ("matmul", "onnx-attention")
CLS_ONLY, EVERY_TOKEN = "[CLS] only", "every token"  # what the last layer computes, as the manifest records it
MASK_VALUE = -10000.0


def patch_averaging_matrix(num_patches: int, global_context: bool) -> torch.Tensor:
    """A with tokens = A @ patches: row 0 is the mean ([IMG]), rows 1.. are identity + mean."""
    eye = torch.eye(num_patches)
    if not global_context:
        return eye
    mean = torch.full((1, num_patches), 1.0 / num_patches)
    return torch.cat([mean, eye + mean], dim=0)


class ExportLayer(nn.Module):
    """One post-LayerNorm BERT layer with its weights copied out of transformers' modules."""

    def __init__(self, layer: nn.Module, num_heads: int, attention: str):
        super().__init__()
        att = layer.attention
        self.q, self.k, self.v = att.self.query, att.self.key, att.self.value
        self.attn_out, self.attn_norm = att.output.dense, att.output.LayerNorm
        self.ffn_in, self.ffn_out, self.ffn_norm = layer.intermediate.dense, layer.output.dense, layer.output.LayerNorm
        self.heads = num_heads
        self.attention = attention

    def split(self, x: torch.Tensor) -> torch.Tensor:
        b, n, h = x.shape
        return x.reshape(b, n, self.heads, h // self.heads).transpose(1, 2)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, rows: int | None = None) -> torch.Tensor:
        """x: (B, N, H) -> (B, rows or N, H). ``rows``: the leading tokens whose output is wanted;
        keys and values still come from every token, so those rows are exactly what the whole
        layer would give them (the last layer needs only [CLS], for the pooler)."""
        b, _, h = x.shape
        xq = x if rows is None else x[:, :rows]
        q, k, v = self.split(self.q(xq)), self.split(self.k(x)), self.split(self.v(x))
        if self.attention == "matmul":
            q = q * (1.0 / math.sqrt(h // self.heads))
            ctx = torch.softmax(q @ k.transpose(-1, -2) + mask, dim=-1) @ v
        else:
            # ONNX Runtime's Attention kernel wants the mask's query axis spelled out (no broadcast)
            ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=mask.expand(-1, -1, q.shape[2], -1))
        x = self.attn_norm(self.attn_out(ctx.transpose(1, 2).reshape(b, q.shape[2], h)) + xq)
        return self.ffn_norm(self.ffn_out(F.gelu(self.ffn_in(x))) + x)


class ExportGraph(nn.Module):
    """(input_ids, attention_mask, patches) -> TIA logit, numerically FashionBert.forward in eval mode."""

    def __init__(self, model: FashionBert, attention: str = "matmul", cls_only: bool = True):
        """``cls_only``: the last layer's query, output and feed-forward on [CLS] alone (False: on
        every token, as ``FashionBert.forward`` does; benchmarks/cls_only.py measures the two)."""
        super().__init__()
        if attention not in ATTENTION_KINDS:
            raise FbinferError(f"--attention must be one of {', '.join(ATTENTION_KINDS)}, not {attention!r}")
        cfg = model.config
        emb, pe = model.bert.embeddings, model.patch_embed
        self.word = emb.word_embeddings
        self.text_const = nn.Parameter((emb.position_embeddings.weight + emb.token_type_embeddings.weight[0]).detach(),
                                       requires_grad=False)
        self.text_norm = emb.LayerNorm
        a = patch_averaging_matrix(cfg.num_patches, cfg.global_image_context)
        self.register_buffer("average", a)
        bias = a.sum(1, keepdim=True) * pe.proj.bias.detach()  # A @ (P W + 1 b) = (A P) W + rowsum(A) b
        self.patch_weight = nn.Parameter(pe.proj.weight.detach().T.contiguous(), requires_grad=False)
        self.patch_const = nn.Parameter(bias + pe.position.weight.detach() + emb.token_type_embeddings.weight[1].detach(),
                                        requires_grad=False)
        self.patch_norm = pe.norm
        self.layers = nn.ModuleList(ExportLayer(layer, cfg.num_heads, attention) for layer in model.bert.encoder.layer)
        self.pooler, self.tia = model.bert.pooler.dense, model.tia
        self.image_tokens = cfg.image_tokens
        self.cls_only = cls_only
        self.eval()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, patches: torch.Tensor) -> torch.Tensor:
        t = input_ids.shape[1]
        text = self.text_norm(self.word(input_ids) + self.text_const[:t])
        image = self.patch_norm((self.average @ patches) @ self.patch_weight + self.patch_const)
        x = torch.cat([text, image], dim=1)
        keep = torch.cat([attention_mask.to(x.dtype), x.new_ones(x.shape[0], self.image_tokens)], dim=1)
        mask = ((1.0 - keep) * MASK_VALUE)[:, None, None, :]
        for i, layer in enumerate(self.layers):
            x = layer(x, mask, rows=1 if self.cls_only and i == len(self.layers) - 1 else None)  # the pooler reads [CLS] only
        return self.tia(torch.tanh(self.pooler(x[:, 0]))).squeeze(-1)
