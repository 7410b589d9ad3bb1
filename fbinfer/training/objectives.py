"""Inputs masking and the three pre-training losses (MLM, MPM, TIA)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from fbinfer.model.fashionbert import FashionBert
from fbinfer.model.tokenizer import TextBatch


def whole_word_mask(batch: TextBatch, rows: torch.Tensor, prob: float, vocab_size: int, mask_id: int,
                    special_ids: set[int], gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Mask ``prob`` of the words (all their WordPieces) in the chosen rows, BERT-style
    (80% [MASK], 10% random token, 10% unchanged). Returns (masked ids, labels with -100 elsewhere)."""
    ids = batch.input_ids.clone()
    labels = torch.full_like(ids, -100)
    for r in rows.tolist():
        words = sorted({w for w, t in zip(batch.word_ids[r], ids[r].tolist()) if w is not None and t not in special_ids})
        if not words or prob <= 0:
            continue
        k = max(1, round(prob * len(words))) if prob > 0 else 0
        chosen = {words[i] for i in torch.randperm(len(words), generator=gen)[:k].tolist()}
        for pos, w in enumerate(batch.word_ids[r]):
            if w in chosen:
                labels[r, pos] = ids[r, pos]
                u = torch.rand((), generator=gen).item()
                if u < 0.8:
                    ids[r, pos] = mask_id
                elif u < 0.9:
                    ids[r, pos] = int(torch.randint(vocab_size, (), generator=gen))
    return ids, labels


def patch_mask(n_rows: int, rows: torch.Tensor, n_patches: int, prob: float, gen: torch.Generator) -> torch.Tensor:
    """(B, P) bool: ``prob`` of the patches (at least one) in each chosen row."""
    mask = torch.zeros(n_rows, n_patches, dtype=torch.bool)
    k = max(1, round(prob * n_patches)) if prob > 0 else 0
    for r in rows.tolist():
        mask[r, torch.randperm(n_patches, generator=gen)[:k]] = True
    return mask


def mpm_kl(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """KL(softmax(target) || softmax(pred)) over feature dimensions, mean over patches."""
    log_p = F.log_softmax(target.float(), dim=-1)
    return F.kl_div(F.log_softmax(pred.float(), dim=-1), log_p, log_target=True, reduction="batchmean")


@dataclass
class PretrainBatch:
    input_ids: torch.Tensor  # masked
    attention_mask: torch.Tensor
    patches: torch.Tensor  # with masked patches zeroed
    labels: torch.Tensor  # (B,) 1 = matched pair
    mlm_labels: torch.Tensor  # (B, T) -100 where not masked
    patch_mask: torch.Tensor  # (B, P) bool: masked patches whose MPM loss counts (matched pairs)
    patch_targets: torch.Tensor  # (B, P, D) original features


def masked_losses(model: FashionBert, seq: torch.Tensor, b: PretrainBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """(MLM, MPM) on the encoder output ``seq``; zero (still in the graph) where nothing is masked."""
    T, P = b.input_ids.shape[1], b.patches.shape[1]
    zero = seq.sum() * 0.0
    sel = b.mlm_labels != -100
    mlm = F.cross_entropy(model.mlm_logits(seq[:, :T][sel]), b.mlm_labels[sel]) if sel.any() else zero
    mpm = mpm_kl(model.mpm_features(seq[:, -P:][b.patch_mask]), b.patch_targets[b.patch_mask]) if b.patch_mask.any() else zero
    return mlm, mpm


def pretrain_losses(model: FashionBert, b: PretrainBatch, lists: int = 0, list_size: int = 0) -> tuple[list[torch.Tensor], torch.Tensor]:
    """[MLM, MPM, TIA] losses and the encoder output they share (for gradient-norm weighting).

    With ``lists``, the batch ends in that many ranking lists of ``list_size`` pairs, truth first
    (``PairSampler.ranking_lists``): TIA is then the binary loss on the pairs plus the softmax
    cross-entropy of each list's logits, the Rank@K task itself (one query among candidates of
    its sub-category)."""
    out = model(b.input_ids, b.attention_mask, b.patches)
    mlm, mpm = masked_losses(model, out.sequence, b)
    pairs = len(out.logit) - lists * list_size
    tia = F.binary_cross_entropy_with_logits(out.logit[:pairs], b.labels[:pairs].float())
    if lists:
        ranked = out.logit[pairs:].view(lists, list_size)
        tia = tia + F.cross_entropy(ranked, torch.zeros(lists, dtype=torch.long, device=ranked.device))
    return [mlm, mpm, tia], out.sequence
