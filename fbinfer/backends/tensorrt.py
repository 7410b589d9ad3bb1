"""TensorRT: the runner that serves an engine (``fbinfer.build.tensorrt`` builds it, as Polygraphy
keeps trt/loader.py apart from trt/runner.py).

Written against NVIDIA's documented Python API for TensorRT 10.12+ and 11.x and kept thin.
TensorRT cannot be installed on the machines this project is developed on, so this module has NOT
been run; the version/GPU checks and the error paths around it are tested.

Device buffers are torch CUDA tensors (``set_tensor_address(name, t.data_ptr())``) on a torch
CUDA stream: torch is already a dependency and shares its CUDA context with TensorRT, where
pycuda ships no wheels and creates its own context that conflicts with PyTorch's (NVIDIA's own
samples moved to cuda-python). CUDA graphs are not used (not measurable here).
"""
from __future__ import annotations

from pathlib import Path
from types import ModuleType

import numpy as np

from fbinfer.backends import base
from fbinfer.backends.base import Runner
from fbinfer.bundle import Bundle
from fbinfer.bundle.io_spec import TensorSpec
from fbinfer.errors import EngineError, FbinferError

PRECISIONS = ("fp32", "fp16", "int8")
RUNS = "bundle"
LENGTH_GROUPS = 1  # whole batches: an engine pads to BUCKETS anyway, and nothing here has timed one
BUCKETS = (16, 32, 48, 64)  # text lengths an engine sees: few shapes around its tuned profile
INSTALL = ("install TensorRT on a CUDA machine with: pip install tensorrt-cu13 (or tensorrt-cu12; "
           "the wheels come from NVIDIA's package index)")


def unavailable() -> str | None:
    """Why TensorRT cannot run here (not installed, or no CUDA GPU), or None."""
    import importlib.util

    if importlib.util.find_spec("tensorrt") is None:
        return f"TensorRT is not installed: {INSTALL}"
    import torch

    if not torch.cuda.is_available():
        return "TensorRT needs a CUDA GPU and a CUDA build of torch; none is available here"
    return None


def require_tensorrt() -> ModuleType:
    """The tensorrt module, or one line saying what is missing."""
    return base.require("tensorrt", unavailable)


def this_gpu() -> dict[str, str]:
    import torch

    major, minor = torch.cuda.get_device_capability()
    return {"gpu": torch.cuda.get_device_name(), "compute_capability": f"{major}.{minor}"}


def check_engine_record(record: dict, tensorrt_version: str, gpu: dict[str, str], bundle: Path) -> None:
    """Engines only run on the GPU model and TensorRT version that built them: say what to do."""
    built = (record.get("tensorrt"), record.get("gpu"), record.get("compute_capability"))
    here = (tensorrt_version, gpu["gpu"], gpu["compute_capability"])
    if built != here:
        raise EngineError(f"{record.get('file')}: built for {built[1]} (sm {built[2]}) with TensorRT {built[0]}, "
                           f"but this is {here[1]} (sm {here[2]}) with TensorRT {here[0]}; rebuild it: "
                           f"fbinfer build {bundle} --precision {record.get('precision')}")


class TensorRTRunner(Runner):
    """One engine, one execution context, one CUDA stream; inputs and outputs are torch CUDA tensors."""

    def __init__(self, plan: Path, record: dict, bundle: Path, inputs: tuple[TensorSpec, ...] | None = None):
        """``plan``: the engine file; ``record``: its manifest record; ``bundle``: the folder (for messages)."""
        super().__init__(f"tensorrt:{Path(plan).name}", inputs)
        self.plan, self.record, self.bundle = Path(plan), record, Path(bundle)

    def activate_impl(self) -> None:
        trt = require_tensorrt()
        import torch

        check_engine_record(self.record, trt.__version__, this_gpu(), self.bundle)
        if not self.plan.is_file():
            raise EngineError(f"{self.plan}: engine file missing; rebuild it: fbinfer build {self.bundle} --precision {self.record['precision']}")
        self.trt, self.torch = trt, torch
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.engine = trt.Runtime(self.logger).deserialize_cuda_engine(self.plan.read_bytes())
        if self.engine is None:
            raise EngineError(f"{self.plan}: TensorRT could not deserialize the engine; rebuild it: fbinfer build {self.bundle}")
        self.context = self.engine.create_execution_context()
        self.stream = torch.cuda.Stream()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]

    def infer_impl(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch, trt = self.torch, self.trt
        keep = []
        with torch.cuda.stream(self.stream):
            for name, array in feeds.items():
                want = np.dtype(trt.nptype(self.engine.get_tensor_dtype(name)))
                t = torch.from_numpy(np.ascontiguousarray(array, dtype=want)).to("cuda", non_blocking=True)
                self.context.set_input_shape(name, tuple(t.shape))
                self.context.set_tensor_address(name, t.data_ptr())
                keep.append(t)
            out = {}
            for name in self.outputs:
                dtype = getattr(torch, np.dtype(trt.nptype(self.engine.get_tensor_dtype(name))).name)
                t = torch.empty(tuple(self.context.get_tensor_shape(name)), dtype=dtype, device="cuda")
                self.context.set_tensor_address(name, t.data_ptr())
                out[name] = t
            if not self.context.execute_async_v3(self.stream.cuda_stream):
                raise EngineError(f"{self.plan}: TensorRT execution failed")
        self.stream.synchronize()
        return {n: t.float().cpu().numpy() for n, t in out.items()}

    def deactivate_impl(self) -> None:
        del self.context, self.engine


def runner(bundle: Bundle, precision: str, device: str | None = None) -> TensorRTRunner:
    """The bundle's TensorRT engine of ``precision`` (built by ``fbinfer build``)."""
    if device not in (None, "cuda") and not str(device).startswith("cuda"):
        raise FbinferError(f"device {device!r}: TensorRT runs on 'cuda'")
    plan, record = bundle.engine(precision)
    return TensorRTRunner(plan, record, bundle.folder, bundle.inputs)


def graph_runner(path: Path, outputs: tuple[str, ...], device: str | None = None) -> Runner:
    """Any other ONNX file beside an engine (the image extractor) runs in ONNX Runtime on the same GPU."""
    from fbinfer.backends import onnxruntime

    return onnxruntime.graph_runner(path, outputs, device or "cuda")
