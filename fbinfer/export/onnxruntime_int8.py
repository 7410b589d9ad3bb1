"""INT8 for ONNX Runtime on CPU: dynamic quantization or u8s8 static Q/DQ, chosen by measurement.

TensorRT's symmetric s8s8 Q/DQ graph is the wrong CPU artefact (ONNX Runtime runs many of its
MatMuls in float around DequantizeLinear: slower than FP32 in our probe), so the CPU gets its own
variant. Both candidates are built and timed on the same batch at export; the faster one ships
unless its drift is more than twice the other's. Both measurements go into the manifest.

Both quantize weights per output channel and keep the same parts in float as the TensorRT INT8
graph (``CalibrationConfig.exclude``: embeddings, head, layer 0 by default). Measured on the
6-layer teacher (docs/results/export.md): per-tensor weights over every
MatMul moved image -> text Rank@1 by 8 points; per-channel weights cut the mean |delta logit|
3.5x, and keeping layer 0 (fed by the raw text and patch embeddings) in float cut it further
at about 10 % of the speed-up. What remained was in the per-tensor activation scales, which a
few outlier channels stretch: ``smooth`` (SmoothQuant) moves those into the weights first.
"""
from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper
from tqdm import tqdm

from fbinfer.backends.onnxruntime import OnnxRuntimeRunner
from fbinfer.export.graphs import ROOT, quiet
from fbinfer.export.qdq import WeightOp, excluded_matmuls, probe_session, weight_ops

METHODS = {"max": "MinMax", "entropy": "Entropy"}


def excluded_nodes(graph: Path, groups: tuple[str, ...]) -> list[str]:
    """``qdq.excluded_matmuls`` of ``graph``, each Gemm also as ``<gemm>_MatMul``: ONNX Runtime's
    quantizer first rewrites each Gemm as MatMul + Add under that name."""
    model = onnx.load(str(graph), load_external_data=False)
    gemms = {n.name for n in model.graph.node if n.op_type == "Gemm"}
    names = excluded_matmuls(model, groups)
    return names + [f"{n}_MatMul" for n in names if n in gemms]


def float_matmuls(graph: Path) -> list[str]:
    """The MatMul/Gemm nodes of a quantized graph whose weight is still a float constant, for the manifest."""
    return [o.node for o in weight_ops(onnx.load(str(graph), load_external_data=False))]


def smooth(model: onnx.ModelProto, feeds: list[dict[str, np.ndarray]], exclude: tuple[str, ...],
           alpha: float) -> tuple[onnx.ModelProto, int]:
    """SmoothQuant (Xiao et al., 2023): move each activation channel's outliers into the weights
    that read it. Per input channel j of the MatMuls sharing an activation X, s_j =
    max|X_j|^alpha / max|W_j,:|^(1 - alpha); X is divided by s (one Mul) and each weight's row j
    multiplied by s_j, so the float product is unchanged but X's per-tensor INT8 scale no longer
    spends its range on a few channels. Returns the new graph and the number of Muls added."""
    matmuls = {n.name for n in model.graph.node if n.op_type == "MatMul"}  # Gemm (the head) has no row-scalable input
    floats = set(excluded_matmuls(model, exclude))
    ops = [o for o in weight_ops(model) if o.node in matmuls and o.node not in floats]
    readers: dict[str, list[WeightOp]] = {}
    for o in ops:
        readers.setdefault(o.activation, []).append(o)
    session = probe_session(model, list(readers))
    x_max = {a: 0.0 for a in readers}
    for feed in tqdm(feeds, desc="int8: smoothing statistics", unit="batch", leave=False):
        for a, x in zip(readers, session.run(list(readers), feed)):
            x_max[a] = np.maximum(x_max[a], np.abs(x).reshape(-1, x.shape[-1]).max(0))
    out = onnx.ModelProto()
    out.CopyFrom(model)
    inits = {i.name: i for i in out.graph.initializer}
    nodes = {n.name: n for n in out.graph.node}
    for a, group in readers.items():
        weights = {o.weight: numpy_helper.to_array(inits[o.weight]) for o in group}
        w_max = np.max([np.abs(w).max(1) for w in weights.values()], axis=0)
        s = np.where((x_max[a] > 0) & (w_max > 0), x_max[a] ** alpha / np.maximum(w_max, 1e-8) ** (1 - alpha), 1.0)
        s = np.clip(s, 1e-5, None).astype(np.float32)
        for name, w in weights.items():
            inits[name].CopyFrom(numpy_helper.from_array((w * s[:, None]).astype(np.float32), name))
        scale, smoothed = f"{a}_smooth_scale", f"{a}_smoothed"
        out.graph.initializer.append(numpy_helper.from_array(1.0 / s, scale))
        for o in group:
            nodes[o.node].input[0] = smoothed
        first = min(list(out.graph.node).index(nodes[o.node]) for o in group)
        out.graph.node.insert(first, helper.make_node("Mul", [a, scale], [smoothed], name=f"{a}_smooth"))
    return out, len(readers)


def quantize_dynamic_int8(fused_fp32: Path, out: Path, exclude: tuple[str, ...]) -> list[str]:
    """Weights int8 per channel ahead of time, activations quantized per batch at run time
    (MatMulInteger); returns the MatMuls left in float."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with quiet(ROOT):  # its "consider pre-processing" advice: the fused graph is already shape-inferred and optimized
        quantize_dynamic(str(fused_fp32), str(out), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"],
                         per_channel=True, nodes_to_exclude=excluded_nodes(fused_fp32, exclude))
    return float_matmuls(out)


def quantize_qdq_u8s8(fp32: Path, out: Path, feeds: list[dict[str, np.ndarray]], method: str,
                      exclude: tuple[str, ...]) -> list[str]:
    """Static Q/DQ, uint8 activations (asymmetric) x int8 per-channel weights: what ORT's CPU
    kernels (QLinearMatMul / MatMulIntegerToFloat) are fastest on."""
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(feeds)

        def get_next(self):
            return next(self.it, None)

    with quiet(ROOT):  # as above
        quantize_static(str(fp32), str(out), Reader(), quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, per_channel=True, op_types_to_quantize=["MatMul"],
                        calibrate_method=getattr(CalibrationMethod, METHODS[method]), nodes_to_exclude=excluded_nodes(fp32, exclude))
    return float_matmuls(out)


def median_latency_ms(path: Path, feed: dict[str, np.ndarray], repeats: int = 7) -> float:
    with OnnxRuntimeRunner(path) as r:
        r.infer(feed)  # warm-up
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            r.infer(feed)
            times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def choose(candidates: dict[str, dict], kind: str) -> str:
    """The faster candidate, unless its mean |delta logit| is more than twice the other's."""
    if kind != "auto":
        return kind
    fast, slow = sorted(candidates, key=lambda k: candidates[k]["latency_ms"])
    drift = {k: candidates[k]["parity"]["mean_abs_logit_diff"] for k in candidates}
    return fast if drift[fast] <= 2 * drift[slow] + 1e-6 else slow
