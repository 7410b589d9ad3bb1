"""WordPiece tokenization with word ids (for whole-word masking), padded to the batch's longest.
numpy only: serving reads it without torch; training takes ``as_torch()``."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from tokenizers import BertWordPieceTokenizer


@dataclass
class TextBatch:
    input_ids: Any  # (B, T) int64: numpy, or torch after as_torch()
    attention_mask: Any  # (B, T) int64, 1 for real tokens
    word_ids: list[list[int | None]]  # per token: index of its word, None for specials/padding

    def as_torch(self) -> TextBatch:
        import torch

        return replace(self, input_ids=torch.from_numpy(self.input_ids), attention_mask=torch.from_numpy(self.attention_mask))


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
        ids = np.full((len(encs), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(encs), width), dtype=np.int64)
        word_ids: list[list[int | None]] = []
        for i, e in enumerate(encs):
            n = len(e.ids)
            ids[i, :n] = e.ids
            mask[i, :n] = 1
            word_ids.append(list(e.word_ids) + [None] * (width - n))
        return TextBatch(ids, mask, word_ids)
