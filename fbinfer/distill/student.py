"""A smaller FashionBERT initialised from its teacher.

Depth: the student starts as a chosen subset of the teacher's layers (``layer_map``). Width: when
the student is narrower, it keeps the teacher's most important hidden channels, attention
heads and FFN neurons, importance being the mean absolute activation on real training pairs
(the activation-based structured pruning of Minitron, Muralidharan et al. 2024), and every
weight is sliced to those indices. At full width this is plain layer selection, so the student
starts as the teacher's truncation (the paper's 2-layer method) or its every-k-th-layer subset.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from fbinfer.distill.config import StudentSpec
from fbinfer.model.checkpoint import Checkpoint
from fbinfer.model.config import FashionBertConfig
from fbinfer.model.fashionbert import FashionBert
from fbinfer.training.objectives import PretrainBatch


def layer_map(teacher_layers: int, student_layers: int, how: str = "uniform") -> list[int]:
    """Teacher layer index for each student layer. "uniform" is TinyBERT's g(m) = m * N / M
    (1-based; the distillation losses always map layers this way, and a student can also start
    as those layers); "first" keeps the bottom layers, as the paper's truncation does."""
    if how == "first":
        return list(range(student_layers))
    return [(m + 1) * teacher_layers // student_layers - 1 for m in range(student_layers)]


@dataclass
class Importance:
    hidden: torch.Tensor  # (H,) residual-stream channels
    heads: list[torch.Tensor]  # per teacher layer (A,)
    ffn: list[torch.Tensor]  # per teacher layer (I,)


@torch.no_grad()
def importance(teacher: FashionBert, batches: list[PretrainBatch]) -> Importance:
    """Mean |activation| of every channel, head (norm of its context vector) and FFN neuron."""
    cfg = teacher.config
    layers = teacher.bert.encoder.layer
    hidden = torch.zeros(cfg.hidden_size)
    heads = [torch.zeros(cfg.num_heads) for _ in layers]
    ffn = [torch.zeros(cfg.intermediate_size) for _ in layers]

    def add_heads(i: int):
        def hook(_m, args):
            ctx = args[0].unflatten(-1, (cfg.num_heads, -1))
            heads[i].add_(ctx.norm(dim=-1).mean(dim=(0, 1)))
        return hook

    def add_ffn(i: int):
        def hook(_m, _args, out):
            ffn[i].add_(out.abs().mean(dim=(0, 1)))
        return hook

    def add_hidden(_m, _args, out):
        hidden.add_((out[0] if isinstance(out, tuple) else out).abs().mean(dim=(0, 1)))

    handles = []
    for i, layer in enumerate(layers):
        handles.append(layer.attention.output.dense.register_forward_pre_hook(add_heads(i)))
        handles.append(layer.intermediate.register_forward_hook(add_ffn(i)))
        handles.append(layer.register_forward_hook(add_hidden))
    teacher.eval()
    try:
        for b in batches:
            hidden.add_(teacher.embed(b.input_ids, b.patches).abs().mean(dim=(0, 1)))
            teacher(b.input_ids, b.attention_mask, b.patches)
    finally:
        for h in handles:
            h.remove()
    return Importance(hidden, heads, ffn)


def top(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the k largest scores, in their original order (keeps the weights' layout)."""
    return scores.topk(k).indices.sort().values


def slice_state(teacher: FashionBert, cfg: FashionBertConfig, lmap: list[int], imp: Importance | None) -> dict[str, torch.Tensor]:
    """The teacher's weights cut to the student's shapes: layers by ``lmap``, channels by importance."""
    teacher_cfg = teacher.config
    head = teacher_cfg.hidden_size // teacher_cfg.num_heads
    full = imp is None
    h = torch.arange(teacher_cfg.hidden_size) if full else top(imp.hidden, cfg.hidden_size)
    state = {}
    for name, w in teacher.state_dict().items():
        if name.startswith("bert.encoder.layer."):
            parts = name.split(".")
            t_layer = int(parts[3])
            if t_layer not in lmap:
                continue
            for s_layer, t in enumerate(lmap):  # one teacher layer may seed several students layers
                if t != t_layer:
                    continue
                rest = ".".join(parts[4:])
                kept_heads = torch.arange(teacher_cfg.num_heads) if full else top(imp.heads[t], cfg.num_heads)
                qkv = (kept_heads[:, None] * head + torch.arange(head)).flatten()
                f = torch.arange(teacher_cfg.intermediate_size) if full else top(imp.ffn[t], cfg.intermediate_size)
                state[f"bert.encoder.layer.{s_layer}.{rest}"] = _slice_layer_param(rest, w, h, qkv, f)
            continue
        state[name] = _slice_outer_param(name, w, h)
    return state


def _slice_layer_param(rest: str, w: torch.Tensor, h: torch.Tensor, qkv: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    if rest.startswith("attention.self."):  # query/key/value: out = kept heads, in = kept channels
        return w[qkv][:, h] if w.ndim == 2 else w[qkv]
    if rest == "attention.output.dense.weight":
        return w[h][:, qkv]
    if rest == "intermediate.dense.weight":
        return w[f][:, h]
    if rest == "intermediate.dense.bias":
        return w[f]
    if rest == "output.dense.weight":
        return w[h][:, f]
    return w[h]  # output biases and LayerNorms


KEEP_WHOLE = ("tia.bias", "mlm_bias", "mpm.3.bias")  # outputs that are not hidden-sized
SQUARE = ("bert.pooler.dense.weight", "mlm_transform.0.weight", "mpm.0.weight")


def _slice_outer_param(name: str, w: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """Embeddings, patch embedding, pooler and heads, by name (shapes can coincide: a tiny
    model's 64 text positions x 64 channels)."""
    if not w.is_floating_point() or name in KEEP_WHOLE:
        return w
    if w.ndim == 1:
        return w[h]
    if name == "patch_embed.proj.weight":  # (hidden, feature)
        return w[h]
    if name in SQUARE:
        return w[h][:, h]
    return w[:, h]  # embedding tables, TIA and MPM output weights: (n, hidden)


def make_student(teacher: Checkpoint, spec: StudentSpec, batches: list[PretrainBatch]) -> tuple[Checkpoint, list[int], torch.Tensor]:
    """(student checkpoint, layer map, the teacher's hidden channels it keeps). ``batches`` feed the importance
    estimate and are only used when the student is narrower than the teacher."""
    teacher_cfg = teacher.config
    cfg = spec.config(teacher_cfg)
    lmap = layer_map(teacher_cfg.num_layers, cfg.num_layers, spec.init_layers)
    narrower = cfg.hidden_size < teacher_cfg.hidden_size
    imp = importance(teacher.model, batches) if narrower else None
    student = FashionBert(cfg)
    student.load_state_dict(slice_state(teacher.model, cfg, lmap, imp))
    student.eval()
    channels = top(imp.hidden, cfg.hidden_size) if imp is not None else torch.arange(teacher_cfg.hidden_size)
    return Checkpoint(student, list(teacher.vocab)), lmap, channels
