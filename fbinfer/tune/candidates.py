"""The plans ``fbinfer tune`` measures.

OpenVINO's: the FP32 graph with the f32 or the bf16 hint, and NNCF INT8 graphs with each of
``LADDER``'s groups kept in float, with f32 or bf16 elsewhere. ONNX Runtime's: the bundle's fused
FP32 and CPU INT8 graphs as exported. TensorRT is not tuned: it does not run on this machine, so
no candidate of it can be timed.
"""
from __future__ import annotations

from fbinfer.backends import openvino
from fbinfer.bundle.plan import Plan

# Groups kept out of INT8, from none to the export's default: the embeddings and the head feed the
# logit directly, and layer 0 reads the raw embeddings (docs/results/int8_quantizers.md).
LADDER: tuple[tuple[str, ...], ...] = ((), ("embeddings", "head"), ("embeddings", "head", "layer:0"))


def candidates(backends: tuple[str, ...], bundle_exclude: tuple[str, ...], ladder: tuple[tuple[str, ...], ...] = LADDER) -> list[Plan]:
    """Every plan of ``backends`` that can run on this CPU (bf16 only where it has bf16)."""
    out: list[Plan] = []
    if "openvino" in backends:
        rests = ("f32", "bf16") if openvino.supports_bf16() else ("f32",)
        out += [Plan("openvino", {"f32": "fp32", "bf16": "bf16"}[r], rest=r) for r in rests]
        out += [Plan("openvino", "int8", tuple(x), r) for x in dict.fromkeys([*ladder, bundle_exclude]) for r in rests]
    if "onnxruntime" in backends:
        out += [Plan("onnxruntime", "fp32"), Plan("onnxruntime", "int8", bundle_exclude)]
    return out
