"""What ``fbinfer bench`` runs and how: the rows (``VARIANTS``), the drift set's size and looks,
and the bench's options. Plain dataclasses, cheap to import: the CLI takes its defaults from here."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fbinfer.errors import FbinferError

REFERENCE = "torch-fp32"
PLAIN = "plain"  # the graph a user would export without fbinfer: FashionBert.forward traced as it is
PLAIN_DYNAMIC_INT8 = "plain-dynamic-int8"  # that graph through ONNX Runtime's quantize_dynamic (fbinfer.bench.peers)
PLAIN_NNCF_INT8 = "plain-nncf-int8"  # that graph through NNCF's post-training INT8 for OpenVINO


@dataclass(frozen=True)
class Variant:
    """One bench row: a backend at a precision, with runner options."""

    key: str  # what --backends names
    backend: str  # a registry name
    precision: str
    variant: str  # what it is, for people
    peer: bool = False  # what a user runs without fbinfer
    timed: bool = True  # False: numerics only (a TensorRT graph run through ONNX Runtime on the CPU)
    graph: tuple[str, str] | str | None = None  # (target, precision) of a bundle graph, or PLAIN
    options: tuple[tuple[str, Any], ...] = ()
    tuned: bool = False  # the plan fbinfer tune chose (its precision, graph and hints); skipped where there is none


VARIANTS = (
    Variant(REFERENCE, "torch", "fp32", "eager", peer=True),
    Variant("torch-bf16", "torch", "bf16", "eager"),
    Variant("torch-fp16", "torch", "fp16", "eager (CUDA only)"),
    Variant("torch-compile", "torch", "fp32", "torch.compile", peer=True, options=(("compile", True),)),
    Variant("torch-int8-dynamic", "torch", "int8", "quantize_dynamic on Linear", peer=True),
    Variant("ort-plain", "onnxruntime", "fp32", "plain export", peer=True, graph=PLAIN),
    Variant("ort-plain-dynamic-int8", "onnxruntime", "int8", "plain export, quantize_dynamic", peer=True, graph=PLAIN_DYNAMIC_INT8),
    Variant("ort-fused", "onnxruntime", "fp32", "fused"),
    Variant("ort-int8", "onnxruntime", "int8", "cpu int8"),
    Variant("ov-default", "openvino", "fp32", "plain export, OpenVINO's defaults", peer=True, graph=PLAIN,
            options=(("hints", {}), ("streams", 1))),
    Variant("ov-plain-nncf-int8", "openvino", "int8", "plain export, NNCF INT8 (TRANSFORMER), OpenVINO's defaults", peer=True,
            graph=PLAIN_NNCF_INT8, options=(("hints", {}), ("streams", 1))),
    Variant("ov-fp32", "openvino", "fp32", "f32 hint"),
    Variant("ov-bf16", "openvino", "bf16", "bf16 hint"),
    Variant("ov-int8", "openvino", "int8", "NNCF graph, f32 elsewhere"),
    Variant("ov-int8-bf16", "openvino", "int8", "NNCF graph, bf16 elsewhere", options=(("hints", {"INFERENCE_PRECISION_HINT": "bf16"}),)),
    Variant("ov-tuned", "openvino", "tuned", "fbinfer tune's plan", tuned=True),
    Variant("ort-tuned", "onnxruntime", "tuned", "fbinfer tune's plan", tuned=True),
    Variant("trt-fp16-graph", "onnxruntime", "fp16", "numerics only", timed=False),
    Variant("trt-int8-graph", "onnxruntime", "int8", "numerics only", timed=False, graph=("tensorrt", "int8")),
    Variant("tensorrt-fp16", "tensorrt", "fp16", "engine"),
    Variant("tensorrt-int8", "tensorrt", "int8", "engine"),
)
KEYS = tuple(v.key for v in VARIANTS)


@dataclass(frozen=True)
class DriftSetConfig:
    """The drift set's size (fbinfer.bench.driftset) and when a row may stop (fbinfer.bench.drift)."""

    queries: int = 1280  # per direction, at least (rounded up to whole galleries): 80 of 16, the fewest that bound
    # a path with 97 % top-1 agreement to a half-width of 1 point (0.99 at worst; docs/bench.md)
    candidates: int = 16  # gallery size: each query ranks its truth among this many products
    looks: tuple[float, ...] = (0.3, 0.5, 0.75, 1.0)  # shares of the galleries after which a row may stop: the first,
    # 384 queries, is the fewest whose interval with no query changed (upper bound 3.84 / (n + 3.84)) lies inside 1 point
    interim_z: float = 3.0  # an interim "beyond" needs 99.7 % (Haybittle-Peto); the last look decides at 95 %
    batch_size: int = 64
    seed: int = 1

    def validate(self) -> DriftSetConfig:
        if self.queries < 2:
            raise FbinferError(f"--drift-queries: must be at least 2, got {self.queries}")
        if self.candidates < 2:
            raise FbinferError(f"--drift-candidates: must be at least 2 (the truth and a negative), got {self.candidates}")
        if not self.looks or sorted(self.looks) != list(self.looks) or not 0 < self.looks[0] or self.looks[-1] != 1.0:
            raise FbinferError(f"drift set looks {self.looks}: must rise from above 0 to 1.0")
        return self


@dataclass(frozen=True)
class BenchConfig:
    batches: tuple[int, ...] = (1, 8, 64, 256)
    backends: tuple[str, ...] | None = None  # None: everything available here
    drift_set: DriftSetConfig = field(default_factory=DriftSetConfig)
    min_seconds: float = 3.0
    min_iters: int = 10
    max_drift: float = 1.0  # points of Rank@1, both directions: the drift bar
    pause_s: float = 0.05  # head-to-head: untimed sleep before each call, for the last runtime's threads to stop spinning
    length_groups: int | None = None  # fbinfer's rows score a batch as up to this many sub-batches by caption length
    # (None: each backend's LENGTH_GROUPS); the peers run it whole
    contender_share: float = 0.75  # head-to-head: the rows of each side at least this share of its fastest row's pairs/s

    def validate(self) -> BenchConfig:
        for b in self.batches:
            if b < 1:
                raise FbinferError(f"--batch: batch sizes must be >= 1, got {b}")
        for k in self.backends or ():
            if k not in KEYS:
                raise FbinferError(f"--backends: unknown backend {k!r} (choose from {', '.join(KEYS)})")
        if self.pause_s < 0:
            raise FbinferError(f"--pause-ms: must be >= 0, got {self.pause_s * 1e3:g}")
        if self.length_groups is not None and self.length_groups < 1:
            raise FbinferError(f"--length-groups: must be at least 1, got {self.length_groups}")
        if self.max_drift <= 0:
            raise FbinferError(f"--max-drift: must be positive, got {self.max_drift}")
        self.drift_set.validate()
        return self
