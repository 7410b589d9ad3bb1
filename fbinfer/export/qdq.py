"""Q/DQ graphs, whoever quantized them: the Linear layers' MatMuls and the groups left in float
(embeddings, head, layer:N), which MatMuls TensorRT can run in INT8, and TensorRT's Q/DQ rules
checked. Shared by the Model Optimizer, ONNX Runtime and NNCF quantizers beside it."""
from __future__ import annotations

import ast
import importlib.metadata
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

from fbinfer.errors import BackendUnavailable


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
    for s in _node_scopes(node):
        if s.startswith("layers."):
            return f"layer:{s.split('.')[1]}"
        if s in ("pooler", "tia"):
            return "head"
    return "embeddings"


def _node_scopes(node: onnx.NodeProto) -> list[str]:
    return next((_scopes(p.value) for p in node.metadata_props if p.key == "pkg.torch.onnx.name_scopes"), [])


def cls_only(model: onnx.ModelProto) -> set[str]:
    """The last layer's MatMuls that see [CLS] alone (``ExportLayer(rows=1)``): its query,
    attention products, output and feed-forward; its keys and values see every token. One row
    per pair: too few to calibrate INT8 ranges on, and too small a share of the work for INT8 to pay."""
    group = {n.name: _group(n) for n in model.graph.node}
    indices = [int(g.split(":")[1]) for g in group.values() if g.startswith("layer:")]
    last = f"layer:{max(indices)}" if indices else None
    if not any(n.op_type == "Slice" and group[n.name] == last for n in model.graph.node):
        return set()  # no layers, or a last layer that runs every token (a bundle exported before 7 December 2026)
    kv = {f"layers.{max(indices)}.{p}" for p in ("k", "v")}
    return {n.name for n in model.graph.node
            if n.op_type in ("MatMul", "Gemm") and group[n.name] == last and not kv & set(_node_scopes(n))}


def _scopes(text: str) -> list[str]:
    """The exporter writes the module-scope list as a Python-literal list of strings."""
    value = ast.literal_eval(text)
    return [str(v) for v in value] if isinstance(value, list) else []


def excluded_matmuls(model: onnx.ModelProto, groups: tuple[str, ...]) -> list[str]:
    """The MatMul/Gemm nodes to keep in float: every one in the excluded groups (a layer's attention
    products with its Linear layers), every MatMul whose *first* input is a constant (the
    patch-averaging matrix: no weight, and rounding that fixed matrix to int8 would only add error),
    and the last layer's [CLS]-only ones (``cls_only``)."""
    inits, cls = {i.name for i in model.graph.initializer}, cls_only(model)
    return [n.name for n in model.graph.node if n.op_type in ("MatMul", "Gemm")
            and (_group(n) in groups or n.op_type == "MatMul" and n.input[0] in inits or n.name in cls)]


def quantizer_version(package: str, missing: str) -> str:
    """The installed version of a quantizer's package, for the manifest; ``missing`` when it is not there."""
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        raise BackendUnavailable(missing) from None


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
