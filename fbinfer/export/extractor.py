"""The image half of a bundle: EfficientNet-Lite0's trunk as ONNX graphs, so that a serving
process (or a Triton ensemble, or a TensorRT deployment) turns images into patch features without
PyTorch.

    extractor.fp32.onnx   preprocessed pixels (B, 3, 256, 256) -> patches (B, 64, C); TensorRT FP32,
                          ONNX Runtime and OpenVINO run it
    extractor.fp16.onnx   the same in FP16 (inputs and outputs FP32), for TensorRT FP16

The manifest's ``extractor`` entry holds the preprocessing (``ImagePreprocess.to_dict()``), the
graphs, and their parity against the PyTorch extractor on the parity set's images: FP32 within
1e-4 in every feature, and the matcher's ranking end to end with the graph's features.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import torch
from PIL import Image

from fbinfer.bundle.io_spec import BATCH, PATCHES, PIXELS
from fbinfer.data.features import EfficientNetTrunk
from fbinfer.data.preprocess import ImagePreprocess
from fbinfer.errors import FbinferError
from fbinfer.export.graphs import check_graph, dynamo_export, op_counts, to_fp16
from fbinfer.model.config import FashionBertConfig

OPSET = 19
FP32_TOLERANCE = 1e-4  # max |feature difference| against PyTorch, the contract


def export_trunk(trunk: EfficientNetTrunk, image_size: int, path: Path, max_batch: int) -> onnx.ModelProto:
    """The trunk traced by torch.onnx's dynamo exporter, batch 1..max_batch dynamic."""
    batch = torch.export.Dim(BATCH, min=1, max=max_batch)
    example = torch.zeros(min(2, max_batch), 3, image_size, image_size)
    graph = dynamo_export(trunk, (example,), path, (PIXELS,), (PATCHES,), ({0: batch},), OPSET)
    check_graph(path)
    return graph


def reference_features(cfg: FashionBertConfig, pixels: np.ndarray, trunk: EfficientNetTrunk | None = None) -> np.ndarray:
    """The PyTorch trunk's fp32 features of preprocessed pixels."""
    with torch.inference_mode():
        return (trunk or EfficientNetTrunk(cfg.feature_layer).eval())(torch.from_numpy(pixels)).numpy()


def feature_parity(reference: np.ndarray, got: np.ndarray) -> dict[str, float]:
    """How far a graph's features are from PyTorch's, absolute and against the features' spread."""
    diff = np.abs(reference.astype(np.float64) - got.astype(np.float64))
    return {"max_abs_feature_diff": float(diff.max()), "mean_abs_feature_diff": float(diff.mean()),
            "feature_std": float(reference.std()), "images": int(reference.shape[0])}


def export_extractor(cfg: FashionBertConfig, folder: Path, images: list[Image.Image], max_batch: int, fp16: bool,
                     run: dict[str, object]) -> dict:
    """Write the extractor graphs into ``folder``; returns the manifest entry (files to be added by the
    caller). ``run`` maps a backend name to ``f(graph_path, pixels) -> features``: every FP32 run
    further than ``FP32_TOLERANCE`` from PyTorch fails the export."""
    if cfg.patch_input != "features":
        return {"kind": "pixels", "preprocess": None, "note": "raw pixel cells, computed in numpy (fbinfer.data.preprocess)"}
    pre = ImagePreprocess(cfg.image_size)
    pixels = pre(images)
    trunk = EfficientNetTrunk(cfg.feature_layer).eval()  # its weights loaded once, for the reference and the export
    reference = reference_features(cfg, pixels, trunk)
    graphs, parity = {}, []
    fp32 = export_trunk(trunk, cfg.image_size, folder / EXTRACTOR_FILES["fp32"], max_batch)
    graphs["fp32"] = {"file": EXTRACTOR_FILES["fp32"], "targets": ["tensorrt", "onnxruntime", "openvino"], "ops": op_counts(fp32)}
    if fp16:
        g16, _ = to_fp16(fp32, (), False)
        onnx.save(g16, str(folder / EXTRACTOR_FILES["fp16"]))
        check_graph(folder / EXTRACTOR_FILES["fp16"])
        graphs["fp16"] = {"file": EXTRACTOR_FILES["fp16"], "targets": ["tensorrt"], "ops": op_counts(g16)}
    for precision, g in graphs.items():
        for backend, fn in run.items():
            if precision == "fp16" and backend != "onnxruntime":
                continue  # the FP16 graph is TensorRT's; ONNX Runtime's CPU run is its numerics check
            row = {"graph": f"extractor.{precision}", "backend": backend, "precision": precision,
                   **feature_parity(reference, fn(folder / g["file"], pixels))}
            if precision == "fp32" and not row["max_abs_feature_diff"] <= FP32_TOLERANCE:
                raise FbinferError(f"export failed: the extractor graph on {backend} differs from PyTorch by "
                                   f"{row['max_abs_feature_diff']:.2e} in a feature (> {FP32_TOLERANCE:g})")
            parity.append(row)
    return {"kind": f"efficientnet-lite0-{cfg.feature_layer}", "preprocess": pre.to_dict(),
            "input": {"name": PIXELS, "dtype": "float32", "axes": [BATCH, "3", str(cfg.image_size), str(cfg.image_size)]},
            "output": {"name": PATCHES, "dtype": "float32", "axes": [BATCH, str(cfg.num_patches), str(cfg.patch_feature_dim)]},
            "opset": OPSET, "graphs": graphs, "parity": parity}


EXTRACTOR_FILES = {"fp32": "extractor.fp32.onnx", "fp16": "extractor.fp16.onnx"}
