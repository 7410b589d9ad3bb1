"""Turning what a caller has (paths, encoded bytes, PIL images, HxWx3 arrays, or patch features
already extracted) into the (N, patches, dim) features the graphs take.

The extractor is a bundle's own graph (ONNX Runtime or OpenVINO; no torch), or, for a checkpoint
or a bundle without one, the PyTorch EfficientNet."""
from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from fbinfer.bundle.io_spec import PATCHES
from fbinfer.data.decode import decode_image, read_image_file
from fbinfer.data.preprocess import GraphExtractor, bundle_preprocess
from fbinfer.errors import FbinferError
from fbinfer.model.config import FashionBertConfig

ImageLike = str | Path | bytes | Image.Image | np.ndarray
Extractor = Callable[[list[Image.Image]], np.ndarray]  # PIL images -> (N, patches, dim)


def torch_extractor(cfg: FashionBertConfig) -> Callable[[], Extractor]:
    """The model's own extractor (PyTorch EfficientNet, or numpy pixel cells for a pixel-patch model)."""
    def make() -> Extractor:
        try:  # torch and the EfficientNet packages are imported only here
            from fbinfer.data.features import make_extractor

            return make_extractor(cfg)
        except ImportError as e:
            raise FbinferError(f"images need the PyTorch extractor here, and it cannot be imported ({e}); use a bundle "
                               "exported by this fbinfer (it carries the extractor as ONNX) or pass patch features") from None
    return make


def bundle_extractor(bundle, backend: str, device: str | None) -> Callable[[], Extractor]:
    """The bundle's extractor graph: on OpenVINO for the openvino backend, else on ONNX Runtime
    (CUDA where the matcher runs on a GPU and onnxruntime-gpu is there). A bundle without one falls
    back to the PyTorch extractor."""
    graph = bundle.extractor_graph("fp32")
    if graph is None:
        return torch_extractor(bundle.config)

    def make() -> Extractor:
        from fbinfer.backends.registry import graph_runner

        return GraphExtractor(graph_runner(backend, graph, (PATCHES,), device), bundle_preprocess(bundle))
    return make


class PatchFeaturizer:
    """The model's own patch extractor, made by ``make_extractor`` on first use."""

    def __init__(self, cfg: FashionBertConfig, make_extractor: Callable[[], Extractor]):
        self.cfg, self.make_extractor = cfg, make_extractor
        self.shape = (cfg.num_patches, cfg.patch_feature_dim)
        self._extractor = None
        self._lock = threading.Lock()

    def _to_pil(self, x: Any, i: int) -> Image.Image:
        if isinstance(x, Image.Image):
            return x
        if isinstance(x, (str, Path)):
            return decode_image(read_image_file(Path(x), str(x)), str(x))
        if isinstance(x, bytes):
            return decode_image(x, f"images[{i}]")
        if isinstance(x, np.ndarray) and x.ndim == 3 and x.shape[-1] == 3:
            return Image.fromarray(x if x.dtype == np.uint8 else np.clip(x, 0, 255).astype(np.uint8))
        raise FbinferError(f"images[{i}]: expected a path, encoded image bytes, a PIL image, an HxWx3 array or {self.shape} patch features, "
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
                    self._extractor = self.make_extractor()
                for b in range(0, len(todo), 32):
                    chunk = todo[b:b + 32]
                    feats = self._extractor([im for _, im in chunk])
                    for (i, _), f in zip(chunk, feats):
                        out[i] = f
        return out
