"""The object a service holds: ``score`` aligned pairs, ``rank`` a query against candidates.

Batching, padding to length buckets, chunking of long candidate lists and image featurization
are done here, over any runner (PyTorch, ONNX Runtime, TensorRT), so every backend ranks the
same way.

Thread safety: a Matcher may be shared by threads. Tokenization and featurization run in the
calling thread; the call into the backend is serialised by a lock, because a TensorRT
execution context and its CUDA stream must not be used by two threads at once, and PyTorch and
ONNX Runtime on CPU already use every core for one batch. For concurrent GPU work, give each
thread its own Matcher.
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Self

import numpy as np

from fbinfer.backends.base import Runner
from fbinfer.bundle.io_spec import ATTENTION_MASK, INPUT_IDS, LOGIT, PATCHES
from fbinfer.errors import FbinferError
from fbinfer.model.config import FashionBertConfig
from fbinfer.model.tokenizer import TextTokenizer
from fbinfer.runtime.images import Extractor, ImageLike, PatchFeaturizer


@dataclass
class Ranking:
    indices: np.ndarray  # (k,) candidate indices, best first
    scores: np.ndarray  # (k,) their match logits


class Matcher:
    def __init__(self, runner: Runner, tokenizer: TextTokenizer, cfg: FashionBertConfig, extractor: Callable[[], Extractor],
                 batch_size: int = 64, buckets: tuple[int, ...] | None = None):
        """``buckets``: pad each batch to the next of these lengths (fewer shapes for engines with
        tuned profiles); None pads to the batch's longest caption, which measured ~10 % faster on
        ONNX Runtime CPU (docs/serving.md). ``extractor`` makes the image extractor on first use
        (``fbinfer.runtime.images``)."""
        self.runner, self.tokenizer, self.config = runner.activate(), tokenizer, cfg
        self.batch_size = batch_size
        self.buckets = tuple(sorted(b for b in buckets if b <= cfg.max_text_len)) if buckets else ()
        self.featurize = PatchFeaturizer(cfg, extractor)
        self._lock = threading.Lock()
        self._closed = False

    @property
    def backend(self) -> str:
        return self.runner.name

    def patch_features(self, images: Sequence[ImageLike] | np.ndarray) -> np.ndarray:
        """Extract once, reuse across calls: ``rank`` and ``score`` accept the result directly."""
        return self.featurize(images)

    def score(self, texts: Sequence[str], images: Sequence[ImageLike] | np.ndarray) -> np.ndarray:
        """Match logits of aligned pairs (texts[i], images[i]); higher means a better match."""
        if isinstance(texts, str) or not isinstance(texts, Sequence) or not all(isinstance(t, str) for t in texts):
            raise FbinferError("score(texts, images): texts must be a list of caption strings")
        if images is None or not hasattr(images, "__len__"):
            raise FbinferError(f"score(texts, images): images must be a list or an array, not {type(images).__name__}")
        if len(texts) != len(images):
            raise FbinferError(f"score: {len(texts)} texts but {len(images)} images (pairs must be aligned)")
        if self._closed:
            raise FbinferError("score: this matcher is closed")
        if not len(texts):
            return np.zeros(0, dtype=np.float32)
        feats = self.featurize(images)
        tok = self.tokenizer(list(texts))
        lengths = tok.attention_mask.sum(1)
        order = np.argsort(lengths, kind="stable")  # similar lengths share a batch: less padding
        out = np.empty(len(texts), dtype=np.float32)
        ids, mask = tok.input_ids, tok.attention_mask
        for b in range(0, len(order), self.batch_size):
            rows = order[b:b + self.batch_size]
            width = self._bucket(int(lengths[rows].max()))
            feeds = {INPUT_IDS: _pad(ids[rows], width, self.tokenizer.pad_id), ATTENTION_MASK: _pad(mask[rows], width, 0),
                     PATCHES: np.ascontiguousarray(feats[rows])}
            with self._lock:
                out[rows] = self.runner.infer(feeds)[LOGIT]
        if not np.isfinite(out).all():
            raise FbinferError(f"score: {self.backend} returned non-finite scores (NaN or inf); the model or graph is broken")
        return out

    def rank(self, query: str | ImageLike, candidates: Sequence[ImageLike] | Sequence[str] | np.ndarray,
             k: int = 10, direction: str | None = None) -> Ranking:
        """The top k candidates for a query: a caption against images ("text_to_image") or an image
        against captions ("image_to_text"). Without ``direction`` a ``str`` query is a caption and
        anything else (Path, PIL image, array, patch features) an image; pass ``direction`` for an
        image given as a path string."""
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise FbinferError(f"rank: k must be a positive integer, not {k!r}")
        n = len(candidates)
        if n == 0:
            raise FbinferError("rank: no candidates")
        direction = direction or ("text_to_image" if isinstance(query, str) else "image_to_text")
        if direction == "text_to_image":
            scores = self.score([str(query)] * n, candidates)
        elif direction == "image_to_text":
            if not all(isinstance(c, str) for c in candidates):
                raise FbinferError("rank: an image query needs caption candidates (a list of strings)")
            feats = self.featurize([query])
            scores = self.score(list(candidates), np.repeat(feats, n, axis=0))
        else:
            raise FbinferError(f"rank: direction must be text_to_image or image_to_text, not {direction!r}")
        top = np.argsort(-scores, kind="stable")[: min(k, n)]
        return Ranking(top, scores[top])

    def _bucket(self, length: int) -> int:
        if not self.buckets:
            return length
        return next((b for b in self.buckets if b >= length), self.config.max_text_len)

    def close(self) -> None:
        with self._lock:
            self.runner.deactivate()
            self._closed = True

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _pad(x: np.ndarray, width: int, value: int) -> np.ndarray:
    if x.shape[1] >= width:
        return np.ascontiguousarray(x[:, :width])
    return np.pad(x, ((0, 0), (0, width - x.shape[1])), constant_values=value)
