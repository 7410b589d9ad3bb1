"""Training pairs: matched and unmatched 50/50, hard negatives from the same sub-category or, when
given, mined from the recall stage's top-k (``fbinfer.search.mining``)."""
from __future__ import annotations

from collections import defaultdict

import numpy as np
import torch

from fbinfer.data.features import FeatureStore
from fbinfer.data.records import Item
from fbinfer.model.tokenizer import TextBatch, TextTokenizer
from fbinfer.training.objectives import PretrainBatch, patch_mask, whole_word_mask


class PairSampler:
    """Batch ``step`` is a pure function of (seed, step), so a resumed run sees the same batches."""

    def __init__(self, items: list[Item], seed: int, batch_size: int, neg_ratio: float = 0.5, hard_ratio: float = 1.0,
                 mined: list[list[int]] | None = None):
        self.items, self.seed, self.batch_size, self.neg_ratio, self.hard_ratio = items, seed, batch_size, neg_ratio, hard_ratio
        self.mined = mined  # item i's hard negatives: other products the dual encoder ranks near its caption
        self.by_sub: dict[str, list[int]] = defaultdict(list)
        for i, it in enumerate(items):
            self.by_sub[it.subcategory].append(i)
        self.steps_per_epoch = max(1, len(items) // batch_size)

    def negative(self, i: int, rng: np.random.Generator, hard: bool | None = None) -> int:
        """Another product's item: a hard one with probability ``hard_ratio`` (always when
        ``hard``), from ``mined[i]`` if given, else from the same sub-category; else from anywhere."""
        pid = self.items[i].product_id
        pool = self.mined[i] if self.mined and self.mined[i] else self.by_sub[self.items[i].subcategory]
        for _ in range(8 if (rng.random() < self.hard_ratio if hard is None else hard) else 0):
            j = pool[rng.integers(len(pool))]
            if self.items[j].product_id != pid:
                return j
        while True:
            j = int(rng.integers(len(self.items)))
            if self.items[j].product_id != pid:
                return j

    def pairs(self, step: int) -> tuple[list[Item], list[Item], torch.Tensor]:
        """(text items, image items, labels) for one batch."""
        epoch, k = divmod(step, self.steps_per_epoch)
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.items))
        rng = np.random.default_rng([self.seed, epoch, k, 1])
        texts, images, labels = [], [], []
        for i in order[k * self.batch_size : (k + 1) * self.batch_size]:
            i = int(i)
            if rng.random() < self.neg_ratio:
                j = self.negative(i, rng)
                t, m = (i, j) if rng.random() < 0.5 else (j, i)  # swap the image or the text
                texts.append(self.items[t]), images.append(self.items[m]), labels.append(0)
            else:
                texts.append(self.items[i]), images.append(self.items[i]), labels.append(1)
        return texts, images, torch.tensor(labels)

    def hard_negatives(self, step: int, count: int) -> tuple[list[Item], list[Item]]:
        """``count`` extra unmatched pairs for batch ``step``: an item's caption with the image of
        another product from its sub-category (what distillation adds to the teacher's soft labels)."""
        rng = np.random.default_rng([self.seed, step, 2])
        texts, images = [], []
        for i in rng.choice(len(self.items), size=min(count, len(self.items)), replace=False):
            texts.append(self.items[int(i)]), images.append(self.items[self.negative(int(i), rng, hard=True)])
        return texts, images

    def ranking_lists(self, step: int, count: int, size: int) -> tuple[list[Item], list[Item], torch.Tensor]:
        """``count`` lists of ``size`` pairs, list-major, with labels (1 for each list's first
        pair): an item's image with its caption first and ``size - 1`` captions of other products
        from its sub-category, or (half of the lists) its caption with its image and other
        products' images; what a Rank@K query scores."""
        rng = np.random.default_rng([self.seed, step, 3])
        texts, images = [], []
        for i in rng.choice(len(self.items), size=count, replace=len(self.items) < count):
            i = int(i)
            pid = self.items[i].product_id
            pool = list({self.items[j].product_id: j for j in self.by_sub[self.items[i].subcategory]
                         if self.items[j].product_id != pid}.values())  # one item per product
            others = [pool[j] for j in rng.permutation(len(pool))[: size - 1]]
            others += [self.negative(i, rng, hard=False) for _ in range(size - 1 - len(others))]  # small sub-category
            ranked = [self.items[j] for j in [i] + others]
            anchor = [self.items[i]] * size
            texts, images = (texts + ranked, images + anchor) if rng.random() < 0.5 else (texts + anchor, images + ranked)
        labels = torch.zeros(count, size, dtype=torch.long)
        labels[:, 0] = 1
        return texts, images, labels.flatten()


def make_batch(texts: list[Item], images: list[Item], labels: torch.Tensor, tok: TextTokenizer, store: FeatureStore,
               gen: torch.Generator, mlm_prob: float = 0.15, mpm_prob: float = 0.1) -> PretrainBatch:
    """Tokenize, look up features, and mask words (MLM) and patches (MPM).

    Every row is masked alike, so the masks say nothing about the label (masking only the
    matched pairs would let TIA read the answer off the [MASK] tokens); the MLM and MPM
    losses are taken on the matched pairs only, where text and image describe each other.
    """
    text: TextBatch = tok([t.text for t in texts]).as_torch()
    feats = store.get(images)
    rows = torch.arange(len(labels))
    ids, mlm_labels = whole_word_mask(text, rows, mlm_prob, len(tok.vocab), tok.mask_id, tok.special_ids, gen)
    pmask = patch_mask(len(labels), rows, feats.shape[1], mpm_prob, gen)
    unmatched = labels == 0
    mlm_labels[unmatched] = -100
    return PretrainBatch(ids, text.attention_mask, feats.masked_fill(pmask[..., None], 0.0), labels, mlm_labels,
                         pmask & ~unmatched[:, None], feats)
