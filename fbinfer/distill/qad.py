"""Quantization-aware distillation: the student learns with INT8 fake quantization in its forward
pass, so that the INT8 graph fbinfer exports from it ranks as its FP32 form does.

NVIDIA Model Optimizer's ``modelopt.torch.quantization`` puts a fake quantizer on the input
(per tensor) and the weight (per output channel) of every encoder Linear layer, symmetric INT8,
calibrated by ``max`` on a few training batches, as NNCF and Model Optimizer's ONNX quantizer
quantize those MatMuls at export. The embeddings, the pooler and the TIA head stay in float, as
the tuned plans keep them (docs/results/tune.md). Gradients pass the rounding straight through.
The checkpoint holds the plain FP32 weights (the quantizers' ranges go to the resume state): a
normal FashionBERT checkpoint, exported and quantized as any other.
"""
from __future__ import annotations

import contextlib
import copy
import io
import warnings
from collections.abc import Iterable

import torch
from torch import nn

from fbinfer.distill.config import QUANTIZE
from fbinfer.errors import BackendUnavailable, FbinferError
from fbinfer.model.fashionbert import FashionBert
from fbinfer.training.objectives import PretrainBatch

SCHEME = "symmetric int8 fake quantization, weights per output channel, inputs per tensor (max), encoder Linear layers"
QUANTIZER = "_quantizer"  # the state-dict keys of Model Optimizer's quantizers contain this


def _mtq():
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # its "transformers version not tested" note
            import modelopt.torch.quantization as mtq
    except ImportError:
        raise BackendUnavailable("--quantize int8 needs NVIDIA Model Optimizer: pip install 'fbinfer[quantize]'") from None
    return mtq


def version() -> str:
    import importlib.metadata

    return importlib.metadata.version("nvidia-modelopt")


def int8_config() -> dict:
    """Model Optimizer's INT8 default (weights per channel, inputs per tensor, ``max``) on the
    encoder layers' Linear layers only."""
    cfg = copy.deepcopy(_mtq().INT8_DEFAULT_CFG)
    default = {q["quantizer_name"]: q["cfg"] for q in cfg["quant_cfg"] if "cfg" in q}
    cfg["quant_cfg"] = [{"quantizer_name": "*", "enable": False}] + [
        {"quantizer_name": f"*encoder.layer.*{kind}", "parent_class": "nn.Linear", "cfg": default[f"*{kind}"]}
        for kind in ("weight_quantizer", "input_quantizer")]
    return cfg


def fake_quantize(model: FashionBert, batches: Iterable[PretrainBatch], quantize: str = "int8") -> list[str]:
    """Put fake quantizers into ``model`` in place and calibrate them on ``batches``; returns the
    names of the Linear layers now quantized."""
    if quantize not in QUANTIZE:
        raise FbinferError(f"quantize: choose from {', '.join(QUANTIZE)}, not {quantize!r}")
    batches = list(batches)

    def calibrate(m: nn.Module) -> None:
        with torch.no_grad():
            for b in batches:
                m(b.input_ids, b.attention_mask, b.patches)

    with contextlib.redirect_stdout(io.StringIO()):  # its "Inserted N quantizers" print
        _mtq().quantize(model, int8_config(), forward_loop=calibrate)
    return quantized_layers(model)


def quantized_layers(model: nn.Module) -> list[str]:
    """Linear layers whose weight quantizer is on."""
    return [name for name, m in model.named_modules()
            if isinstance(m, nn.Linear) and getattr(getattr(m, "weight_quantizer", None), "is_enabled", False)]


def plain_copy(model: FashionBert) -> FashionBert:
    """The FP32 model without its quantizers (what the checkpoint holds). Built without drawing
    from the global RNG, which carries the training run's dropout stream."""
    with torch.random.fork_rng(devices=[]):
        plain = FashionBert(model.config)
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if QUANTIZER not in k})
    return plain.eval()


def quantizer_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The quantizers' calibrated ranges, for an exact resume."""
    return {k: v for k, v in model.state_dict().items() if QUANTIZER in k}


def restore_quantizers(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    missing = set(state) - set(model.state_dict())
    if missing:
        raise FbinferError(f"--resume: the resume state's quantizers do not fit this student ({min(missing)})")
    model.load_state_dict(state, strict=False)
