"""INT8 for OpenVINO, made by NNCF (OpenVINO's own post-training quantizer).

``nncf.quantize`` with ``model_type=TRANSFORMER`` on the FP32 graph, calibrated on real pairs; the
parts in ``CalibrationConfig.exclude`` go into its ignored scope. NNCF's ONNX backend writes
standard QuantizeLinear/DequantizeLinear, which OpenVINO reads as its FakeQuantize: the bundle keeps
one ONNX file per graph, checked by ``onnx.checker`` like the others.
"""
from __future__ import annotations

import numpy as np
import onnx

from fbinfer.errors import FbinferError, first_line
from fbinfer.export.config import CalibrationConfig
from fbinfer.export.graphs import quiet
from fbinfer.export.qdq import excluded_matmuls, quantizer_version

NNCF_MISSING = "NNCF is not installed: pip install 'fbinfer[openvino]' (nncf>=3.4)"
SCHEME = "NNCF TRANSFORMER preset: symmetric int8 weights per output channel; activations per tensor"


def nncf_version() -> str:
    return quantizer_version("nncf", NNCF_MISSING)


def quantize_openvino(fp32: onnx.ModelProto, feeds: list[dict[str, np.ndarray]], cc: CalibrationConfig) -> onnx.ModelProto:
    """``fp32`` quantized by NNCF for OpenVINO, ``cc.exclude`` left in float."""
    nncf_version()
    import nncf

    if not feeds:
        raise FbinferError("INT8 calibration: no calibration batches (calibration data too small)")
    ignored = nncf.IgnoredScope(names=excluded_matmuls(fp32, cc.exclude), validate=False)
    try:
        with quiet("nncf"):
            return nncf.quantize(fp32, nncf.Dataset(feeds), model_type=nncf.ModelType.TRANSFORMER, ignored_scope=ignored,
                                 subset_size=len(feeds))  # NNCF counts dataset items (our batches), not pairs
    except Exception as e:  # noqa: BLE001 - NNCF raises plain exceptions of every kind; name the step and its first line
        raise FbinferError(f"export failed: NNCF's INT8 quantization: {first_line(e)}") from None
