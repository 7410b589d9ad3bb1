"""``fbinfer train``: FashionBERT pre-training on text-image pairs with adaptive task weights."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from fbinfer.data.features import FeatureStore
from fbinfer.data.source import DataSource
from fbinfer.errors import FbinferError
from fbinfer.model.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from fbinfer.model.config import FashionBertConfig
from fbinfer.model.fashionbert import FashionBert
from fbinfer.model.init import bert_folder, default_vocab, load_pretrained_encoder, read_vocab
from fbinfer.outputs import claimed_file
from fbinfer.threads import torch_threads
from fbinfer.training import loop
from fbinfer.training.adaptive import MODES, TaskWeights
from fbinfer.training.align import align_projection
from fbinfer.training.loop import Optimization, autocast, resume_path
from fbinfer.training.objectives import pretrain_losses
from fbinfer.training.pairs import PairSampler, make_batch

TASKS = ("mlm", "mpm", "tia")


@dataclass
class TrainConfig:
    steps: int | None = None  # or epochs
    epochs: float | None = None
    batch_size: int = 32
    lr: float = 1e-4  # pretrained encoder
    head_lr: float = 1e-4  # new parameters: patch embedding and heads (1e-3 kept TIA at chance: docs/training.md)
    warmup: float = 0.06  # fraction of steps
    weight_decay: float = 0.01
    weighting: str = "grad"
    fixed_weights: tuple[float, float, float] = (1.0, 1.0, 1.0)
    mlm_prob: float = 0.15
    mpm_prob: float = 0.1
    align_steps: int = 300  # projector alignment warm-up (training/align.py), batch align_batch_size
    align_batch_size: int = 128
    # share of negatives from the same sub-category, the rest from any other product: with 1.0 the
    # teacher never learnt to reject another category's caption (docs/training.md)
    hard_ratio: float = 0.5
    tia_warmup_steps: int = 200  # first steps: TIA only, random negatives, no masking, constant lr (docs/training.md)
    lists: int = 0  # ranking lists per batch after the warm-up: TIA adds their softmax cross-entropy
    list_size: int = 16  # pairs per list: the truth and list_size - 1 candidates from its sub-category
    start: str | None = None  # a FashionBERT checkpoint to fine-tune (no projector alignment, no TIA warm-up)
    mine_negatives: str | None = None  # the embedding model the hard negatives were mined with (search/mining.py), for the record
    mined_k: int = 16
    precision: str = "fp32"  # of the forward pass: fp32 or bf16 (autocast; weights and optimizer stay fp32)
    checkpoint_every: int = 200
    log_every: int = 10
    seed: int = 0

    def validate(self) -> TrainConfig:
        """Every option checked before any work, each error one line naming the option."""
        loop.check_schedule(self)
        if self.head_lr <= 0:
            raise FbinferError(f"--head-lr: must be positive, got {self.head_lr}")
        if self.weighting not in MODES:
            raise FbinferError(f"--loss-weighting: {self.weighting!r} is not one of {', '.join(MODES)}")
        if len(self.fixed_weights) != 3 or not all(math.isfinite(w) and w >= 0 for w in self.fixed_weights):
            raise FbinferError(f"--fixed-weights: {','.join(map(str, self.fixed_weights))} is not three numbers >= 0 (MLM,MPM,TIA)")
        if self.tia_warmup_steps < 0:
            raise FbinferError(f"--tia-warmup-steps: must be >= 0, got {self.tia_warmup_steps}")
        if self.mined_k < 1:
            raise FbinferError(f"--mined-k: must be >= 1, got {self.mined_k}")
        if self.mine_negatives is not None and not Path(self.mine_negatives).exists():
            raise FbinferError(f"--mine-negatives {self.mine_negatives}: no such embedding model")
        return self


@dataclass
class TrainResult:
    steps: int
    seconds: float
    last: dict[str, float] = field(default_factory=dict)


def new_model(cfg: FashionBertConfig, seed: int = 0) -> tuple[FashionBert, list[str]]:
    torch.manual_seed(seed)
    model = FashionBert(cfg)
    if cfg.init:
        load_pretrained_encoder(model, cfg.init)
        vocab = read_vocab(bert_folder(cfg.init))
    else:
        vocab = default_vocab()
    if len(vocab) != cfg.vocab_size:
        raise FbinferError(f"vocab has {len(vocab)} tokens, config {cfg.name} says {cfg.vocab_size}")
    return model, vocab


def param_groups(model: FashionBert, tc: TrainConfig) -> list[dict]:
    """Pretrained encoder at ``lr``; the new patch embedding and heads at ``head_lr``; no decay on norms/biases."""
    groups: dict[tuple[bool, bool], list] = {}
    for name, p in model.named_parameters():
        new = not name.startswith("bert.")
        decay = p.ndim > 1 and "embeddings" not in name
        groups.setdefault((new, decay), []).append(p)
    return [{"params": ps, "lr": tc.head_lr if new else tc.lr, "weight_decay": tc.weight_decay if decay else 0.0}
            for (new, decay), ps in groups.items()]


def train(data: DataSource, cfg: FashionBertConfig, tc: TrainConfig, out: Path, resume: bool = False,
          force: bool = False, mined: list[list[int]] | None = None) -> TrainResult:
    """Train and write ``out`` (and ``out.resume``), holding a lock on it; an existing checkpoint is
    replaced only with ``force`` and continued only with ``resume``. ``mined``: per training item,
    the items its hard negatives are drawn from (``fbinfer.search.mining``)."""
    tc = tc.validate()
    if (mined is None) != (tc.mine_negatives is None):
        raise FbinferError("mine_negatives names the embedding model of the mined lists: give both or neither "
                           "(fbinfer.search.mining.mine_negatives makes them)")
    if mined is not None and len(mined) != len(data.train):
        raise FbinferError(f"mined negatives for {len(mined)} items, the data has {len(data.train)} training items")
    with claimed_file(out, "-o", force, resume):
        return _train(data, cfg, tc, out, resume, mined)


def _train(data: DataSource, cfg: FashionBertConfig, tc: TrainConfig, out: Path, resume: bool,
           mined: list[list[int]] | None) -> TrainResult:
    torch_threads()
    state = None
    if tc.start:  # the alignment and warm-up exist to start a fresh model
        tc = replace(tc, align_steps=0, tia_warmup_steps=0)
    if resume:
        if not resume_path(out).is_file():
            raise FbinferError(f"--resume: no resume state at {resume_path(out)}")
        ck = load_checkpoint(resume_path(out), with_train_state=True)
        model, vocab, state = ck.model, ck.vocab, ck.train_state
        cfg = ck.config
    elif tc.start:
        ck = load_checkpoint(Path(tc.start))
        model, vocab, cfg = ck.model, ck.vocab, ck.config
    else:
        model, vocab = new_model(cfg, tc.seed)
    store = FeatureStore(data, cfg).ensure(data.train + data.test)
    tok = Checkpoint(model, vocab).tokenizer()
    sampler = PairSampler(data.train, tc.seed, tc.batch_size, hard_ratio=tc.hard_ratio, mined=mined)
    easy = PairSampler(data.train, tc.seed, tc.batch_size, hard_ratio=0.0)
    total = loop.total_steps(tc.steps, tc.epochs, sampler.steps_per_epoch)
    optim = Optimization.adamw(param_groups(model, tc), total, tc.warmup, tc.tia_warmup_steps)
    weigher = TaskWeights(tc.weighting, tc.fixed_weights)
    tia_only = TaskWeights("fixed", (0.0, 0.0, 1.0))
    step, elapsed = 0, 0.0
    torch.manual_seed(tc.seed)  # dropout's stream starts here, whatever ran before (feature extraction, ...)
    if state:
        step, elapsed = optim.restore(state)
    elif tc.align_steps:
        align_projection(model, PairSampler(data.train, tc.seed + 1, tc.align_batch_size), tok, store, tc.align_steps)
    model.train()

    def one_step(step: int) -> dict[str, float]:
        gen = torch.Generator().manual_seed(tc.seed * 1_000_003 + step)
        warming = step < tc.tia_warmup_steps
        lists = 0 if warming else tc.lists
        texts, images, labels = (easy if warming else sampler).pairs(step)
        list_t, list_i, list_labels = sampler.ranking_lists(step, lists, tc.list_size)
        batch = make_batch(texts + list_t, images + list_i, torch.cat([labels, list_labels]), tok, store, gen,
                           0.0 if warming else tc.mlm_prob, 0.0 if warming else tc.mpm_prob)
        with autocast(tc.precision):
            losses, shared = pretrain_losses(model, batch, lists, tc.list_size)
        w = (tia_only if warming else weigher)(losses, shared)
        optim.step(sum(wi * li for wi, li in zip(w, losses)), model.parameters())
        return {**{t: float(v.detach()) for t, v in zip(TASKS, losses)}, **{f"w_{t}": float(v.detach()) for t, v in zip(TASKS, w)}}

    def save(step: int, seconds: float, last: dict[str, float]) -> None:
        """The resume state (weights + optimizer) and the plain checkpoint, each written atomically."""
        meta = {"data": str(data.path), "data_fingerprint": data.fingerprint(), "train": asdict(tc), "steps": step,
                "train_seconds": round(seconds, 1), "last": last}
        save_checkpoint(Checkpoint(model, vocab, meta, optim.state(step, seconds, [torch.get_rng_state()])), resume_path(out))
        save_checkpoint(Checkpoint(model, vocab, meta), out)

    step, seconds, last = loop.run(one_step, save, start=step, total=total, elapsed=elapsed,
                                   log=out.with_name(out.stem + ".train.jsonl"), desc=f"train {cfg.name}",
                                   lr=lambda: optim.sched.get_last_lr()[0], checkpoint_every=tc.checkpoint_every,
                                   log_every=tc.log_every)
    model.eval()
    return TrainResult(step, seconds, last)
