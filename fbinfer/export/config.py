"""The export options as dataclasses, onnx- and torch-free: the CLI states its defaults from them."""
from __future__ import annotations

from dataclasses import dataclass, field

from fbinfer.bundle import TARGETS
from fbinfer.errors import FbinferError

PRECISIONS = ("fp32", "fp16", "int8")
CALIB_METHODS = ("max", "entropy")  # Model Optimizer's INT8 calibrators (ONNX Runtime's MinMax / Entropy)
CPU_INT8_KINDS = ("auto", "dynamic", "qdq")  # ONNX Runtime CPU INT8: auto takes the faster at equal drift


@dataclass(frozen=True)
class CalibrationConfig:
    # Clipping calibrators cut BERT's outlier activations and cost more than they save; the first
    # layer, fed by the raw embeddings, carries most of the remaining INT8 error. Reference:
    # docs/results/export.md (benchmarks/export_precision.py).
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
class ExportConfig:
    precisions: tuple[str, ...] = PRECISIONS
    targets: tuple[str, ...] = TARGETS
    attention: str = "matmul"
    max_batch: int = 256
    fp32_ops: tuple[str, ...] = ("LayerNormalization",)  # FP16 islands (docs/results/export.md)
    fp32_head: bool = True  # pooler + TIA logit in FP32
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)
    cpu_int8: str = "auto"
    smooth_alpha: float = 0.75  # SmoothQuant migration strength for both INT8 graphs, 0 = off (docs/export.md)
    int8_attention: bool = False  # Q/DQ on TensorRT's attention products too (INT8 MHA): more drift (docs/results/int8_quantizers.md)
    parity_queries: int = 8  # per direction, each with 101 candidates
    fp32_tolerance: float = 1e-4

    def validate(self) -> ExportConfig:
        for p in self.precisions:
            if p not in PRECISIONS:
                raise FbinferError(f"--precision: unknown precision {p!r} (choose from {', '.join(PRECISIONS)})")
        for t in self.targets:
            if t not in TARGETS:
                raise FbinferError(f"--targets: unknown target {t!r} (choose from {', '.join(TARGETS)})")
        if self.cpu_int8 not in CPU_INT8_KINDS:
            raise FbinferError(f"--cpu-int8 must be one of {', '.join(CPU_INT8_KINDS)}, not {self.cpu_int8!r}")
        if not 0 <= self.smooth_alpha <= 1:
            raise FbinferError(f"--int8-smooth must be in [0, 1] (0 = off), not {self.smooth_alpha}")
        if self.max_batch < 1:
            raise FbinferError(f"--max-batch must be >= 1, not {self.max_batch}")
        self.calibration.validate()
        return self
