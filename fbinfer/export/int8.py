"""Explicit INT8 for TensorRT, made by NVIDIA Model Optimizer's ONNX post-training quantization.

TensorRT 11 has no implicit INT8 (no calibrators, no BuilderFlag.INT8): the graph must carry
QuantizeLinear/DequantizeLinear itself, and TensorRT runs a MatMul in INT8 only where both of its
inputs come through Q/DQ. ``modelopt.onnx.quantization`` places them by TensorRT's rules (symmetric,
zero point 0, per-channel weights, per-tensor activations) and calibrates on real pairs in ONNX
Runtime; fbinfer chooses what it quantizes and checks the result (``check_qdq``).

Measured on the demo teacher (docs/results/int8_quantizers.md): Model Optimizer's defaults (every
quantizable op, the residual Adds included) moved Rank@1 by about 10 points; MatMuls only, with the
embeddings, head and layer 0 left in float and SmoothQuant first (``cpu_int8.smooth``), it matched
the Q/DQ graph fbinfer used to build by hand, whose code is gone.
"""
from __future__ import annotations

import ast
import importlib.metadata
import json
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from fbinfer.errors import BackendUnavailable, FbinferError, first_line

CALIB_METHODS = ("max", "entropy")  # Model Optimizer's INT8 calibrators (ONNX Runtime's MinMax / Entropy)
MODELOPT_MISSING = ("NVIDIA Model Optimizer's ONNX quantizer is not installed: pip install 'fbinfer[quantize]' "
                    "(nvidia-modelopt and the modules its ONNX quantizer imports)")


@dataclass(frozen=True)
class CalibrationConfig:
    # Defaults measured by benchmarks/export_precision.py (git af71dd4, on the hand-built graphs):
    # clipping calibrators cut BERT's outlier activations and cost more than they save; the first
    # layer, fed by the raw embeddings, carries most of the remaining INT8 error.
    method: str = "max"
    batches: int = 16
    batch_size: int = 32
    exclude: tuple[str, ...] = ("embeddings", "head", "layer:0")  # kept out of INT8: embeddings, head, layer:N

    def validate(self) -> CalibrationConfig:
        if self.method not in CALIB_METHODS:
            raise FbinferError(f"--calib-method must be one of {', '.join(CALIB_METHODS)}, not {self.method!r}")
        for group in self.exclude:
            if group not in ("embeddings", "head") and not (group.startswith("layer:") and group[6:].isdigit()):
                raise FbinferError(f"--int8-exclude: unknown group {group!r} (embeddings, head or layer:N)")
        return self


@dataclass(frozen=True)
class WeightOp:
    """A MatMul/Gemm with a constant weight (a Linear layer)."""
    node: str
    activation: str
    weight: str
    axis: int  # output-channel axis of the weight
    group: str  # embeddings | head | layer:N


def weight_ops(model: onnx.ModelProto) -> list[WeightOp]:
    inits = {i.name for i in model.graph.initializer}
    ops = []
    for n in model.graph.node:
        if n.op_type not in ("MatMul", "Gemm") or len(n.input) < 2 or n.input[1] not in inits or n.input[0] in inits:
            continue
        trans_b = any(a.name == "transB" and a.i for a in n.attribute)
        axis = 0 if n.op_type == "Gemm" and trans_b else 1
        ops.append(WeightOp(n.name, n.input[0], n.input[1], axis, _group(n)))
    return ops


def _group(node: onnx.NodeProto) -> str:
    """Which part of the model a node belongs to, from the exporter's module scopes."""
    scopes = next((_scopes(p.value) for p in node.metadata_props if p.key == "pkg.torch.onnx.name_scopes"), [])
    for s in scopes:
        if s.startswith("layers."):
            return f"layer:{s.split('.')[1]}"
        if s in ("pooler", "tia"):
            return "head"
    return "embeddings"


def _scopes(text: str) -> list[str]:
    """The exporter writes the module-scope list as a Python-literal list of strings."""
    value = ast.literal_eval(text)
    return [str(v) for v in value] if isinstance(value, list) else []


def excluded_matmuls(model: onnx.ModelProto, groups: tuple[str, ...]) -> list[str]:
    """The MatMul/Gemm nodes to keep in float: every one in the excluded groups (a layer's attention
    products with its Linear layers), and every MatMul whose *first* input is a constant (the
    patch-averaging matrix: no weight, and rounding that fixed matrix to int8 would only add error)."""
    inits = {i.name for i in model.graph.initializer}
    return [n.name for n in model.graph.node
            if n.op_type in ("MatMul", "Gemm") and (_group(n) in groups or n.op_type == "MatMul" and n.input[0] in inits)]


def quantizer_version(package: str, missing: str) -> str:
    """The installed version of a quantizer's package, for the manifest; ``missing`` when it is not there."""
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        raise BackendUnavailable(missing) from None


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
        args = [str(src), str(out), str(calib), json.dumps(settings)]
        child = subprocess.run([sys.executable, "-c", f"import {__name__} as m; m._modelopt_int8()", *args],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False)
        if child.returncode != 0 or not out.is_file():
            lines = child.stderr.strip().splitlines() or [f"exit status {child.returncode}"]
            raise FbinferError(f"export failed: Model Optimizer's INT8 quantization: {lines[-1][:300]}")
        return onnx.load(str(out))


def _modelopt_int8() -> None:
    """The child process (argv: source graph, output graph, calibration .npz, keyword arguments as
    JSON): Model Optimizer's quantization. Its last stderr line is the error the parent shows."""
    src, out, calib, settings = sys.argv[1:]
    try:
        from modelopt.onnx.quantization import quantize
    except ImportError as e:
        sys.exit(f"{MODELOPT_MISSING} ({first_line(e)})")
    with np.load(calib) as data:
        try:
            quantize(src, calibration_data=dict(data), output_path=out, **json.loads(settings))
        except Exception as e:  # noqa: BLE001 - its errors are plain exceptions of every kind: pass on the first line
            sys.exit(first_line(e, 300))


def qdq_matmuls(model: onnx.ModelProto) -> dict[str, list[str]]:
    """MatMul/Gemm nodes by whether TensorRT can run them in INT8: ``int8`` where both inputs come
    from a DequantizeLinear, ``float`` otherwise (one-sided Q/DQ only costs a conversion)."""
    dq = {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    out: dict[str, list[str]] = {"int8": [], "float": []}
    for n in model.graph.node:
        if n.op_type in ("MatMul", "Gemm"):
            out["int8" if n.input[0] in dq and n.input[1] in dq else "float"].append(n.name)
    return out


def check_qdq(model: onnx.ModelProto) -> list[str]:
    """TensorRT's rules, checked: every zero point is int8 zero; weights are int8 per output channel
    behind a DequantizeLinear; activation scales are one positive number."""
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    problems = []
    for n in model.graph.node:
        if n.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        zp = inits.get(n.input[2]) if len(n.input) > 2 else None
        if zp is None or zp.dtype != np.int8 or np.any(zp != 0):
            problems.append(f"{n.name}: zero point is not int8 zero")
        scale = inits.get(n.input[1])
        if scale is None or not np.all(np.isfinite(scale)) or np.any(scale <= 0):
            problems.append(f"{n.name}: scale is not a positive constant")
        elif n.input[0] in inits:
            if inits[n.input[0]].dtype != np.int8:
                problems.append(f"{n.name}: weight is not stored int8")
            elif scale.ndim != 1:
                problems.append(f"{n.name}: weight scale is not per-channel")
        elif scale.size != 1:
            problems.append(f"{n.name}: activation scale is not per-tensor")
    return problems


def probe_session(model: onnx.ModelProto, tensors: list[str]):
    """An ORT session on a copy of the graph whose outputs include ``tensors`` (for smoothing statistics)."""
    import onnxruntime as ort

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    known = {o.name for o in probe.graph.output}
    probe.graph.output.extend(helper.make_empty_tensor_value_info(t) for t in tensors if t not in known)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep every probed tensor
    return ort.InferenceSession(probe.SerializeToString(), opts, providers=["CPUExecutionProvider"])
