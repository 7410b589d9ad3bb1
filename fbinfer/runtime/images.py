"""Turning what a caller has (paths, PIL images, HxWx3 arrays, or patch features already
extracted) into the (N, patches, dim) features the graphs take."""
from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from fbinfer.data.decode import decode_image, read_image_file
from fbinfer.data.features import make_extractor
from fbinfer.errors import FbinferError
from fbinfer.model.config import FashionBertConfig

ImageLike = str | Path | Image.Image | np.ndarray


class PatchFeaturizer:
    """The model's own patch extractor (EfficientNet-Lite0 trunk or raw pixels), loaded on first use."""

    def __init__(self, cfg: FashionBertConfig):
        self.cfg = cfg
        self.shape = (cfg.num_patches, cfg.patch_feature_dim)
        self._extractor = None
        self._lock = threading.Lock()

    def _to_pil(self, x: Any, i: int) -> Image.Image:
        if isinstance(x, Image.Image):
            return x
        if isinstance(x, (str, Path)):
            return decode_image(read_image_file(Path(x), str(x)), str(x))
        if isinstance(x, np.ndarray) and x.ndim == 3 and x.shape[-1] == 3:
            return Image.fromarray(x if x.dtype == np.uint8 else np.clip(x, 0, 255).astype(np.uint8))
        raise FbinferError(f"images[{i}]: expected a path, a PIL image, an HxWx3 array or {self.shape} patch features, "
                           f"got {type(x).__name__}{getattr(x, 'shape', '')}")

    def __call__(self, images: Sequence[ImageLike] | np.ndarray) -> np.ndarray:
        """(N, patches, dim) float32."""
        if isinstance(images, np.ndarray) and images.ndim == 3 and images.shape[1:] == self.shape:
            return images.astype(np.float32, copy=False)
        out = np.empty((len(images), *self.shape), dtype=np.float32)
        todo: list[tuple[int, Image.Image]] = []
        for i, x in enumerate(images):
            if isinstance(x, np.ndarray) and x.shape == self.shape:
                out[i] = x
            else:
                todo.append((i, self._to_pil(x, i)))
        if todo:
            with self._lock:  # one extractor, shared by threads
                if self._extractor is None:
                    self._extractor = make_extractor(self.cfg)
                for b in range(0, len(todo), 32):
                    chunk = todo[b:b + 32]
                    feats = self._extractor([im for _, im in chunk])
                    for (i, _), f in zip(chunk, feats):
                        out[i] = f
        return out
