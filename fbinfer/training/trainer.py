"""``fbinfer train``: FashionBERT pre-training on text-image pairs with adaptive task weights."""
from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path

import torch

from fbinfer.data.features import FeatureStore
from fbinfer.data.source import DataSource
from fbinfer.errors import FbinferError
from fbinfer.model.checkpoint import FASHIONBERT, Checkpoint, load_checkpoint
from fbinfer.model.config import FashionBertConfig
from fbinfer.model.fashionbert import FashionBert
from fbinfer.model.init import load_pretrained_encoder, vocab_for
from fbinfer.training import loop
from fbinfer.training.adaptive import TaskWeights
from fbinfer.training.align import align_projection
from fbinfer.training.config import TrainConfig
from fbinfer.training.dist import Dist
from fbinfer.training.loop import autocast
from fbinfer.training.objectives import pretrain_losses
from fbinfer.training.pairs import PairSampler, make_batch
from fbinfer.training.run import Result, Trainer, resume_state, session

TASKS = ("mlm", "mpm", "tia")


def new_model(cfg: FashionBertConfig, seed: int = 0) -> tuple[FashionBert, list[str]]:
    torch.manual_seed(seed)
    model = FashionBert(cfg)
    if cfg.init:
        load_pretrained_encoder(model, cfg.init)
    return model, vocab_for(cfg.init, cfg.vocab_size)


def train(data: DataSource, cfg: FashionBertConfig, train_cfg: TrainConfig, out: Path, resume: bool = False,
          force: bool = False, mined: list[list[int]] | None = None) -> Result:
    """Train and write ``out`` (and ``out.resume``), holding a lock on it; an existing checkpoint is
    replaced only with ``force`` and continued only with ``resume``. ``mined``: per training item,
    the items its hard negatives are drawn from (``fbinfer.search.mining``)."""
    train_cfg = train_cfg.validate()
    if (mined is None) != (train_cfg.mine_negatives is None):
        raise FbinferError("mine_negatives names the embedding model of the mined lists: give both or neither "
                           "(fbinfer.search.mining.mine_negatives makes them)")
    if mined is not None and len(mined) != len(data.train):
        raise FbinferError(f"mined negatives for {len(mined)} items, the data has {len(data.train)} training items")
    with session(out, force, resume) as env:
        if env.world > 1:
            raise FbinferError("fbinfer train runs on one process (distill and embed train run under torchrun)")
        return _train(env, data, cfg, train_cfg, out, resume, mined)


def _start(data: DataSource, cfg: FashionBertConfig, train_cfg: TrainConfig, out: Path, resume: bool) -> tuple[Checkpoint, dict | None]:
    """The model to train and the state to restore: the resume state, ``--from``'s checkpoint, or a new model."""
    if resume:
        ck = resume_state(out, FASHIONBERT, data)
        return ck, ck.train_state
    if train_cfg.start:
        return load_checkpoint(Path(train_cfg.start)), None
    return Checkpoint(*new_model(cfg, train_cfg.seed)), None


def _train(env: Dist, data: DataSource, cfg: FashionBertConfig, train_cfg: TrainConfig, out: Path, resume: bool,
           mined: list[list[int]] | None) -> Result:
    if train_cfg.start:  # the alignment and warm-up exist to start a fresh model
        train_cfg = replace(train_cfg, align_steps=0, tia_warmup_steps=0)
    ck, state = _start(data, cfg, train_cfg, out, resume)
    model, cfg = ck.model, ck.config
    store = FeatureStore(data, cfg).ensure(data.train + data.test)
    tok = ck.tokenizer()
    sampler = PairSampler(data.train, train_cfg.seed, train_cfg.batch_size, hard_ratio=train_cfg.hard_ratio, mined=mined)
    easy = PairSampler(data.train, train_cfg.seed, train_cfg.batch_size, hard_ratio=0.0)
    total = loop.total_steps(train_cfg.steps, train_cfg.epochs, sampler.steps_per_epoch)
    trainer = Trainer(env, out, FASHIONBERT, model, train_cfg, "train")
    optim, step, elapsed = trainer.optimizer(model.param_groups(train_cfg.lr, train_cfg.head_lr, train_cfg.weight_decay), total, state,
                                             hold=train_cfg.tia_warmup_steps)
    if not state and train_cfg.align_steps:
        align_projection(model, PairSampler(data.train, train_cfg.seed + 1, train_cfg.align_batch_size), tok, store, train_cfg.align_steps)
    weigher = TaskWeights(train_cfg.weighting, train_cfg.fixed_weights)
    tia_only = TaskWeights("fixed", (0.0, 0.0, 1.0))

    def one_step(step: int) -> dict[str, float]:
        gen = torch.Generator().manual_seed(train_cfg.seed * 1_000_003 + step)
        warming = step < train_cfg.tia_warmup_steps
        lists = 0 if warming else train_cfg.lists
        texts, images, labels = (easy if warming else sampler).pairs(step)
        list_t, list_i, list_labels = sampler.ranking_lists(step, lists, train_cfg.list_size)
        batch = make_batch(texts + list_t, images + list_i, torch.cat([labels, list_labels]), tok, store, gen,
                           0.0 if warming else train_cfg.mlm_prob, 0.0 if warming else train_cfg.mpm_prob)
        with autocast(train_cfg.precision):
            losses, shared = pretrain_losses(model, batch, lists, train_cfg.list_size)
        w = (tia_only if warming else weigher)(losses, shared)
        optim.step(sum(wi * li for wi, li in zip(w, losses)), model.parameters())
        return {**{t: float(v.detach()) for t, v in zip(TASKS, losses)}, **{f"w_{t}": float(v.detach()) for t, v in zip(TASKS, w)}}

    meta = {"data": str(data.path), "data_fingerprint": data.fingerprint(), "train": asdict(train_cfg)}
    return trainer.fit(one_step, optim, step, elapsed, total, lambda: Checkpoint(model, ck.vocab, meta))
