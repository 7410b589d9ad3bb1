"""Decoded image -> what the patch extractor takes, in numpy and PIL only (serving reads it
without torch). The bundle's manifest stores ``ImagePreprocess.to_dict()``, so a Triton ensemble
or any other client can reproduce it exactly."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
from PIL import Image

from fbinfer.bundle.io_spec import PATCHES, PIXELS
from fbinfer.errors import FbinferError

RESAMPLE = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "nearest": Image.NEAREST}


@dataclass(frozen=True)
class ImagePreprocess:
    """RGB, resized to size x size with PIL's ``resample``, then (x - mean) / std per channel, NCHW float32.
    The defaults are EfficientNet-Lite's own: (x - 127) / 128."""
    size: int = 256
    resample: str = "bilinear"
    mean: tuple[float, float, float] = (127.0, 127.0, 127.0)
    std: tuple[float, float, float] = (128.0, 128.0, 128.0)
    layout: str = field(default="NCHW", init=False)

    def __call__(self, images: list[Image.Image]) -> np.ndarray:
        """(N, 3, size, size) float32."""
        x = np.stack([np.asarray(im.convert("RGB").resize((self.size, self.size), RESAMPLE[self.resample]), dtype=np.float32)
                      for im in images])
        x = (x - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))

    def to_dict(self) -> dict:
        return {**asdict(self), "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, d: dict, where: str = "preprocess") -> ImagePreprocess:
        try:
            if d.get("layout", "NCHW") != "NCHW":
                raise ValueError(f"layout {d['layout']!r} (fbinfer writes NCHW)")
            out = cls(int(d["size"]), str(d["resample"]), tuple(map(float, d["mean"])), tuple(map(float, d["std"])))
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise FbinferError(f"{where}: malformed image preprocessing ({e})") from None
        if out.resample not in RESAMPLE or len(out.mean) != 3 or len(out.std) != 3 or out.size < 1:
            raise FbinferError(f"{where}: malformed image preprocessing ({out})")
        return out


class GraphExtractor:
    """An extractor graph on a runner (``infer({PIXELS: ...}) -> {PATCHES: ...}``), after the
    preprocessing. Its features are rounded to fp16, as the PyTorch extractor's are: the model was
    trained and is evaluated on the fp16 feature cache, so every path feeds it the same values."""

    def __init__(self, runner, preprocess: ImagePreprocess):
        self.runner, self.preprocess = runner.activate(), preprocess

    def __call__(self, images: list[Image.Image]) -> np.ndarray:
        return self.runner.infer({PIXELS: self.preprocess(images)})[PATCHES].astype(np.float16)


def bundle_preprocess(bundle) -> ImagePreprocess:
    """A bundle's extractor preprocessing, as its manifest specifies it."""
    return ImagePreprocess.from_dict(bundle.manifest.get("extractor", {}).get("preprocess"), f"{bundle.folder}/manifest.json: extractor")


class PixelPatches:
    """Raw pixels per grid cell, scaled to [-1, 1]: (B, grid^2, 3 * p * p), for models trained from scratch."""

    def __init__(self, image_size: int = 256, grid: int = 8):
        self.image_size, self.grid = image_size, grid

    def __call__(self, images: list[Image.Image]) -> np.ndarray:
        p = self.image_size // self.grid
        x = np.stack([np.asarray(im.convert("RGB").resize((self.image_size, self.image_size)), dtype=np.float32) for im in images])
        x = x.reshape(len(images), self.grid, p, self.grid, p, 3).transpose(0, 1, 3, 5, 2, 4)  # B, gy, gx, C, py, px
        return (x.reshape(len(images), self.grid * self.grid, 3 * p * p) / 127.5 - 1.0).astype(np.float16)
