"""``fbinfer distill``: train a student to rank as its teacher does, on one process or under torchrun.

Every step draws one global batch (a pure function of seed and step: matched and unmatched
pairs, optional extra hard negatives, and ranking lists: one anchor against candidates from its
sub-category, as a Rank@K query sees them); under torchrun each rank takes every world-th pair
and every world-th list of it (the distributed sampler) and DistributedDataParallel averages
the gradients, so N processes follow the single-process trajectory of the same global batch.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from fbinfer.data.features import FeatureStore
from fbinfer.data.source import DataSource
from fbinfer.distill import qad
from fbinfer.distill.config import DistillConfig, LossWeights
from fbinfer.distill.losses import attention_kl, list_kd, masked_mse, relation_heads, tia_kd
from fbinfer.distill.student import StudentSpec, layer_map, make_student
from fbinfer.errors import FbinferError
from fbinfer.fileio import sha256
from fbinfer.model.checkpoint import FASHIONBERT, Checkpoint, load_checkpoint
from fbinfer.model.fashionbert import FashionBert
from fbinfer.training import loop
from fbinfer.training.dist import Dist
from fbinfer.training.loop import autocast, resume_path
from fbinfer.training.objectives import PretrainBatch, masked_losses
from fbinfer.training.pairs import PairSampler, make_batch
from fbinfer.training.run import Trainer, resume_state, session


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

    def __init__(self, student: FashionBert, teacher_hidden: int, channels: torch.Tensor, weights: LossWeights, temperature: float,
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
                    p.weight[channels, torch.arange(cfg.hidden_size)] = 1.0
                self.proj.append(p)

    def param_groups(self, lr: float, proj_lr: float) -> list[dict]:
        """The student at ``lr``; the new hidden-state projections at ``proj_lr``."""
        return [{"params": list(self.student.parameters()), "lr": lr}, {"params": list(self.proj.parameters()), "lr": proj_lr}]

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
    with session(out, force, resume) as env:
        return _distill(env, teacher_path, data, spec, dc.validate(), out, resume)


def _student(teacher: Checkpoint, spec: StudentSpec, dc: DistillConfig, data: DataSource, store: FeatureStore, out: Path,
             resume: bool) -> tuple[Checkpoint, list[int], torch.Tensor, dict | None, StudentSpec]:
    """(student, its layer map, the teacher channels it kept, the state to restore, its spec): from
    the resume state, from ``--from``'s student, or made from the teacher's layers."""
    if resume:
        ck = resume_state(out, FASHIONBERT, data)
        channels = torch.arange(ck.config.hidden_size)  # the projections come from the saved state
        return ck, list(ck.meta["init_layers"]), channels, ck.train_state, spec
    if dc.start:
        ck, init_map, proj = start_from(Path(dc.start), teacher)
        state = {"proj": proj} if proj else None  # the projections only: a fresh optimizer and schedule
        return ck, init_map, torch.arange(ck.config.hidden_size), state, StudentSpec(**ck.meta["student"])
    torch.manual_seed(dc.seed)
    probe = side_batches(data, dc.seed + 1, dc.batch_size, teacher.tokenizer(), store)  # the importance estimate's
    student, init_map, channels = make_student(teacher, spec, probe)
    return student, init_map, channels, None, spec


def _teacher(env: Dist, teacher_path: Path, data: DataSource, dc: DistillConfig) -> tuple[Checkpoint, FeatureStore, int]:
    """The teacher, the feature store both models read, and the ranking lists per global batch;
    checked against the data and the process count."""
    teacher = load_checkpoint(teacher_path)
    check_vocab(teacher, data)
    with env.main_first():
        store = FeatureStore(data, teacher.config).ensure(data.train + data.test)
    store.check(teacher.config, option="--data")
    if dc.batch_size % env.world:
        raise FbinferError(f"--batch-size {dc.batch_size}: must divide evenly over {env.world} processes")
    lists = dc.lists if dc.weights.rank else 0
    if lists % env.world:
        raise FbinferError(f"--lists {dc.lists}: must divide evenly over {env.world} processes")
    return teacher, store, lists


def _distill(env: Dist, teacher_path: Path, data: DataSource, spec: StudentSpec, dc: DistillConfig, out: Path,
             resume: bool) -> DistillResult:
    teacher_ck, store, lists = _teacher(env, teacher_path, data, dc)
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

    student_ck, init_map, channels, state, spec = _student(teacher_ck, spec, dc, data, store, out, resume)
    lmap = layer_map(teacher_ck.config.num_layers, student_ck.config.num_layers)  # TinyBERT's uniform map
    quantized = _fake_quantize(student_ck.model, dc, data, tok, store, state)
    if dc.dropout is not None:
        for m in student_ck.model.modules():
            if isinstance(m, nn.Dropout):
                m.p = dc.dropout
    distiller = Distiller(student_ck.model, teacher_ck.config.hidden_size, channels, dc.weights, dc.temperature,
                          dc.list_size).to(env.device)
    if state:
        distiller.proj.load_state_dict(state["proj"])
    teacher = teacher_ck.model.to(env.device).eval()
    model = nn.parallel.DistributedDataParallel(distiller, find_unused_parameters=True) if env.world > 1 else distiller
    total = loop.total_steps(dc.steps, dc.epochs, sampler.steps_per_epoch)
    trainer = Trainer(env, out, FASHIONBERT, distiller, dc, "distill")
    optim, step, elapsed = trainer.optimizer(distiller.param_groups(dc.lr, dc.proj_lr), total, state if resume else None)
    settings = {**asdict(dc), "weights": asdict(dc.weights)}
    meta = {"teacher": str(teacher_path), "data": str(data.path), "data_fingerprint": data.fingerprint(),
            "init_layers": init_map, "layer_map": lmap, "student": asdict(spec), "distill": settings, "world_size": env.world,
            "resumed": resume_history(student_ck.meta, step, settings) if resume else [],
            **({"from": {"path": dc.start, "sha256": sha256(dc.start)}} if dc.start else {}),
            **({"quantized": quantized} if dc.quantize else {})}

    def one_step(step: int) -> dict[str, float]:
        b = env.shard(global_batch(step), lists, dc.list_size)
        with autocast(dc.precision, env.device):
            terms = model(b, teach(teacher, b, lmap) if dc.weights.uses_teacher else None, lists // env.world)
        optim.step(sum(getattr(dc.weights, k) * v for k, v in terms.items()), distiller.parameters())
        return env.mean({k: float(v.detach()) for k, v in terms.items()})

    def saved() -> Checkpoint:  # the student without its fake quantizers
        return Checkpoint(qad.plain_copy(distiller.student) if dc.quantize else distiller.student, student_ck.vocab, meta)

    result = trainer.fit(one_step, optim, step, elapsed, total, saved,
                         lambda: {"proj": distiller.proj.state_dict(), "quantizers": qad.quantizer_state(distiller.student)})
    return DistillResult(result.steps, result.seconds, result.last, init_map, lmap)
