"""The served graph's inputs and outputs, declared once (as optimum's exporters do).

Export, validation, parity, the backends and the runtime all read names, dtypes and dynamic
axes from here, so a graph and the code that feeds it cannot drift apart. numpy only: serving
code reads it without torch.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from fbinfer.model.config import FashionBertConfig


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str  # numpy dtype name as fed to / read from the graph
    axes: tuple[str, ...]  # symbolic names for dynamic axes, numbers (as strings) for fixed ones

    def to_dict(self) -> dict:
        return asdict(self)


BATCH, TEXT = "batch", "text_len"
INPUT_IDS, ATTENTION_MASK, PATCHES = "input_ids", "attention_mask", "patches"
INPUT_NAMES = (INPUT_IDS, ATTENTION_MASK, PATCHES)
LOGIT = "logit"
PIXELS = "pixels"  # the extractor graph's input: preprocessed (B, 3, H, W); its output is PATCHES


def input_specs(cfg: FashionBertConfig) -> tuple[TensorSpec, ...]:
    """input_ids/attention_mask: the tokenized caption; patches: one feature vector per grid cell."""
    return (
        TensorSpec(INPUT_IDS, "int64", (BATCH, TEXT)),
        TensorSpec(ATTENTION_MASK, "int64", (BATCH, TEXT)),
        TensorSpec(PATCHES, "float32", (BATCH, str(cfg.num_patches), str(cfg.patch_feature_dim))),
    )


OUTPUTS = (TensorSpec(LOGIT, "float32", (BATCH,)),)  # the TIA match logit: the ranking score
OUTPUT_NAMES = tuple(o.name for o in OUTPUTS)


def example_feeds(cfg: FashionBertConfig, batch: int = 2, text_len: int = 16, seed: int = 0) -> dict[str, np.ndarray]:
    """Random but valid feeds (rows of different lengths) for tracing and shape checks."""
    g = np.random.default_rng(seed)
    ids = g.integers(1000, cfg.vocab_size, size=(batch, text_len))
    lengths = np.linspace(text_len, max(3, text_len // 2), batch).astype(int)
    mask = (np.arange(text_len)[None, :] < lengths[:, None]).astype(np.int64)
    ids[:, 0] = 101
    ids[np.arange(batch), lengths - 1] = 102
    ids = np.where(mask == 1, ids, 0)
    patches = g.standard_normal((batch, cfg.num_patches, cfg.patch_feature_dim)).astype(np.float32)
    return {INPUT_IDS: ids.astype(np.int64), ATTENTION_MASK: mask, PATCHES: patches}


def make_feeds(tokenizer, patches: np.ndarray, texts: list[str], pad_to: int | None = None) -> dict[str, np.ndarray]:
    """The graph's feeds for aligned (caption, patch features) pairs, padded to the longest caption
    (or to ``pad_to``)."""
    t = tokenizer(texts, pad_to=pad_to)
    return {INPUT_IDS: np.asarray(t.input_ids), ATTENTION_MASK: np.asarray(t.attention_mask),
            PATCHES: np.ascontiguousarray(patches, dtype=np.float32)}


def batch_size(feeds: dict[str, np.ndarray]) -> int:
    return int(feeds[INPUT_IDS].shape[0])
