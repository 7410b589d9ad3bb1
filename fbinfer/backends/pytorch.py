"""PyTorch: the reference model (fp32 eager on CPU), bf16/fp16, ``torch.compile`` and torch's own
dynamic INT8 quantization of the Linear layers (the last two are the bench's peers: what a user
would try without fbinfer)."""
from __future__ import annotations

import warnings

import numpy as np

from fbinfer.backends.base import Runner
from fbinfer.bundle.io_spec import INPUT_NAMES, LOGIT, input_specs
from fbinfer.errors import BackendUnavailable, FbinferError, first_line

PRECISIONS = ("fp32", "bf16", "fp16", "int8")
RUNS = "checkpoint"
LENGTH_GROUPS = 4  # sub-batches by caption length: 4 measured 1.26x (student) and 1.54x (teacher) on torch bf16 (docs/results/length_groups.md)


def unavailable() -> str | None:
    return None  # torch is a dependency of fbinfer


class TorchRunner(Runner):
    """A FashionBert on ``device`` in ``dtype`` (int8: ``quantize_dynamic`` on the Linear layers)."""

    def __init__(self, model, device: str = "cpu", precision: str = "fp32", compile: bool = False, name: str | None = None):
        super().__init__(name or f"torch-{precision}-{device}" + ("-compile" if compile else ""), input_specs(model.config))
        self.model, self.device, self.precision, self.compile = model.eval(), device, precision, compile

    def activate_impl(self) -> None:
        import torch

        if self.precision == "int8":
            with warnings.catch_warnings():  # torch.ao is deprecated in favour of torchao; it is still what a user tries first
                warnings.simplefilter("ignore")
                self.model = torch.ao.quantization.quantize_dynamic(self.model.float(), {torch.nn.Linear}, dtype=torch.qint8)
        else:
            self.model.to(device=self.device, dtype=dtype(self.precision))
        if self.compile:
            self.model = torch.compile(self.model, dynamic=True)

    def infer_impl(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        with torch.inference_mode():
            ids, mask, patches = (torch.from_numpy(np.ascontiguousarray(feeds[n])).to(self.device) for n in INPUT_NAMES)
            logit = self.model(ids, mask, patches.to(dtype(self.precision))).logit
        return {LOGIT: logit.float().cpu().numpy()}

    def describe(self) -> dict[str, str]:
        return {"precision": self.precision, "device": self.device, "compile": str(self.compile)}


def dtype(precision: str):
    """The dtype of weights and activations (int8 is dynamic quantization: float activations)."""
    import torch

    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)


def runner(source, precision: str, device: str | None = None, compile: bool = False, fresh: bool = False) -> TorchRunner:
    """``source``: a Checkpoint, or a Bundle (its source checkpoint). ``fresh``: a copy of the
    weights of its own (a runner converts its model's dtype in place)."""
    import torch

    from fbinfer.bundle import Bundle
    from fbinfer.model.checkpoint import load_checkpoint

    ck = source.load_source() if isinstance(source, Bundle) else source
    # dynamic INT8 has CPU kernels only, so it stays on the CPU of a GPU machine unless told otherwise
    device = device or ("cuda" if torch.cuda.is_available() and precision != "int8" else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise BackendUnavailable("device 'cuda': this torch has no CUDA device (install a CUDA build of torch on a GPU machine)")
    if device not in ("cpu",) and not device.startswith("cuda"):
        raise FbinferError(f"device {device!r}: the torch backend runs on 'cpu' or 'cuda'")
    if precision == "fp16" and device == "cpu":
        raise BackendUnavailable("precision fp16 on torch needs a CUDA device (CPU fp16 matmuls are slow and not a serving "
                                 "target); use bf16 or fp32 here")
    if precision == "int8" and device != "cpu":
        raise FbinferError("precision int8 on the torch backend is dynamic quantization, which runs on the CPU only")
    model = load_checkpoint(ck.path).model if fresh else ck.model
    r = TorchRunner(model, device=device, precision=precision, compile=compile)
    if compile:
        try:
            from fbinfer.bundle.io_spec import example_feeds

            r.activate().infer(example_feeds(ck.config, batch=2, text_len=8))
        except Exception as e:  # noqa: BLE001 - inductor fails in many ways (no compiler, unsupported op)
            raise BackendUnavailable(f"torch.compile failed here ({type(e).__name__}: {first_line(e, 100)})") from None
    return r
