"""A batch of pairs scored as a few sub-batches of like caption lengths, each padded to its own
longest: the same logits, fewer padded tokens computed.

A batch is padded to its longest caption; in the bench's batch of 64 test pairs a third of the
text tokens are padding (captions of 5-31 tokens). Sorting the rows by length and cutting them
into ``groups`` sub-batches computes fewer of them, at the cost of more calls into the engine: on
7 December's AMX Xeon two sub-batches measured 1.07x on OpenVINO bf16 and four 1.39x on ONNX
Runtime fp32 (``benchmarks/padding.py``, docs/results/cls_only.md). Any backend's runner can be
wrapped (``open_runner(..., length_groups=2)``); the Matcher already sorts a call's pairs by length
before it cuts them into batches, so this matters for calls of mixed lengths up to one batch.
"""
from __future__ import annotations

import numpy as np

from fbinfer.backends.base import Runner
from fbinfer.bundle.io_spec import ATTENTION_MASK, INPUT_IDS

MIN_ROWS = 8  # no sub-batch smaller than this: below it an engine's fixed cost per call outweighs the tokens saved


def length_groups(mask: np.ndarray, groups: int, min_rows: int = MIN_ROWS) -> list[tuple[np.ndarray, int]]:
    """(rows, width) of each sub-batch: the rows sorted by caption length, cut into at most
    ``groups`` parts of at least ``min_rows`` rows, each as wide as its longest caption; neighbours
    of the same width are one part (a batch of one caption length stays whole)."""
    lengths = mask.sum(1)
    order = np.argsort(lengths, kind="stable")
    k = max(1, min(groups, len(order) // min_rows))
    parts: list[tuple[np.ndarray, int]] = []
    for rows in np.array_split(order, k):
        width = int(lengths[rows].max())
        if parts and parts[-1][1] == width:
            parts[-1] = (np.concatenate([parts[-1][0], rows]), width)
        else:
            parts.append((rows, width))
    return parts


class LengthGroups(Runner):
    """``inner`` with every batch scored as up to ``groups`` sub-batches by caption length.

    Args:
        inner: any matcher runner (its inputs are input_ids, attention_mask, patches; output logit).
        groups: the most sub-batches per batch (1 leaves every batch whole).

    Example:
        >>> runner = open_runner("openvino", bundle, "bf16", length_groups=2)
    """

    def __init__(self, inner: Runner, groups: int):
        super().__init__(inner.name, inner.inputs)
        self.inner, self.groups = inner, groups

    def __getattr__(self, name: str):
        """The wrapped runner's own attributes (its graph's path, its hints), as if unwrapped."""
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def activate_impl(self) -> None:
        self.inner.activate()
        self.inputs = self.inner.inputs

    def infer_impl(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        parts = length_groups(feeds[ATTENTION_MASK], self.groups)
        if len(parts) == 1:
            return self.inner.infer(feeds)
        results = [self.inner.infer({k: np.ascontiguousarray(a[rows, :width] if k in (INPUT_IDS, ATTENTION_MASK) else a[rows])
                                     for k, a in feeds.items()}) for rows, width in parts]
        back = np.argsort(np.concatenate([rows for rows, _ in parts]))  # sorted position -> the caller's row order
        return {name: np.concatenate([r[name] for r in results])[back] for name in results[0]}

    def deactivate_impl(self) -> None:
        self.inner.deactivate()

    def describe(self) -> dict[str, str]:
        return {**self.inner.describe(), "length_groups": str(self.groups)}
