"""A smaller FashionBERT initialised from its teacher.

Depth: the student starts as a chosen subset of the teacher's layers (``layer_map``). Width: when
the student is narrower, it keeps the teacher's most important hidden channels, attention
heads and FFN neurons, importance being the mean absolute activation on real training pairs
(the activation-based structured pruning of Minitron, Muralidharan et al. 2024), and every
weight is sliced to those indices. At full width this is plain layer selection, so the student
starts as the teacher's truncation (the paper's 2-layer method) or its every-k-th-layer subset.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from fbinfer.errors import FbinferError
from fbinfer.model.checkpoint import Checkpoint
from fbinfer.model.config import FashionBertConfig
from fbinfer.model.fashionbert import FashionBert
from fbinfer.training.objectives import PretrainBatch

LAYER_CHOICES = ("uniform", "first")


@dataclass(frozen=True)
class StudentSpec:
    layers: int = 2
    hidden: int | None = None  # None: the teacher's
    heads: int | None = None  # None: keep the teacher's head size
    init_layers: str = "uniform"  # "uniform": spread over the depth (TinyBERT's map); "first": the bottom ones (docs/distillation.md)

    def config(self, teacher: FashionBertConfig) -> FashionBertConfig:
        """The student's config; errors name the option that does not fit the teacher."""
        hidden = self.hidden or teacher.hidden_size
        head_size = teacher.hidden_size // teacher.num_heads
        heads = self.heads or max(1, hidden // head_size)
        if self.layers < 1 or self.layers > teacher.num_layers:
            raise FbinferError(f"--layers {self.layers}: a student needs 1 to {teacher.num_layers} layers (the teacher's depth)")
        if hidden > teacher.hidden_size:
            raise FbinferError(f"--hidden {hidden}: wider than the teacher ({teacher.hidden_size})")
        if heads > teacher.num_heads:
            raise FbinferError(f"--heads {heads}: more heads than the teacher ({teacher.num_heads})")
        if hidden % heads or hidden // heads != head_size:
            raise FbinferError(f"--hidden {hidden} --heads {heads}: the head size must stay the teacher's {head_size} "
                               f"to inherit its attention weights (use --heads {max(1, hidden // head_size)})")
        if self.init_layers not in LAYER_CHOICES:
            raise FbinferError(f"--init-layers {self.init_layers!r}: choose from {', '.join(LAYER_CHOICES)}")
        intermediate = teacher.intermediate_size * hidden // teacher.hidden_size
        return replace(teacher, name=f"{teacher.name}-student-{self.layers}x{hidden}", num_layers=self.layers,
                       hidden_size=hidden, num_heads=heads, intermediate_size=intermediate, init=None).validate()


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
    tc = teacher.config
    head = tc.hidden_size // tc.num_heads
    full = imp is None
    h = torch.arange(tc.hidden_size) if full else top(imp.hidden, cfg.hidden_size)
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
                kept_heads = torch.arange(tc.num_heads) if full else top(imp.heads[t], cfg.num_heads)
                qkv = (kept_heads[:, None] * head + torch.arange(head)).flatten()
                f = torch.arange(tc.intermediate_size) if full else top(imp.ffn[t], cfg.intermediate_size)
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
    """(student checkpoint, layer map, kept hidden channels). ``batches`` feed the importance
    estimate and are only used when the student is narrower than the teacher."""
    tc = teacher.config
    cfg = spec.config(tc)
    lmap = layer_map(tc.num_layers, cfg.num_layers, spec.init_layers)
    narrower = cfg.hidden_size < tc.hidden_size
    imp = importance(teacher.model, batches) if narrower else None
    student = FashionBert(cfg)
    student.load_state_dict(slice_state(teacher.model, cfg, lmap, imp))
    student.eval()
    kept = top(imp.hidden, cfg.hidden_size) if imp is not None else torch.arange(tc.hidden_size)
    return Checkpoint(student, list(teacher.vocab)), lmap, kept
