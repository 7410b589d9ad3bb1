"""``fbinfer distill``: train a student to rank as its teacher does, on one process or under torchrun.

Every step draws one global batch (a pure function of seed and step: matched and unmatched
pairs, optional extra hard negatives, and ranking lists: one anchor against candidates from its
sub-category, as a Rank@K query sees them); under torchrun each rank takes every world-th pair
and every world-th list of it (the distributed sampler) and DistributedDataParallel averages
the gradients, so N processes follow the single-process trajectory of the same global batch.
"""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from fbinfer.data.features import FeatureStore
from fbinfer.data.source import DataSource
from fbinfer.distill import qad
from fbinfer.distill.losses import attention_kl, list_kd, masked_mse, relation_heads, tia_kd
from fbinfer.distill.student import StudentSpec, layer_map, make_student
from fbinfer.errors import FbinferError
from fbinfer.fileio import sha256
from fbinfer.model.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from fbinfer.model.fashionbert import FashionBert
from fbinfer.outputs import claimed_file
from fbinfer.threads import torch_threads
from fbinfer.training import loop
from fbinfer.training.dist import Dist
from fbinfer.training.loop import Optimization, autocast, resume_path
from fbinfer.training.objectives import PretrainBatch, masked_losses
from fbinfer.training.pairs import PairSampler, make_batch

TERMS = ("kd", "rank", "hidden", "attention", "embedding", "tia", "mlm", "mpm")


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
        loop.check_schedule(self)
        if not self.temperature > 0:
            raise FbinferError(f"--temperature: must be positive, got {self.temperature}")
        if self.extra_negatives < 0:
            raise FbinferError(f"--extra-negatives: must be >= 0, got {self.extra_negatives}")
        if self.dropout is not None and not 0 <= self.dropout < 1:
            raise FbinferError(f"--dropout: must be in [0, 1), got {self.dropout}")
        if self.quantize is not None:
            qad.check(self.quantize)
        if self.start is not None and not Path(self.start).is_file():
            raise FbinferError(f"--from {self.start}: no such file")
        return self


@dataclass
class DistillResult:
    steps: int
    seconds: float
    last: dict[str, float]
    init_layers: list[int]  # teacher layer each student layer started as
    loss_layers: list[int]  # teacher layer each student layer learned from


class Recorder:
    """Forward hooks keeping the embedding layer's output and each encoder layer's output,
    queries and keys, as the forward pass computed them (gradients flow, dropout included)."""

    def __init__(self, model: FashionBert, layers: list[int]):
        self.hidden: dict[int, torch.Tensor] = {}
        self.q: dict[int, torch.Tensor] = {}
        self.k: dict[int, torch.Tensor] = {}
        self.parts: dict[int, torch.Tensor] = {}  # 0: text embeddings, 1: patch embeddings
        self.handles = [model.bert.embeddings.register_forward_hook(self._keep(self.parts, 0)),
                        model.patch_embed.register_forward_hook(self._keep(self.parts, 1))]
        for i in layers:
            layer = model.bert.encoder.layer[i]
            self.handles.append(layer.register_forward_hook(self._keep(self.hidden, i)))
            self.handles.append(layer.attention.self.query.register_forward_hook(self._keep(self.q, i)))
            self.handles.append(layer.attention.self.key.register_forward_hook(self._keep(self.k, i)))

    @staticmethod
    def _keep(store: dict[int, torch.Tensor], i: int):
        def hook(_m, _args, out):
            store[i] = out[0] if isinstance(out, tuple) else out
        return hook

    @property
    def embedding(self) -> torch.Tensor:
        """The encoder's input, (B, T + image tokens, H), as ``FashionBert.embed`` concatenates it."""
        return torch.cat([self.parts[0], self.parts[1]], dim=1)

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


@dataclass
class TeacherView:
    """What the student is taught from, for one batch."""

    logit: torch.Tensor
    embedding: torch.Tensor
    hidden: list[torch.Tensor]  # per student layer, the mapped teacher layer's output
    q: list[torch.Tensor]
    k: list[torch.Tensor]


@torch.no_grad()
def teach(teacher: FashionBert, b: PretrainBatch, lmap: list[int]) -> TeacherView:
    rec = Recorder(teacher, sorted(set(lmap)))
    try:
        logit = teacher(b.input_ids, b.attention_mask, b.patches).logit
    finally:
        rec.remove()
    return TeacherView(logit, rec.embedding, [rec.hidden[t] for t in lmap], [rec.q[t] for t in lmap], [rec.k[t] for t in lmap])


class Distiller(nn.Module):
    """The student plus the learned projections (student width -> teacher width) for the
    hidden and embedding losses; one module, so DDP syncs both."""

    def __init__(self, student: FashionBert, teacher_hidden: int, kept: torch.Tensor, weights: LossWeights, temperature: float,
                 list_size: int = 0):
        super().__init__()
        self.student, self.weights, self.temperature, self.list_size = student, weights, temperature, list_size
        cfg = student.config
        self.relation_heads = relation_heads(cfg.num_heads, teacher_hidden, cfg.hidden_size)
        self.proj = nn.ModuleList()
        if cfg.hidden_size != teacher_hidden:
            for _ in range(cfg.num_layers + 1):  # embeddings + each layer
                p = nn.Linear(cfg.hidden_size, teacher_hidden, bias=False)
                with torch.no_grad():  # start as the inverse of the channel selection
                    p.weight.zero_()
                    p.weight[kept, torch.arange(cfg.hidden_size)] = 1.0
                self.proj.append(p)

    def lift(self, i: int, x: torch.Tensor) -> torch.Tensor:
        return self.proj[i](x) if len(self.proj) else x

    def forward(self, b: PretrainBatch, t: TeacherView | None, lists: int = 0) -> dict[str, torch.Tensor]:
        """Loss terms for one (shard of a) batch whose last rows are ``lists`` ranking lists."""
        w, s = self.weights, self.student
        rec = Recorder(s, list(range(s.config.num_layers)))
        try:
            out = s(b.input_ids, b.attention_mask, b.patches)
        finally:
            rec.remove()
        image = b.attention_mask.new_ones(b.input_ids.shape[0], s.config.image_tokens)
        keep = torch.cat([b.attention_mask, image], dim=1).float()
        terms: dict[str, torch.Tensor] = {}
        pairs = len(out.logit) - lists * self.list_size
        if w.kd:
            terms["kd"] = tia_kd(out.logit, t.logit, self.temperature)
        if w.rank and lists:
            terms["rank"] = list_kd(out.logit[pairs:].view(lists, -1), t.logit[pairs:].view(lists, -1), self.temperature)
        if w.tia:  # on the 50/50 pairs (the lists are mostly negatives)
            terms["tia"] = nn.functional.binary_cross_entropy_with_logits(out.logit[:pairs], b.labels[:pairs].float())
        if w.hidden:
            terms["hidden"] = sum(masked_mse(self.lift(i + 1, rec.hidden[i]), t.hidden[i], keep) for i in range(len(t.hidden))) / len(t.hidden)
        if w.attention:
            terms["attention"] = sum(attention_kl(rec.q[i], rec.k[i], t.q[i], t.k[i], keep, self.relation_heads)
                                     for i in range(len(t.q))) / len(t.q)
        if w.embedding:
            terms["embedding"] = masked_mse(self.lift(0, rec.embedding), t.embedding, keep)
        if w.mlm or w.mpm:
            mlm, mpm = masked_losses(s, out.sequence, b)
            terms.update({k: v for k, v in (("mlm", mlm), ("mpm", mpm)) if getattr(w, k)})
        return terms


def check_vocab(teacher: Checkpoint, data: DataSource) -> None:
    """The data's captions must be mostly words the teacher's vocab knows (checked before any
    feature extraction, so a wrong data set fails at once)."""
    tok = teacher.tokenizer()
    sample = tok([it.text for it in data.train[:256]]).as_torch()
    real = sample.attention_mask.bool() & ~torch.isin(sample.input_ids, torch.tensor(sorted(tok.special_ids)))
    unknown = (sample.input_ids[real] == tok.vocab.index("[UNK]")).float().mean().item() if real.any() else 1.0
    if unknown > 0.5:
        raise FbinferError(f"--data {data.path}: {unknown:.0%} of the caption tokens are unknown to the teacher's vocab "
                           f"({len(tok.vocab)} tokens); the data does not match the teacher")


def resume_history(previous: dict, step: int, settings: dict) -> list[dict]:
    """The checkpoint's resume history plus this resume: at which step, and which settings it
    changed (``[before, now]``; e.g. a longer ``steps`` re-shapes the rest of the lr schedule), so
    that ``distill`` in the meta is not mistaken for the whole run's settings."""
    before = previous.get("distill", {})
    changed = {k: [before.get(k), v] for k, v in settings.items() if before.get(k) != v}
    return [*previous.get("resumed", []), {"at_step": step, "changed": changed}]


def start_from(path: Path, teacher: Checkpoint) -> tuple[Checkpoint, list[int], dict | None]:
    """``--from``: (the student, its layer map, its projections or None). The projections of a
    student narrower than its teacher are learned; they come from the student's resume state."""
    ck = load_checkpoint(path)
    if "init_layers" not in ck.meta:
        raise FbinferError(f"--from {path}: not a distilled student (its meta has no init_layers)")
    if list(ck.vocab) != list(teacher.vocab):
        raise FbinferError(f"--from {path}: its vocab differs from the teacher's")
    if ck.config.hidden_size == teacher.config.hidden_size:
        return ck, list(ck.meta["init_layers"]), None
    if not resume_path(path).is_file():
        raise FbinferError(f"--from {path}: a student narrower than its teacher needs its resume state "
                           f"{resume_path(path)} (the learned projections)")
    return ck, list(ck.meta["init_layers"]), load_checkpoint(resume_path(path), with_train_state=True).train_state["proj"]


def side_batches(data: DataSource, seed: int, batch_size: int, tok, store: FeatureStore, count: int = 4) -> list[PretrainBatch]:
    """``count`` unmasked batches drawn apart from training's (their own seed): what the width
    reduction's importance estimate and the fake quantizers' calibration run on."""
    sampler = PairSampler(data.train, seed, batch_size)
    return [make_batch(*sampler.pairs(i), tok, store, torch.Generator().manual_seed(i), 0.0, 0.0) for i in range(count)]


def _fake_quantize(student: FashionBert, dc: DistillConfig, data: DataSource, tok, store: FeatureStore,
                   state: dict | None) -> dict | None:
    """With ``--quantize``: fake quantizers into the student, calibrated on four training batches
    (apart from training's), or their ranges from the resume state; what it did, for the meta."""
    if not dc.quantize:
        return None
    layers = qad.fake_quantize(student, side_batches(data, dc.seed + 2, dc.batch_size, tok, store), dc.quantize)
    if state and state.get("quantizers"):  # a run begun without --quantize calibrates afresh
        qad.restore_quantizers(student, state["quantizers"])
    return {"precision": dc.quantize, "by": f"nvidia-modelopt {qad.version()}", "scheme": qad.SCHEME, "layers": len(layers)}


def distill(teacher_path: Path, data: DataSource, spec: StudentSpec, dc: DistillConfig, out: Path,
            resume: bool = False, force: bool = False) -> DistillResult:
    """Distil and write ``out`` (and ``out.resume``); the main process holds a lock on it. An
    existing checkpoint is replaced only with ``force`` and continued only with ``resume``."""
    env = Dist.start()
    if env.world == 1:
        torch_threads()
    try:
        with claimed_file(out, "-o", force, resume) if env.main else nullcontext():
            return _distill(env, teacher_path, data, spec, dc, out, resume)
    finally:
        env.stop()


def _student(teacher: Checkpoint, spec: StudentSpec, dc: DistillConfig, data: DataSource, store: FeatureStore, out: Path,
             resume: bool) -> tuple[Checkpoint, list[int], torch.Tensor, dict | None, StudentSpec]:
    """(student, its layer map, the teacher channels it kept, the state to restore, its spec): from
    the resume state, from ``--from``'s student, or made from the teacher's layers."""
    if resume:
        if not resume_path(out).is_file():
            raise FbinferError(f"--resume: no resume state at {resume_path(out)}")
        ck = load_checkpoint(resume_path(out), with_train_state=True)
        kept = torch.arange(ck.config.hidden_size)  # the projections come from the saved state
        return ck, list(ck.meta["init_layers"]), kept, ck.train_state, spec
    if dc.start:
        ck, init_map, proj = start_from(Path(dc.start), teacher)
        state = {"proj": proj} if proj else None  # the projections only: a fresh optimizer and schedule
        return ck, init_map, torch.arange(ck.config.hidden_size), state, StudentSpec(**ck.meta["student"])
    torch.manual_seed(dc.seed)
    probe = side_batches(data, dc.seed + 1, dc.batch_size, teacher.tokenizer(), store)  # the importance estimate's
    student, init_map, kept = make_student(teacher, spec, probe)
    return student, init_map, kept, None, spec


def _distill(env: Dist, teacher_path: Path, data: DataSource, spec: StudentSpec, dc: DistillConfig, out: Path,
             resume: bool) -> DistillResult:
    dc = dc.validate()
    teacher_ck = load_checkpoint(teacher_path)
    check_vocab(teacher_ck, data)
    with env.main_first():
        store = FeatureStore(data, teacher_ck.config).ensure(data.train + data.test)
    store.check(teacher_ck.config, option="--data")
    if dc.batch_size % env.world:
        raise FbinferError(f"--batch-size {dc.batch_size}: must divide evenly over {env.world} processes")
    lists = dc.lists if dc.weights.rank else 0
    if lists % env.world:
        raise FbinferError(f"--lists {dc.lists}: must divide evenly over {env.world} processes")
    tok = teacher_ck.tokenizer()
    sampler = PairSampler(data.train, dc.seed, dc.batch_size, hard_ratio=dc.hard_ratio)
    extra = round(dc.extra_negatives * dc.batch_size)
    extra -= extra % env.world
    masking = (dc.mlm_prob if dc.weights.mlm else 0.0, dc.mpm_prob if dc.weights.mpm else 0.0)

    def global_batch(step: int) -> PretrainBatch:
        texts, images, labels = sampler.pairs(step)
        more_t, more_i = sampler.hard_negatives(step, extra)
        list_t, list_i, list_labels = sampler.ranking_lists(step, lists, dc.list_size)
        labels = torch.cat([labels, torch.zeros(len(more_t), dtype=labels.dtype), list_labels])
        gen = torch.Generator().manual_seed(dc.seed * 1_000_003 + step)
        return make_batch(texts + more_t + list_t, images + more_i + list_i, labels, tok, store, gen, *masking)

    student_ck, init_map, kept, state, spec = _student(teacher_ck, spec, dc, data, store, out, resume)
    lmap = layer_map(teacher_ck.config.num_layers, student_ck.config.num_layers)  # TinyBERT's uniform map
    quantized = _fake_quantize(student_ck.model, dc, data, tok, store, state)
    if dc.dropout is not None:
        for m in student_ck.model.modules():
            if isinstance(m, nn.Dropout):
                m.p = dc.dropout
    distiller = Distiller(student_ck.model, teacher_ck.config.hidden_size, kept, dc.weights, dc.temperature,
                          dc.list_size).to(env.device)
    teacher = teacher_ck.model.to(env.device).eval()
    model = nn.parallel.DistributedDataParallel(distiller, find_unused_parameters=True) if env.world > 1 else distiller
    total = loop.total_steps(dc.steps, dc.epochs, sampler.steps_per_epoch)
    groups = [{"params": list(distiller.student.parameters()), "lr": dc.lr},
              {"params": list(distiller.proj.parameters()), "lr": dc.proj_lr}]
    optim = Optimization.adamw(groups, total, dc.warmup, weight_decay=dc.weight_decay)
    step, elapsed = 0, 0.0
    torch.manual_seed(dc.seed + env.rank)  # dropout streams
    if state:
        distiller.proj.load_state_dict(state["proj"])
    if resume:
        step, elapsed = optim.restore(state, env.rank)
    settings = {**asdict(dc), "weights": asdict(dc.weights)}
    meta = {"teacher": str(teacher_path), "data": str(data.path), "data_fingerprint": data.fingerprint(),
            "init_layers": init_map, "layer_map": lmap,
            "student": asdict(spec), "distill": settings, "world_size": env.world,
            "resumed": resume_history(student_ck.meta, step, settings) if resume else [],
            **({"from": {"path": dc.start, "sha256": sha256(dc.start)}} if dc.start else {}),
            **({"quantized": quantized} if dc.quantize else {})}
    distiller.train()

    def one_step(step: int) -> dict[str, float]:
        b = env.shard(global_batch(step), lists, dc.list_size)
        with autocast(dc.precision, env.device):
            terms = model(b, teach(teacher, b, lmap) if dc.weights.uses_teacher else None, lists // env.world)
        optim.step(sum(getattr(dc.weights, k) * v for k, v in terms.items()), distiller.parameters())
        return env.mean({k: float(v.detach()) for k, v in terms.items()})

    def save(step: int, seconds: float, last: dict[str, float]) -> None:
        rngs = env.rng_states()
        if env.main:
            info = {**meta, "steps": step, "train_seconds": round(seconds, 1), "last": last}
            train_state = {**optim.state(step, seconds, rngs), "proj": distiller.proj.state_dict(),
                           "quantizers": qad.quantizer_state(distiller.student)}
            plain = qad.plain_copy(distiller.student) if dc.quantize else distiller.student
            save_checkpoint(Checkpoint(plain, student_ck.vocab, info, train_state), resume_path(out))
            save_checkpoint(Checkpoint(plain, student_ck.vocab, info), out)

    step, seconds, last = loop.run(one_step, save, start=step, total=total, elapsed=elapsed,
                                   log=out.with_name(out.stem + ".distill.jsonl"), desc=f"distill {student_ck.config.name}",
                                   lr=lambda: optim.sched.get_last_lr()[0], checkpoint_every=dc.checkpoint_every,
                                   log_every=dc.log_every, main=env.main)
    distiller.student.eval()
    return DistillResult(step, seconds, last, init_map, lmap)
