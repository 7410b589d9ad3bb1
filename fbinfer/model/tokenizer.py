"""WordPiece tokenization with word ids (for whole-word masking), padded to the batch's longest."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from tokenizers import BertWordPieceTokenizer


@dataclass
class TextBatch:
    input_ids: torch.Tensor  # (B, T) int64
    attention_mask: torch.Tensor  # (B, T) int64, 1 for real tokens
    word_ids: list[list[int | None]]  # per token: index of its word, None for specials/padding


class TextTokenizer:
    """Lower-cased BERT WordPiece over a vocab list (the one stored in every checkpoint)."""

    def __init__(self, vocab: list[str], max_len: int):
        self.vocab = vocab
        self.max_len = max_len
        self._tok = BertWordPieceTokenizer(vocab={t: i for i, t in enumerate(vocab)}, lowercase=True)
        self._tok.enable_truncation(max_len)
        self.pad_id = vocab.index("[PAD]")
        self.mask_id = vocab.index("[MASK]")
        self.special_ids = {vocab.index(t) for t in ("[CLS]", "[SEP]", "[PAD]", "[UNK]", "[MASK]")}

    def __call__(self, texts: list[str], pad_to: int | None = None) -> TextBatch:
        encs = self._tok.encode_batch(texts)
        width = pad_to or max(len(e.ids) for e in encs)
        ids = torch.full((len(encs), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(encs), width), dtype=torch.long)
        word_ids: list[list[int | None]] = []
        for i, e in enumerate(encs):
            n = len(e.ids)
            ids[i, :n] = torch.tensor(e.ids)
            mask[i, :n] = 1
            word_ids.append(list(e.word_ids) + [None] * (width - n))
        return TextBatch(ids, mask, word_ids)
