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
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from fbinfer.data.features import FeatureStore
from fbinfer.data.records import Item
from fbinfer.data.source import DataSource
from fbinfer.errors import FbinferError
from fbinfer.model.checkpoint import load_checkpoint
from fbinfer.model.init import bert_folder, default_vocab, load_pretrained_bert, read_vocab
from fbinfer.outputs import claimed_file
from fbinfer.search.checkpoint import EmbedCheckpoint, load_embed, save_embed
from fbinfer.search.config import EmbedConfig
from fbinfer.search.losses import ranking_kl, symmetric_nce
from fbinfer.search.model import DualEncoder
from fbinfer.threads import torch_threads
from fbinfer.training import loop
from fbinfer.training.dist import Dist
from fbinfer.training.loop import Optimization, autocast, resume_path
from fbinfer.training.pairs import PairSampler

TERMS = ("nce", "product", "kd")


@dataclass
class EmbedTrainConfig:
    steps: int | None = 300
    epochs: float | None = None
    batch_size: int = 64  # items (two views of batch_size / 2 products), global over all processes
    lr: float = 5e-5  # the pretrained text encoder
    head_lr: float = 5e-4  # the image tower, projections and product head (new parameters)
    warmup: float = 0.06
    weight_decay: float = 0.01
    hard_ratio: float = 0.5  # share of products drawn with a partner from the same sub-category
    product_weight: float = 0.5  # the image+text term
    teacher: str | None = None  # a FashionBERT checkpoint: adds the kd term
    kd_weight: float = 1.0
    kd_temperature: float = 1.0
    lists: int = 4  # teacher ranking lists per global batch (with a teacher)
    list_size: int = 8
    precision: str = "fp32"
    checkpoint_every: int = 200
    log_every: int = 10
    seed: int = 0

    def validate(self) -> EmbedTrainConfig:
        loop.check_schedule(self)
        if self.batch_size < 4 or self.batch_size % 2:
            raise FbinferError(f"--batch-size {self.batch_size}: must be even and >= 4 (two views per product)")
        for name in ("head_lr", "kd_temperature"):
            if not getattr(self, name) > 0:
                raise FbinferError(f"--{name.replace('_', '-')}: must be positive, got {getattr(self, name)}")
        for name in ("product_weight", "kd_weight"):
            if getattr(self, name) < 0:
                raise FbinferError(f"--{name.replace('_', '-')}: must be >= 0, got {getattr(self, name)}")
        return self


@dataclass
class EmbedTrainResult:
    steps: int
    seconds: float
    last: dict[str, float] = field(default_factory=dict)


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
    tc = model.text.config
    if cfg.init and not cfg.tiny:
        load_pretrained_bert(model.text.bert, tc, cfg.init)
        vocab = read_vocab(bert_folder(cfg.init))
    else:
        vocab = default_vocab()
    if len(vocab) != tc.vocab_size:
        raise FbinferError(f"vocab has {len(vocab)} tokens, the text tower has {tc.vocab_size}")
    return model, vocab


def param_groups(model: DualEncoder, tc: EmbedTrainConfig) -> list[dict]:
    """The pretrained text encoder at ``lr``, everything new at ``head_lr``; no decay on norms, biases, scale."""
    groups: dict[tuple[bool, bool], list] = defaultdict(list)
    for name, p in model.named_parameters():
        pretrained = name.startswith("text.bert.") and model.config.init is not None and not model.config.tiny
        groups[(pretrained, p.ndim > 1 and "embeddings" not in name)].append(p)
    return [{"params": ps, "lr": tc.lr if pre else tc.head_lr, "weight_decay": tc.weight_decay if decay else 0.0}
            for (pre, decay), ps in groups.items()]


def train_embed(data: DataSource, cfg: EmbedConfig, tc: EmbedTrainConfig, out: Path, resume: bool = False,
                force: bool = False) -> EmbedTrainResult:
    """Train and write ``out`` (and ``out.resume``); the main process holds a lock on it."""
    tc = tc.validate()
    cfg = cfg.validate()
    env = Dist.start()
    if env.world == 1:
        torch_threads()
    try:
        if env.main:
            with claimed_file(out, "-o", force, resume):
                return _train(env, data, cfg, tc, out, resume)
        return _train(env, data, cfg, tc, out, resume)
    finally:
        env.stop()


def _gather(env: Dist, x: torch.Tensor) -> torch.Tensor:
    """Every rank's rows, rank-major, with gradients flowing back to their owners."""
    if env.world == 1:
        return x
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(x), dim=0)


def _train(env: Dist, data: DataSource, cfg: EmbedConfig, tc: EmbedTrainConfig, out: Path, resume: bool) -> EmbedTrainResult:
    if tc.batch_size // 2 % env.world:
        raise FbinferError(f"--batch-size {tc.batch_size}: its {tc.batch_size // 2} products must divide evenly over {env.world} processes")
    teacher = None
    if tc.teacher:
        teacher_ck = load_checkpoint(Path(tc.teacher))
        if teacher_ck.config.feature_key != cfg.feature_key:
            raise FbinferError(f"--teacher {tc.teacher}: reads {teacher_ck.config.feature_key} features, the dual encoder "
                               f"{cfg.feature_key}")
        if tc.lists % env.world:
            raise FbinferError(f"--lists {tc.lists}: must divide evenly over {env.world} processes")
        teacher = teacher_ck.model.to(env.device).eval()
    state = None
    if resume:
        if not resume_path(out).is_file():
            raise FbinferError(f"--resume: no resume state at {resume_path(out)}")
        ck = load_embed(resume_path(out), with_train_state=True)
        model, vocab, cfg, state = ck.model, ck.vocab, ck.config, ck.train_state
    else:
        model, vocab = new_embed_model(cfg, tc.seed)
    if teacher is not None and (teacher_ck.vocab != vocab or teacher_ck.config.max_text_len < cfg.max_text_len):
        raise FbinferError(f"--teacher {tc.teacher}: its vocabulary or text length differs from the dual encoder's; "
                           "the lists are tokenized once for both")
    with env.main_first():
        store = FeatureStore(data, cfg.feature_config()).ensure(data.train + data.test)
    store.check(cfg.feature_config())
    tok = EmbedCheckpoint(model, vocab).tokenizer()
    batches = ProductBatches(data.train, tc.seed, tc.batch_size // 2, tc.hard_ratio)
    if len(batches.products) < tc.batch_size // 2:
        raise FbinferError(f"--batch-size {tc.batch_size}: needs {tc.batch_size // 2} products, {data.path} has {len(batches.products)}")
    lists = PairSampler(data.train, tc.seed, tc.batch_size)
    total = loop.total_steps(tc.steps, tc.epochs, batches.steps_per_epoch)
    model = model.to(env.device)
    ddp = nn.parallel.DistributedDataParallel(model, find_unused_parameters=not tc.product_weight) if env.world > 1 else model
    optim = Optimization.adamw(param_groups(model, tc), total, tc.warmup, weight_decay=tc.weight_decay)
    step, elapsed = 0, 0.0
    torch.manual_seed(tc.seed + env.rank)  # dropout streams
    if state:
        step, elapsed = optim.restore(state, env.rank)
    model.train()

    def one_step(step: int) -> dict[str, float]:
        rng = np.random.default_rng([tc.seed, step, 5])
        chosen = batches.products_of(step)
        views = [batches.views(p, rng) for p in chosen]  # drawn for all products, so every rank sees the same stream
        texts = images = [v for i in range(env.rank, len(chosen), env.world) for v in views[i]]  # product-major: view a, view b
        order = [chosen[i] for r in range(env.world) for i in range(r, len(chosen), env.world)]  # the gathered rows' products
        pid = torch.tensor(np.repeat(order, 2))
        if teacher is not None:
            lt, li, _ = lists.ranking_lists(step, tc.lists, tc.list_size)
            rows = [r for j in range(env.rank, tc.lists, env.world) for r in range(j * tc.list_size, (j + 1) * tc.list_size)]
            texts, images = texts + [lt[r] for r in rows], images + [li[r] for r in rows]
        tb = tok([it.text for it in texts]).as_torch()
        n = len(texts) - (len(rows) if teacher is not None else 0)
        with autocast(tc.precision, env.device):
            t, v, p, scale = ddp(tb.input_ids.to(env.device), tb.attention_mask.to(env.device), store.get(images).to(env.device))
            tg, vg, pg = _gather(env, t[:n]), _gather(env, v[:n]), _gather(env, p[:n])
            terms = {"nce": symmetric_nce(tg, vg, scale, pid[:, None] == pid[None, :])}
            if tc.product_weight:
                same = pid[0::2, None] == pid[None, 0::2]  # one view's product vector against the other view's image:
                terms["product"] = 0.5 * (symmetric_nce(pg[0::2], vg[1::2], scale, same) + symmetric_nce(pg[1::2], vg[0::2], scale, same))
            if teacher is not None:
                with torch.no_grad():
                    target = teacher(tb.input_ids[n:].to(env.device), tb.attention_mask[n:].to(env.device),
                                     store.get(images[n:]).to(env.device)).logit.view(-1, tc.list_size)
                student = (scale * (t[n:] * v[n:]).sum(-1)).view(-1, tc.list_size)
                terms["kd"] = ranking_kl(student, target, tc.kd_temperature)
        loss = terms["nce"] + tc.product_weight * terms.get("product", 0.0) + tc.kd_weight * terms.get("kd", 0.0)
        optim.step(loss, model.parameters())
        return env.mean({k: float(v.detach()) for k, v in terms.items()} | {"scale": float(scale.detach())})

    meta = {"data": str(data.path), "data_fingerprint": data.fingerprint(), "embed_train": asdict(tc), "world_size": env.world}

    def save(step: int, seconds: float, last: dict[str, float]) -> None:
        rngs = env.rng_states()
        if env.main:
            info = {**meta, "steps": step, "train_seconds": round(seconds, 1), "last": last}
            save_embed(EmbedCheckpoint(model, vocab, info, optim.state(step, seconds, rngs)), resume_path(out))
            save_embed(EmbedCheckpoint(model, vocab, info), out)

    step, seconds, last = loop.run(one_step, save, start=step, total=total, elapsed=elapsed,
                                   log=out.with_name(out.stem + ".embed.jsonl"), desc=f"embed {cfg.name}",
                                   lr=lambda: optim.sched.get_last_lr()[0], checkpoint_every=tc.checkpoint_every,
                                   log_every=tc.log_every, main=env.main)
    model.eval()
    return EmbedTrainResult(step, seconds, last)
