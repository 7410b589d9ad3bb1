"""INT8 for ONNX Runtime on CPU: dynamic quantization or u8s8 static Q/DQ, chosen by measurement.

TensorRT's symmetric s8s8 Q/DQ graph is the wrong CPU artefact (ONNX Runtime runs many of its
MatMuls in float around DequantizeLinear: slower than FP32 in our probe), so the CPU gets its own
variant. Both candidates are built and timed on the same batch at export; the faster one ships
unless its drift is more than twice the other's. Both measurements go into the manifest.

Both quantize weights per output channel and keep the same parts in float as the TensorRT INT8
graph (``CalibrationConfig.exclude``: embeddings, head, layer 0 by default). Measured on the
6-layer teacher (README, "CPU INT8 on the default teacher"): per-tensor weights over every
MatMul moved image -> text Rank@1 by 8 points; per-channel weights cut the mean |delta logit|
3.5x, and keeping layer 0 (fed by the raw text and patch embeddings) in float cut it further
at about 10 % of the speed-up.
"""
from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np
import onnx

from fbinfer.export.int8 import weight_ops
from fbinfer.runtime.runners import OnnxRuntimeRunner

METHODS = {"max": "MinMax", "percentile": "Percentile", "entropy": "Entropy"}
CPU_INT8_KINDS = ("auto", "dynamic", "qdq")


def excluded_nodes(graph: Path, groups: tuple[str, ...]) -> list[str]:
    """Names to keep out of INT8: the weight MatMul/Gemm nodes of ``graph`` in the excluded groups
    (embeddings, head, layer:N). ONNX Runtime's quantizer first rewrites each Gemm as MatMul + Add
    named ``<gemm>_MatMul``, so that name is excluded too."""
    ops = [o for o in weight_ops(onnx.load(str(graph), load_external_data=False)) if o.group in groups]
    return [o.node for o in ops] + [f"{o.node}_MatMul" for o in ops]


def float_matmuls(graph: Path) -> list[str]:
    """The MatMul/Gemm nodes of a quantized graph whose weight is still a float constant, for the manifest."""
    return [o.node for o in weight_ops(onnx.load(str(graph), load_external_data=False))]


def quantize_dynamic_int8(fused_fp32: Path, out: Path, exclude: tuple[str, ...]) -> list[str]:
    """Weights int8 per channel ahead of time, activations quantized per batch at run time
    (MatMulInteger); returns the MatMuls left in float."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

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
