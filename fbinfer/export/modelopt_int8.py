"""Explicit INT8 for TensorRT, made by NVIDIA Model Optimizer's ONNX post-training quantization.

TensorRT 11 has no implicit INT8 (no calibrators, no BuilderFlag.INT8): the graph must carry
QuantizeLinear/DequantizeLinear itself, and TensorRT runs a MatMul in INT8 only where both of its
inputs come through Q/DQ. ``modelopt.onnx.quantization`` places them by TensorRT's rules (symmetric,
zero point 0, per-channel weights, per-tensor activations) and calibrates on real pairs in ONNX
Runtime; fbinfer chooses what it quantizes and checks the result (``check_qdq``).

Measured on the demo teacher (docs/results/int8_quantizers.md): Model Optimizer's defaults (every
quantizable op, the residual Adds included) moved Rank@1 by about 10 points; MatMuls only, with the
embeddings, head and layer 0 left in float and SmoothQuant first (``onnxruntime_int8.smooth``), it matched
the Q/DQ graph fbinfer used to build by hand, whose code is gone.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from fbinfer.errors import FbinferError, first_line
from fbinfer.export.config import CalibrationConfig
from fbinfer.export.qdq import excluded_matmuls, quantizer_version
from fbinfer.fileio import sha256

MODELOPT_MISSING = ("NVIDIA Model Optimizer's ONNX quantizer is not installed: pip install 'fbinfer[quantize]' "
                    "(nvidia-modelopt and the modules its ONNX quantizer imports)")


def modelopt_version() -> str:
    return quantizer_version("nvidia-modelopt", MODELOPT_MISSING)


def quantize_tensorrt(fp32: onnx.ModelProto, feeds: list[dict[str, np.ndarray]], cc: CalibrationConfig,
                      overrides: dict[str, Any] | None = None) -> onnx.ModelProto:
    """``fp32`` with Q/DQ on both inputs of its MatMuls outside ``cc.exclude``, calibrated on
    ``feeds`` (equal shapes: they are stacked into one calibration set). Weights are stored int8
    behind a DequantizeLinear (``dq_only``); everything else stays FP32 for ``to_fp16`` to lower.
    ``overrides`` replaces keyword arguments of ``modelopt.onnx.quantization.quantize`` (the
    benchmark's other settings: its defaults, no exclusions).

    Runs in a child process: importing Model Optimizer's quantizer replaces functions of ONNX
    Runtime's quantization package for the whole process (``modelopt.onnx.quantization.ort_patching``),
    which broke ``quantize_static`` for the ONNX Runtime INT8 graph made after it."""
    modelopt_version()
    if not feeds:
        raise FbinferError("INT8 calibration: no calibration batches (calibration data too small)")
    # its nodes_to_exclude are regular expressions matched at the start of a name: node_MatMul_1 would also
    # exclude node_MatMul_12
    exclude = [re.escape(n) + "$" for n in excluded_matmuls(fp32, cc.exclude)]
    with tempfile.TemporaryDirectory(prefix="fbinfer-modelopt-") as tmp:
        src, out, calib = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx", Path(tmp) / "calib.npz"
        onnx.save(fp32, str(src))
        np.savez(calib, **{name: np.concatenate([f[name] for f in feeds]) for name in feeds[0]})
        settings = {"quantize_mode": "int8", "calibration_method": cc.method, "calibration_eps": ["cpu"],
                    "op_types_to_quantize": ["MatMul"], "nodes_to_exclude": exclude, "high_precision_dtype": "fp32",
                    "dq_only": True, "log_level": "CRITICAL", **(overrides or {})}
        args = [str(src), str(out), str(calib), json.dumps(settings), sha256(calib)]
        child = subprocess.run([sys.executable, "-c", f"import {__name__} as m; m._modelopt_int8()", *args],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False)
        if child.returncode != 0 or not out.is_file():
            lines = child.stderr.strip().splitlines() or [f"exit status {child.returncode}"]
            raise FbinferError(f"export failed: Model Optimizer's INT8 quantization: {lines[-1][:300]}")
        return onnx.load(str(out))


def _modelopt_int8() -> None:
    """The child process (argv: source graph, output graph, calibration .npz, keyword arguments as
    JSON, the .npz's sha256): Model Optimizer's quantization. Its last stderr line is the error the parent shows."""
    src, out, calib, settings, digest = sys.argv[1:]
    if sha256(calib) != digest:  # checked before numpy parses it
        sys.exit(f"{calib}: the calibration set changed after it was written (sha256 differs)")
    try:
        from modelopt.onnx.quantization import quantize
    except ImportError as e:
        sys.exit(f"{MODELOPT_MISSING} ({first_line(e)})")
    with np.load(calib) as data:
        try:
            quantize(src, calibration_data=dict(data), output_path=out, **json.loads(settings))
        except Exception as e:  # noqa: BLE001 - its errors are plain exceptions of every kind: pass on the first line
            sys.exit(first_line(e, 300))
