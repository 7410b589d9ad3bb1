"""OpenVINO on the CPU: the bundle's standard-ONNX FP32 graph in fp32 or bf16, and its
OpenVINO INT8 graph (Q/DQ, symmetric, calibrated and smoothed at export).

OpenVINO picks its inference precision itself: on CPUs with bf16 instructions it silently runs
bf16 unless told otherwise. Here the precision is always a choice: fp32 sets
``INFERENCE_PRECISION_HINT=f32``, bf16 sets ``bf16``, int8 runs the Q/DQ graph with
``INT8_REST`` (f32) elsewhere. ``hints={}`` gives OpenVINO's own defaults (the bench's peer row), and
the runner reads back what OpenVINO chose, so every result says what actually ran.

Throughput: OpenVINO's throughput mode picks the CPU streams (2 on 2 cores), and a batch is
split over that many infer requests run at once. At batch 64 on 2 cores that is about even with
one request on both cores (docs/serving.md); ``streams=1`` chooses the single request.
"""
from __future__ import annotations

from pathlib import Path
from types import ModuleType

import numpy as np

from fbinfer.backends import base
from fbinfer.backends.base import Runner
from fbinfer.bundle.io_spec import LOGIT, TensorSpec
from fbinfer.errors import BackendUnavailable, FbinferError

PRECISIONS = ("fp32", "bf16", "int8")
RUNS = "bundle"
LENGTH_GROUPS = 1  # whole batches: 2 sub-batches by caption length measured 1.04-1.08x on the teacher, 0.95x on the student (docs/results/length_groups.md)
INSTALL = "pip install -e '.[openvino]' (or: pip install openvino)"
HINTS = {"fp32": {"INFERENCE_PRECISION_HINT": "f32"}, "bf16": {"INFERENCE_PRECISION_HINT": "bf16"}}
# What the INT8 graph leaves unquantized runs in f32: in bf16 the logit itself is rounded to bf16's 8-bit mantissa and
# close candidates tie (docs/results/cpu_backends.md); the bench's ov-int8-bf16 row shows the faster, coarser choice.
INT8_REST = "f32"
GRAPHS = {"fp32": ("tensorrt", "fp32"), "bf16": ("tensorrt", "fp32"), "int8": ("openvino", "int8")}


def unavailable() -> str | None:
    try:
        import openvino  # noqa: F401
    except ImportError:
        return f"OpenVINO is not installed: {INSTALL}"
    return None


def require() -> ModuleType:
    return base.require("openvino", unavailable)


def supports_bf16() -> bool:
    ov = require()
    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


class OpenVINORunner(Runner):
    """An ONNX graph compiled by OpenVINO for the CPU.

    ``hints``: OpenVINO properties ({}: OpenVINO's defaults). ``streams``: None lets OpenVINO's
    throughput mode choose the streams (2 on 2 cores) and splits each batch over that many
    requests; a number sets it; 1 is one synchronous request on every core, as a plain user runs it.
    ``inputs``: the declared inputs (None: the graph's own).
    """

    def __init__(self, path: Path, hints: dict[str, str] | None = None, streams: int | None = 1, name: str | None = None,
                 outputs: tuple[str, ...] = (LOGIT,), inputs: tuple[TensorSpec, ...] | None = None):
        super().__init__(name or f"openvino:{Path(path).name}", inputs)
        self.path, self.hints, self.streams, self.outputs = Path(path), dict(hints or {}), streams, outputs

    def activate_impl(self) -> None:
        ov = require()
        core = ov.Core()
        config = dict(self.hints)
        if self.streams != 1:
            config["PERFORMANCE_HINT"] = "THROUGHPUT"
            if self.streams:
                config["NUM_STREAMS"] = str(self.streams)
        try:
            self.compiled = core.compile_model(core.read_model(str(self.path)), "CPU", config)
        except Exception as e:  # noqa: BLE001 - OpenVINO raises RuntimeError with multi-line messages
            raise FbinferError(f"{self.path}: OpenVINO cannot compile it ({_ov_first_line(e)})") from None
        if self.inputs is None:
            self.inputs = tuple(TensorSpec(p.get_any_name(), p.get_element_type().to_dtype().name,
                                           tuple(str(d) for d in p.get_partial_shape())) for p in self.compiled.inputs)
        n = 1 if self.streams == 1 else int(self.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        self.requests = [self.compiled.create_infer_request() for _ in range(n)]

    def infer_impl(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(next(iter(feeds.values())))  # every feed leads with the batch
        parts = [p for p in np.array_split(np.arange(n), min(len(self.requests), n))]
        for request, rows in zip(self.requests, parts):
            request.start_async({k: np.ascontiguousarray(v[rows[0]:rows[-1] + 1]) for k, v in feeds.items()})
        out: dict[str, list[np.ndarray]] = {name: [] for name in self.outputs}
        for request in self.requests[:len(parts)]:
            request.wait()
            for name in self.outputs:
                out[name].append(np.array(request.get_tensor(name).data, dtype=np.float32))
        return {name: np.concatenate(arrays) for name, arrays in out.items()}

    def deactivate_impl(self) -> None:
        del self.requests, self.compiled

    def describe(self) -> dict[str, str]:
        """The graph, its hints and, once active, what OpenVINO actually chose (its precision and streams)."""
        said = {"graph": self.path.name, "hints": ",".join(f"{k}={v}" for k, v in self.hints.items()) or "defaults"}
        if self.is_active:
            said |= {f"effective {k}": _text(self.compiled.get_property(k))
                     for k in ("INFERENCE_PRECISION_HINT", "NUM_STREAMS", "PERFORMANCE_HINT")}
        return said


def _text(value: object) -> str:
    """A compiled model's property as OpenVINO spells it in its hints (an element type as 'bf16', 'f32')."""
    return value.to_string() if hasattr(value, "to_string") else str(value)


def _ov_first_line(e: Exception) -> str:
    """OpenVINO's messages start with 'Exception from src/...' lines; the first line that says something."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    said = [ln for ln in lines if not ln.startswith(("Exception from", "Check '")) and not ln.endswith(".cpp")]
    return (said or lines or [type(e).__name__])[0][:160]


def hints_for(precision: str) -> dict[str, str]:
    """The properties that make ``precision`` a choice rather than OpenVINO's default."""
    if precision == "int8":
        return {"INFERENCE_PRECISION_HINT": INT8_REST}
    if precision == "bf16" and not supports_bf16():
        raise BackendUnavailable("precision bf16 on openvino: this CPU has no bf16 instructions (use fp32 or int8)")
    return HINTS[precision]


def runner(bundle, precision: str, device: str | None = None, graph: Path | None = None, hints: dict[str, str] | None = None,
           streams: int | None = None) -> OpenVINORunner:
    """The bundle's graph for ``precision`` with the hints that make it so; ``graph``, ``hints``
    and ``streams`` override (the bench's peer: a plain export, OpenVINO's defaults, 1 stream)."""
    check_device(device)
    path = graph or bundle.graph(*GRAPHS[precision])
    return OpenVINORunner(path, hints_for(precision) if hints is None else hints, streams, inputs=bundle.inputs)


def graph_runner(path: Path, outputs: tuple[str, ...], device: str | None = None) -> OpenVINORunner:
    """Any ONNX file (an extractor, an embedding tower) in f32, its inputs read from the graph."""
    check_device(device)
    return OpenVINORunner(path, hints_for("fp32"), outputs=outputs)


def check_device(device: str | None) -> None:
    if device not in (None, "cpu"):
        raise FbinferError(f"device {device!r}: fbinfer runs OpenVINO on the CPU only")
