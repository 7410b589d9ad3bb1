"""``fbinfer embed train``: the dual encoder, on one process or under torchrun.

Each step's global batch is a pure function of (seed, step): ``batch_size / 2`` products, two
views each, drawn in pairs from one sub-category with probability ``hard_ratio`` (the in-batch
hard negatives). Losses:

- ``nce``: symmetric InfoNCE between captions and images over the batch (any view of a product matches its caption);
- ``product``: symmetric InfoNCE between one view's image+text vector and the other view's image
  (same-style retrieval; views share their caption, so product against product would be learnt from the text alone);
- ``kd`` (with ``--teacher``): KL between the FashionBERT teacher's softmax over ranking lists
  (a query and ``list_size - 1`` candidates from its sub-category) and the dual encoder's.

Under torchrun each rank embeds every world-th product (both views) and every world-th list; the
vectors are all-gathered with their gradients and every rank takes the contrastive losses over
the whole batch, so N processes follow the single-process trajectory (DDP averages the gradients).
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch import nn

from fbinfer.data.features import FeatureStore
from fbinfer.data.records import Item
from fbinfer.data.source import DataSource
from fbinfer.errors import FbinferError
from fbinfer.model.checkpoint import load_checkpoint
from fbinfer.model.init import load_pretrained_bert, vocab_for
from fbinfer.search.checkpoint import EMBED, Checkpoint
from fbinfer.search.config import EmbedConfig, EmbedTrainConfig
from fbinfer.search.losses import ranking_kl, symmetric_nce
from fbinfer.search.model import DualEncoder
from fbinfer.training import loop
from fbinfer.training.dist import Dist
from fbinfer.training.loop import autocast
from fbinfer.training.pairs import PairSampler
from fbinfer.training.run import Result, Trainer, resume_state, session

TERMS = ("nce", "product", "kd")


class ProductBatches:
    """Products with their views; batch ``step`` is a pure function of (seed, step)."""

    def __init__(self, items: list[Item], seed: int, products: int, hard_ratio: float):
        views: dict[str, list[int]] = defaultdict(list)
        for i, it in enumerate(items):
            views[it.product_id].append(i)
        self.items, self.seed, self.size, self.hard_ratio = items, seed, products, hard_ratio
        self.products = list(views.values())
        self.by_sub: dict[str, list[int]] = defaultdict(list)
        for p, idx in enumerate(self.products):
            self.by_sub[items[idx[0]].subcategory].append(p)
        self.steps_per_epoch = max(1, len(self.products) // products)

    def products_of(self, step: int) -> list[int]:
        """``size`` product indices: anchors in epoch order, each followed (with probability
        hard_ratio) by a partner from its sub-category, else by the next anchor."""
        epoch, k = divmod(step, self.steps_per_epoch)
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.products))
        rng = np.random.default_rng([self.seed, epoch, k, 4])
        anchors = iter(order[k * self.size:] .tolist() + order[: k * self.size].tolist())
        chosen: list[int] = []
        while len(chosen) < self.size:
            a = next(anchors)
            chosen.append(a)
            if len(chosen) < self.size and rng.random() < self.hard_ratio:
                pool = self.by_sub[self.items[self.products[a][0]].subcategory]
                chosen.append(int(pool[rng.integers(len(pool))]))
        return chosen

    def views(self, product: int, rng: np.random.Generator) -> tuple[Item, Item]:
        """Two views of a product (the same item twice when it has one)."""
        idx = self.products[product]
        a, b = (rng.permutation(len(idx))[:2].tolist() + [0])[:2] if len(idx) > 1 else (0, 0)
        return self.items[idx[a]], self.items[idx[b]]


def new_embed_model(cfg: EmbedConfig, seed: int) -> tuple[DualEncoder, list[str]]:
    torch.manual_seed(seed)
    model = DualEncoder(cfg)
    init = cfg.init if not cfg.tiny else None
    if init:
        load_pretrained_bert(model.text.bert, model.text.config, init)
    return model, vocab_for(init, model.vocab_size)


def train_embed(data: DataSource, cfg: EmbedConfig, train_cfg: EmbedTrainConfig, out: Path, resume: bool = False,
                force: bool = False) -> Result:
    """Train and write ``out`` (and ``out.resume``); the main process holds a lock on it."""
    train_cfg = train_cfg.validate()
    cfg = cfg.validate()
    with session(out, force, resume) as env:
        return _train(env, data, cfg, train_cfg, out, resume)


def _gather(env: Dist, x: torch.Tensor) -> torch.Tensor:
    """Every rank's rows, rank-major, with gradients flowing back to their owners."""
    if env.world == 1:
        return x
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(x), dim=0)


def _teacher(env: Dist, cfg: EmbedConfig, train_cfg: EmbedTrainConfig) -> Checkpoint | None:
    """``--teacher``'s FashionBERT (for the kd term), checked against the dual encoder and the process count."""
    if not train_cfg.teacher:
        return None
    teacher = load_checkpoint(Path(train_cfg.teacher))
    if teacher.config.feature_key != cfg.feature_key:
        raise FbinferError(f"--teacher {train_cfg.teacher}: reads {teacher.config.feature_key} features, the dual encoder "
                           f"{cfg.feature_key}")
    if train_cfg.lists % env.world:
        raise FbinferError(f"--lists {train_cfg.lists}: must divide evenly over {env.world} processes")
    teacher.model.to(env.device).eval()
    return teacher


def _train(env: Dist, data: DataSource, cfg: EmbedConfig, train_cfg: EmbedTrainConfig, out: Path, resume: bool) -> Result:
    if train_cfg.batch_size // 2 % env.world:
        raise FbinferError(f"--batch-size {train_cfg.batch_size}: its {train_cfg.batch_size // 2} products must divide evenly over {env.world} processes")
    teacher_ck = _teacher(env, cfg, train_cfg)
    ck = resume_state(out, EMBED, data) if resume else Checkpoint(*new_embed_model(cfg, train_cfg.seed))
    model, vocab, cfg = ck.model, ck.vocab, ck.config
    if teacher_ck is not None and (teacher_ck.vocab != vocab or teacher_ck.config.max_text_len < cfg.max_text_len):
        raise FbinferError(f"--teacher {train_cfg.teacher}: its vocabulary or text length differs from the dual encoder's; "
                           "the lists are tokenized once for both")
    teacher = teacher_ck.model if teacher_ck is not None else None
    with env.main_first():
        store = FeatureStore(data, cfg.feature_config()).ensure(data.train + data.test)
    store.check(cfg.feature_config())
    tok = ck.tokenizer()
    batches = ProductBatches(data.train, train_cfg.seed, train_cfg.batch_size // 2, train_cfg.hard_ratio)
    if len(batches.products) < train_cfg.batch_size // 2:
        raise FbinferError(f"--batch-size {train_cfg.batch_size}: needs {train_cfg.batch_size // 2} products, {data.path} has {len(batches.products)}")
    lists = PairSampler(data.train, train_cfg.seed, train_cfg.batch_size)
    total = loop.total_steps(train_cfg.steps, train_cfg.epochs, batches.steps_per_epoch)
    model = model.to(env.device)
    ddp = nn.parallel.DistributedDataParallel(model, find_unused_parameters=not train_cfg.product_weight) if env.world > 1 else model
    trainer = Trainer(env, out, EMBED, model, train_cfg, "embed")
    optim, step, elapsed = trainer.optimizer(model.param_groups(train_cfg.lr, train_cfg.head_lr, train_cfg.weight_decay), total, ck.train_state)

    def one_step(step: int) -> dict[str, float]:
        rng = np.random.default_rng([train_cfg.seed, step, 5])
        chosen = batches.products_of(step)
        views = [batches.views(p, rng) for p in chosen]  # drawn for all products, so every rank sees the same stream
        texts = images = [v for i in range(env.rank, len(chosen), env.world) for v in views[i]]  # product-major: view a, view b
        order = [chosen[i] for r in range(env.world) for i in range(r, len(chosen), env.world)]  # the gathered rows' products
        pid = torch.tensor(np.repeat(order, 2))
        if teacher is not None:
            lt, li, _ = lists.ranking_lists(step, train_cfg.lists, train_cfg.list_size)
            rows = [r for j in range(env.rank, train_cfg.lists, env.world) for r in range(j * train_cfg.list_size, (j + 1) * train_cfg.list_size)]
            texts, images = texts + [lt[r] for r in rows], images + [li[r] for r in rows]
        tb = tok([it.text for it in texts]).as_torch()
        n = len(texts) - (len(rows) if teacher is not None else 0)
        with autocast(train_cfg.precision, env.device):
            t, v, p, scale = ddp(tb.input_ids.to(env.device), tb.attention_mask.to(env.device), store.get(images).to(env.device))
            tg, vg, pg = _gather(env, t[:n]), _gather(env, v[:n]), _gather(env, p[:n])
            terms = {"nce": symmetric_nce(tg, vg, scale, pid[:, None] == pid[None, :])}
            if train_cfg.product_weight:
                same = pid[0::2, None] == pid[None, 0::2]  # one view's product vector against the other view's image:
                terms["product"] = 0.5 * (symmetric_nce(pg[0::2], vg[1::2], scale, same) + symmetric_nce(pg[1::2], vg[0::2], scale, same))
            if teacher is not None:
                with torch.no_grad():
                    target = teacher(tb.input_ids[n:].to(env.device), tb.attention_mask[n:].to(env.device),
                                     store.get(images[n:]).to(env.device)).logit.view(-1, train_cfg.list_size)
                student = (scale * (t[n:] * v[n:]).sum(-1)).view(-1, train_cfg.list_size)
                terms["kd"] = ranking_kl(student, target, train_cfg.kd_temperature)
        loss = terms["nce"] + train_cfg.product_weight * terms.get("product", 0.0) + train_cfg.kd_weight * terms.get("kd", 0.0)
        optim.step(loss, model.parameters())
        return env.mean({k: float(v.detach()) for k, v in terms.items()} | {"scale": float(scale.detach())})

    meta = {"data": str(data.path), "data_fingerprint": data.fingerprint(), "embed_train": asdict(train_cfg), "world_size": env.world}
    return trainer.fit(one_step, optim, step, elapsed, total, lambda: Checkpoint(model, vocab, meta))
