"""Explicit INT8 quantization for TensorRT: Q/DQ pairs by TensorRT's rules, calibrated on real pairs.

TensorRT 11 has no implicit INT8 (no calibrators, no BuilderFlag.INT8): the graph must carry
QuantizeLinear/DequantizeLinear itself. The rules followed here are TensorRT's: symmetric
quantization (zero point 0, int8 in [-127, 127]), per-channel weight scales on the output-channel
axis, one per-tensor scale for each activation. Q/DQ go on both inputs of every weight MatMul/Gemm
(the Linear layers), which is where TensorRT fuses them into INT8 GEMMs; everything else stays
FP16 (``to_fp16`` after this), as NVIDIA's BERT INT8 recipe does.

Activation ranges come from running the FP32 graph in ONNX Runtime on calibration batches:
``max`` (abs max), ``percentile`` (of |x|) or ``entropy`` (TensorRT's KL-divergence threshold
search over a 2048-bin histogram). They are cached as JSON keyed by the graph, the data and the
settings, so re-exports skip calibration.
"""
from __future__ import annotations

import ast
import hashlib
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper
from tqdm import tqdm

from fbinfer.errors import FbinferError
from fbinfer.fileio import write_json

CALIB_METHODS = ("max", "percentile", "entropy")
BINS = 2048


@dataclass(frozen=True)
class CalibrationConfig:
    # Defaults measured by benchmarks/export_precision.py: clipping calibrators (percentile,
    # entropy) cut BERT's outlier activations and cost far more than they save; the first layer,
    # fed by the raw embeddings, carries most of the remaining INT8 error.
    method: str = "max"
    percentile: float = 99.99
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
    """A MatMul/Gemm with a constant weight: where Q/DQ go."""
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


def calibration_key(model: onnx.ModelProto, data_fingerprint: str, cfg: CalibrationConfig) -> str:
    h = hashlib.sha256(model.SerializeToString())
    h.update(data_fingerprint.encode())
    h.update(json.dumps({k: v for k, v in asdict(cfg).items() if k != "exclude"}, sort_keys=True).encode())
    return h.hexdigest()[:20]


def calibrate(model: onnx.ModelProto, feeds: Iterable[dict[str, np.ndarray]], tensors: list[str],
              cfg: CalibrationConfig, cache: Path | None = None) -> dict[str, float]:
    """Per-tensor activation thresholds (amax); read from / written to ``cache`` when given."""
    if cache is not None and cache.is_file():
        ranges = json.loads(cache.read_text())
        if set(tensors) <= set(ranges):
            return ranges
    feeds = list(feeds)
    if not feeds:
        raise FbinferError("INT8 calibration: no calibration batches (calibration data too small)")
    session = probe_session(model, tensors)
    amax = {t: 0.0 for t in tensors}
    for feed in tqdm(feeds, desc="calibrate: ranges", unit="batch"):
        for t, x in zip(tensors, session.run(tensors, feed)):
            amax[t] = max(amax[t], float(np.abs(x).max()))
    ranges = dict(amax)
    if cfg.method != "max":
        hists = {t: np.zeros(BINS) for t in tensors}
        for feed in tqdm(feeds, desc=f"calibrate: {cfg.method}", unit="batch"):
            for t, x in zip(tensors, session.run(tensors, feed)):
                hists[t] += np.histogram(np.abs(x), bins=BINS, range=(0.0, amax[t] or 1.0))[0]
        pick = percentile_amax if cfg.method == "percentile" else entropy_amax
        ranges = {t: pick(hists[t], amax[t], cfg.percentile) if amax[t] > 0 else 0.0 for t in tensors}
    if cache is not None:
        write_json(cache, ranges)
    return ranges


def probe_session(model: onnx.ModelProto, tensors: list[str]):
    """An ORT session on a copy of the graph whose outputs include ``tensors`` (for calibration
    ranges and smoothing statistics)."""
    import onnxruntime as ort

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    known = {o.name for o in probe.graph.output}
    probe.graph.output.extend(helper.make_empty_tensor_value_info(t) for t in tensors if t not in known)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep every probed tensor
    return ort.InferenceSession(probe.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def percentile_amax(hist: np.ndarray, amax: float, percentile: float) -> float:
    cdf = np.cumsum(hist) / max(hist.sum(), 1)
    i = int(np.searchsorted(cdf, percentile / 100.0))
    return float(min(i + 1, BINS) * amax / BINS)


def entropy_amax(hist: np.ndarray, amax: float, _: float = 0.0, levels: int = 128) -> float:
    """TensorRT's entropy calibration: the clipping threshold whose 128-level quantization of the
    |x| histogram loses the least information (minimum KL(P || Q))."""
    best, best_i = np.inf, BINS
    for i in range(levels, BINS + 1, 16):
        p = hist[:i].astype(np.float64).copy()
        p[-1] += hist[i:].sum()  # outliers clipped into the last bin
        nonzero = p > 0
        chunks = np.array_split(np.arange(i), levels)
        q = np.zeros(i)
        for c in chunks:
            nz = nonzero[c]
            if nz.any():
                q[c[nz]] = p[c].sum() / nz.sum()
        ps, qs = p / p.sum(), q / max(q.sum(), 1e-12)
        m = nonzero & (qs > 0)
        kl = float(np.sum(ps[m] * np.log(ps[m] / qs[m]))) + (np.inf if (nonzero & (qs == 0)).any() else 0.0)
        if kl < best:
            best, best_i = kl, i
    return float(best_i * amax / BINS)


def insert_qdq(model: onnx.ModelProto, ops: list[WeightOp], ranges: dict[str, float]) -> onnx.ModelProto:
    """Q/DQ on the activation (per-tensor) and weight (per-channel, stored int8) of each op."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    g = out.graph
    inits = {i.name: i for i in g.initializer}
    nodes = {n.name: n for n in g.node}
    new_nodes: dict[str, list[onnx.NodeProto]] = {}
    done_acts: dict[str, str] = {}
    for op in ops:
        before = new_nodes.setdefault(op.node, [])
        if op.activation not in done_acts:
            scale = max(ranges[op.activation], 1e-8) / 127.0
            s, z = f"{op.activation}_qscale", f"{op.activation}_qzero"
            g.initializer.extend([numpy_helper.from_array(np.array(scale, np.float32), s),
                                  numpy_helper.from_array(np.array(0, np.int8), z)])
            q, dq = f"{op.activation}_q", f"{op.activation}_dq"
            before += [helper.make_node("QuantizeLinear", [op.activation, s, z], [q], name=f"{op.node}_act_q"),
                       helper.make_node("DequantizeLinear", [q, s, z], [dq], name=f"{op.node}_act_dq")]
            done_acts[op.activation] = dq
        w = numpy_helper.to_array(inits[op.weight]).astype(np.float32)
        amax = np.abs(w).max(axis=1 - op.axis)
        wscale = (np.maximum(amax, 1e-8) / 127.0).astype(np.float32)
        shape = [1, 1]
        shape[op.axis] = -1
        wq = np.clip(np.round(w / wscale.reshape(shape)), -127, 127).astype(np.int8)
        qn, sn, zn, dqn = f"{op.weight}_int8", f"{op.weight}_wscale", f"{op.weight}_wzero", f"{op.weight}_dq"
        g.initializer.extend([numpy_helper.from_array(wq, qn), numpy_helper.from_array(wscale, sn),
                              numpy_helper.from_array(np.zeros_like(wscale, dtype=np.int8), zn)])
        before.append(helper.make_node("DequantizeLinear", [qn, sn, zn], [dqn], name=f"{op.node}_w_dq", axis=op.axis))
        node = nodes[op.node]
        node.input[0], node.input[1] = done_acts[op.activation], dqn
    ordered = []
    for n in g.node:
        ordered += new_nodes.get(n.name, []) + [n]
    del g.node[:]
    g.node.extend(ordered)
    used = {i for n in g.node for i in n.input}
    keep = [i for i in g.initializer if i.name in used]
    del g.initializer[:]
    g.initializer.extend(keep)
    return out


def check_qdq(model: onnx.ModelProto) -> list[str]:
    """TensorRT's rules, checked: every zero point is 0 and int8; weights are per-channel."""
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    problems = []
    for n in model.graph.node:
        if n.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        zp = inits.get(n.input[2]) if len(n.input) > 2 else None
        if zp is None or zp.dtype != np.int8 or np.any(zp != 0):
            problems.append(f"{n.name}: zero point is not int8 zero")
        if n.input[0] in inits and inits[n.input[0]].dtype == np.int8 and inits[n.input[1]].ndim != 1:
            problems.append(f"{n.name}: weight scale is not per-channel")
    return problems

