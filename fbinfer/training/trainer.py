"""``fbinfer train``: FashionBERT pre-training on text-image pairs with adaptive task weights."""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from tqdm import tqdm

from fbinfer.data.features import FeatureStore, torch_threads
from fbinfer.data.source import DataSource
from fbinfer.errors import FbinferError
from fbinfer.model.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from fbinfer.model.config import FashionBertConfig
from fbinfer.model.fashionbert import FashionBert
from fbinfer.model.init import bert_folder, default_vocab, load_pretrained_encoder, read_vocab
from fbinfer.training.adaptive import TaskWeights
from fbinfer.training.align import align_projection
from fbinfer.training.objectives import pretrain_losses
from fbinfer.training.pairs import PairSampler, make_batch

TASKS = ("mlm", "mpm", "tia")


@dataclass
class TrainConfig:
    steps: int | None = None  # or epochs
    epochs: float | None = None
    batch_size: int = 32
    lr: float = 1e-4  # pretrained encoder
    head_lr: float = 1e-4  # new parameters: patch embedding and heads (1e-3 kept TIA at chance: README)
    warmup: float = 0.06  # fraction of steps
    weight_decay: float = 0.01
    weighting: str = "grad"
    fixed_weights: tuple[float, float, float] = (1.0, 1.0, 1.0)
    mlm_prob: float = 0.15
    mpm_prob: float = 0.1
    align_steps: int = 300  # projector alignment warm-up (training/align.py), batch align_batch_size
    align_batch_size: int = 128
    # share of negatives from the same sub-category, the rest from any other product: with 1.0 the
    # teacher never learnt to reject another category's caption (README, "Training")
    hard_ratio: float = 0.5
    tia_warmup_steps: int = 200  # first steps: TIA only, random negatives, no masking, constant lr (see README)
    lists: int = 0  # ranking lists per batch after the warm-up: TIA adds their softmax cross-entropy
    list_size: int = 16  # pairs per list: the truth and list_size - 1 candidates from its sub-category
    start: str | None = None  # a FashionBERT checkpoint to fine-tune (no projector alignment, no TIA warm-up)
    precision: str = "fp32"  # of the forward pass: fp32 or bf16 (autocast; weights and optimizer stay fp32)
    checkpoint_every: int = 200
    log_every: int = 10
    seed: int = 0

    def total_steps(self, sampler: PairSampler) -> int:
        return total_steps(self.steps, self.epochs, sampler)


PRECISIONS = ("fp32", "bf16")


def autocast(precision: str, device: torch.device | str = "cpu"):
    """The forward pass's precision for training: ``bf16`` runs the matmuls in bfloat16 (AMX on
    recent Xeons, tensor cores on GPUs: several times fp32's rate) while the weights, gradients
    and AdamW state stay fp32; bf16 keeps fp32's exponent range, so no loss scaling is needed."""
    if precision not in PRECISIONS:
        raise FbinferError(f"--precision {precision!r}: training runs {' or '.join(PRECISIONS)}")
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=precision == "bf16")


def total_steps(steps: int | None, epochs: float | None, sampler: PairSampler) -> int:
    """``steps`` if given, else ``epochs`` (default 1) over the sampler's items."""
    if steps:
        return steps
    return max(1, math.ceil((epochs or 1.0) * sampler.steps_per_epoch))


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


def linear_schedule(total: int, warmup: float, hold: int = 0):
    """LR factor per step: constant for the first ``hold`` steps, then a linear warm-up over
    ``warmup`` of the rest and a linear decay to zero."""
    start = min(hold, total - 1)
    rest = total - start
    warm = max(1, int(warmup * rest))

    def factor(s: int) -> float:
        if s < start:
            return 1.0
        s -= start
        return min((s + 1) / warm, max(0.0, (rest - s) / max(1, rest - warm)))

    return factor


def optimizer_step(loss: torch.Tensor, params, opt: torch.optim.Optimizer, sched, clip: float = 1.0) -> None:
    """One update: backward, clip the gradient norm, step the optimizer and the lr schedule."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, clip)
    opt.step()
    sched.step()


def resume_path(out: Path) -> Path:
    return out.with_name(out.name + ".resume")


def train(data: DataSource, cfg: FashionBertConfig, tc: TrainConfig, out: Path, resume: bool = False) -> TrainResult:
    torch_threads()
    autocast(tc.precision)  # a wrong value fails before any work
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
    sampler = PairSampler(data.train, tc.seed, tc.batch_size, hard_ratio=tc.hard_ratio)
    total = tc.total_steps(sampler)
    opt = torch.optim.AdamW(param_groups(model, tc), fused=True)  # one vectorised kernel: a third faster on CPU than the per-tensor loop
    sched = torch.optim.lr_scheduler.LambdaLR(opt, linear_schedule(total, tc.warmup, tc.tia_warmup_steps))
    weigher = TaskWeights(tc.weighting, tc.fixed_weights)
    tia_only = TaskWeights("fixed", (0.0, 0.0, 1.0))
    easy = PairSampler(data.train, tc.seed, tc.batch_size, hard_ratio=0.0)
    step, elapsed = 0, 0.0
    torch.manual_seed(tc.seed)  # dropout's stream starts here, whatever ran before (feature extraction, ...)
    if state:
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        step, elapsed = int(state["step"]), float(state["seconds"])
        torch.set_rng_state(state["torch_rng"])  # dropout continues exactly where it stopped
    if not state and tc.align_steps:
        align_projection(model, PairSampler(data.train, tc.seed + 1, tc.align_batch_size), tok, store, tc.align_steps)
    log = out.with_name(out.stem + ".train.jsonl")
    log.parent.mkdir(parents=True, exist_ok=True)
    model.train()
    last: dict[str, float] = {}
    t0 = time.perf_counter() - elapsed
    with tqdm(total=total, initial=step, desc=f"train {cfg.name}", unit="step") as bar, log.open("a") as logf:
        while step < total:
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
            total_loss = sum(wi * li for wi, li in zip(w, losses))
            optimizer_step(total_loss, model.parameters(), opt, sched)
            step += 1
            last = {**{t: float(v.detach()) for t, v in zip(TASKS, losses)}, **{f"w_{t}": float(v.detach()) for t, v in zip(TASKS, w)}}
            bar.set_postfix({k: f"{v:.3f}" for k, v in last.items()})
            bar.update(1)
            if step % tc.log_every == 0 or step == total:
                logf.write(json.dumps({"step": step, "lr": sched.get_last_lr()[0], **last}) + "\n")
                logf.flush()
            if step % tc.checkpoint_every == 0 and step < total:
                _save(model, vocab, out, data, tc, step, time.perf_counter() - t0, last, opt, sched)
    seconds = time.perf_counter() - t0
    _save(model, vocab, out, data, tc, step, seconds, last, opt, sched)
    model.eval()
    return TrainResult(step, seconds, last)


def _save(model: FashionBert, vocab: list[str], out: Path, data: DataSource, tc: TrainConfig, step: int,
          seconds: float, last: dict[str, float], opt: torch.optim.Optimizer, sched) -> None:
    """The resume state (weights + optimizer) and the plain checkpoint, each written atomically."""
    meta = {"data": str(data.path), "data_fingerprint": data.fingerprint(), "train": {**asdict(tc), "fixed_weights": list(tc.fixed_weights)},
            "steps": step, "train_seconds": round(seconds, 1), "last": last}
    state = {"optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "step": step, "seconds": seconds,
             "torch_rng": torch.get_rng_state()}
    save_checkpoint(Checkpoint(model, vocab, meta, state), resume_path(out))
    save_checkpoint(Checkpoint(model, vocab, meta), out)
