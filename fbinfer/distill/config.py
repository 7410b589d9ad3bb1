"""The distillation options as dataclasses, torch-free: the CLI states its defaults from them."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from fbinfer.errors import FbinferError
from fbinfer.model.config import FashionBertConfig
from fbinfer.training.config import check_schedule

TERMS = ("kd", "rank", "hidden", "attention", "embedding", "tia", "mlm", "mpm")
QUANTIZE = ("int8",)  # fake quantization in the loop (fbinfer.distill.qad)


@dataclass(frozen=True)
class LossWeights:
    kd: float = 1.0  # TIA logit distillation (soft labels, temperature)
    rank: float = 1.0  # listwise distillation over each ranking list's logits
    hidden: float = 1.0  # hidden-state MSE over the layer map
    attention: float = 1.0  # self-attention distribution KL over the layer map
    embedding: float = 1.0  # embedding-layer MSE (text and patch tokens)
    tia: float = 1.0  # hard TIA loss on the pair labels
    mlm: float = 0.0
    mpm: float = 0.0

    @property
    def uses_teacher(self) -> bool:
        """False for plain fine-tuning (only tia/mlm/mpm on): the teacher's forward pass is skipped."""
        return any((self.kd, self.rank, self.hidden, self.attention, self.embedding))

    @classmethod
    def parse(cls, text: str) -> LossWeights:
        """``"kd=1,hidden=0.5"``: named terms replace the defaults."""
        values = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            name, _, value = part.partition("=")
            if name not in TERMS:
                raise FbinferError(f"--weights: unknown loss term {name!r}; choose from {', '.join(TERMS)}")
            try:
                values[name] = float(value)
            except ValueError:
                raise FbinferError(f"--weights: {part!r} is not name=number") from None
            if values[name] < 0:
                raise FbinferError(f"--weights: {name} must be >= 0")
        weights = cls(**values)
        if not any(getattr(weights, t) for t in TERMS):
            raise FbinferError(f"--weights {text!r}: every loss term is off")
        return weights


@dataclass
class DistillConfig:
    steps: int | None = None  # or epochs
    epochs: float | None = None
    batch_size: int = 32  # global, over all processes
    lr: float = 3e-4  # beat 1e-4 at 500 steps (A/B) and reached the goal at 4,500 (docs/results/distillation.md)
    proj_lr: float = 1e-3  # the hidden-state projections (new parameters)
    warmup: float = 0.06
    weight_decay: float = 0.01
    temperature: float = 2.0
    weights: LossWeights = field(default_factory=LossWeights)
    hard_ratio: float = 0.5  # share of the pairs' negatives from the same sub-category (as training)
    extra_negatives: float = 0.5  # extra same-sub-category negatives per batch, as a share of batch_size
    lists: int = 0  # ranking lists per global batch for the rank term (off: it measured worse, docs/results/distillation.md)
    list_size: int = 16  # pairs per list: the truth and list_size - 1 candidates from its sub-category
    dropout: float | None = None  # the student's dropout; None keeps the teacher's
    precision: str = "fp32"  # of both forward passes: fp32 or bf16 (autocast; weights and optimizer stay fp32)
    quantize: str | None = None  # "int8": the student learns with INT8 fake quantization in the loop (fbinfer.distill.qad)
    start: str | None = None  # a distilled student to go on from with a fresh schedule (QAD as a short fine-tune)
    mlm_prob: float = 0.15  # used only when the mlm / mpm weights are on
    mpm_prob: float = 0.1
    checkpoint_every: int = 200
    log_every: int = 10
    seed: int = 0

    def validate(self) -> DistillConfig:
        """Every option checked before any work, each error one line naming the option."""
        check_schedule(self)
        if not self.temperature > 0:
            raise FbinferError(f"--temperature: must be positive, got {self.temperature}")
        if self.extra_negatives < 0:
            raise FbinferError(f"--extra-negatives: must be >= 0, got {self.extra_negatives}")
        if self.dropout is not None and not 0 <= self.dropout < 1:
            raise FbinferError(f"--dropout: must be in [0, 1), got {self.dropout}")
        if self.quantize is not None and self.quantize not in QUANTIZE:
            raise FbinferError(f"--quantize: choose from {', '.join(QUANTIZE)}, not {self.quantize!r}")
        if self.start is not None and not Path(self.start).is_file():
            raise FbinferError(f"--from {self.start}: no such file")
        return self


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
