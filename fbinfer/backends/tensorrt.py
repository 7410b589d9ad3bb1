"""TensorRT: engines built from a bundle's graphs, and a runner that serves them.

Written against NVIDIA's documented Python API for TensorRT 10.12+ and 11.x and kept thin:
strongly typed networks (the precision is the ONNX graph's own: FP16 tensors, Q/DQ for INT8;
TensorRT 11 removed BuilderFlag.FP16/INT8 and the calibrators), one optimization profile over
batch and text length, an optional timing cache. TensorRT cannot be installed on the machines
this project is developed on, so this module has NOT been run; everything around it (the
graphs, the manifest records, the version/GPU checks, the error paths) is tested.

Device buffers are torch CUDA tensors (``set_tensor_address(name, t.data_ptr())``) on a torch
CUDA stream: torch is already a dependency and shares its CUDA context with TensorRT, where
pycuda ships no wheels and creates its own context that conflicts with PyTorch's (NVIDIA's own
samples moved to cuda-python). CUDA graphs are not used (not measurable here).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from fbinfer.backends.base import Runner
from fbinfer.bundle import Bundle, engine_file
from fbinfer.errors import FbinferError
from fbinfer.fileio import atomic_path

PRECISIONS = ("fp32", "fp16", "int8")
RUNS = "bundle"
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


def require_tensorrt() -> Any:
    """The tensorrt module, or one line saying what is missing."""
    why = unavailable()
    if why:
        raise FbinferError(why)
    import tensorrt as trt

    return trt


def this_gpu() -> dict[str, str]:
    import torch

    major, minor = torch.cuda.get_device_capability()
    return {"gpu": torch.cuda.get_device_name(), "compute_capability": f"{major}.{minor}"}


def check_engine_record(record: dict, tensorrt_version: str, gpu: dict[str, str], bundle: Path) -> None:
    """Engines only run on the GPU model and TensorRT version that built them: say what to do."""
    built = (record.get("tensorrt"), record.get("gpu"), record.get("compute_capability"))
    here = (tensorrt_version, gpu["gpu"], gpu["compute_capability"])
    if built != here:
        raise FbinferError(f"{record.get('file')}: built for {built[1]} (sm {built[2]}) with TensorRT {built[0]}, "
                           f"but this is {here[1]} (sm {here[2]}) with TensorRT {here[0]}; rebuild it: "
                           f"fbinfer build {bundle} --precision {record.get('precision')}")


def build_engine(folder: Path, precision: str, max_batch: int | None = None, opt_batch: int = 64,
                 workspace_mb: int = 4096, timing_cache: Path | None = None) -> dict:
    """Parse the bundle's TensorRT graph of ``precision``, build, write its engine, record it in the manifest."""
    bundle = Bundle.open(folder)
    if precision not in PRECISIONS:
        raise FbinferError(f"--precision {precision!r}: TensorRT engines are {', '.join(PRECISIONS)}")
    graph = bundle.graph("tensorrt", precision)
    max_batch = max_batch or bundle.max_batch
    if not 1 <= opt_batch <= max_batch:
        raise FbinferError(f"--opt-batch {opt_batch} must be within 1..--max-batch {max_batch}")
    trt = require_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    strongly_typed = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)  # always on (flag accepted) in 11
    network = builder.create_network(0 if strongly_typed is None else 1 << int(strongly_typed))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(graph)):
        errors = [parser.get_error(i) for i in range(parser.num_errors)]
        listed = "; ".join(f"node {e.node_name() or e.node()} ({e.node_operator()}): {e.desc()}" for e in errors[:5])
        raise FbinferError(f"{graph.name}: TensorRT's ONNX parser failed: {listed}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    profile = builder.create_optimization_profile()
    shapes = profile_shapes(bundle.manifest, max_batch, opt_batch)
    for name, (lo, opt, hi) in shapes.items():
        profile.set_shape(name, lo, opt, hi)
    config.add_optimization_profile(profile)
    if timing_cache is not None:
        cache = config.create_timing_cache(timing_cache.read_bytes() if timing_cache.is_file() else b"")
        config.set_timing_cache(cache, ignore_mismatch=False)
    t0 = time.perf_counter()
    blob = builder.build_serialized_network(network, config)
    if blob is None:
        raise FbinferError(f"{graph.name}: TensorRT could not build an engine (see the TensorRT log above)")
    seconds = time.perf_counter() - t0
    plan = bundle.folder / engine_file(precision)
    with atomic_path(plan) as tmp:
        tmp.write_bytes(bytes(blob))
    if timing_cache is not None:
        with atomic_path(timing_cache) as tmp:
            tmp.write_bytes(bytes(config.get_timing_cache().serialize()))
    record = {"graph": graph.name, "tensorrt": trt.__version__, **this_gpu(),
              "profile": {k: [list(s) for s in v] for k, v in shapes.items()}, "build_seconds": round(seconds, 1),
              "workspace_mb": workspace_mb}
    bundle.record_engine(precision, record)
    return bundle.engines()[precision]


def profile_shapes(manifest: dict, max_batch: int, opt_batch: int) -> dict[str, tuple[tuple[int, ...], ...]]:
    """(min, opt, max) per input from the manifest's declared axes: batch 1..max, text 2..max length."""
    text = manifest["config"]["max_text_len"]
    sizes = {"batch": (1, opt_batch, max_batch), "text_len": (2, text // 2, text)}
    out = {}
    for spec in manifest["inputs"]:
        out[spec["name"]] = tuple(tuple(sizes[a][i] if a in sizes else int(a) for a in spec["axes"]) for i in range(3))
    return out


class TensorRTRunner(Runner):
    """One engine, one execution context, one CUDA stream; inputs and outputs are torch CUDA tensors."""

    def __init__(self, plan: Path, record: dict, bundle: Path):
        """``plan``: the engine file; ``record``: its manifest record; ``bundle``: the folder (for messages)."""
        self.plan, self.record, self.bundle = Path(plan), record, Path(bundle)
        self.name = f"tensorrt:{self.plan.name}"
        self.context = None

    def activate(self) -> TensorRTRunner:
        if self.context is not None:
            return self
        trt = require_tensorrt()
        import torch

        check_engine_record(self.record, trt.__version__, this_gpu(), self.bundle)
        if not self.plan.is_file():
            raise FbinferError(f"{self.plan}: engine file missing; rebuild it: fbinfer build {self.bundle} --precision {self.record['precision']}")
        self.trt, self.torch = trt, torch
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.engine = trt.Runtime(self.logger).deserialize_cuda_engine(self.plan.read_bytes())
        if self.engine is None:
            raise FbinferError(f"{self.plan}: TensorRT could not deserialize the engine; rebuild it: fbinfer build {self.bundle}")
        self.context = self.engine.create_execution_context()
        self.stream = torch.cuda.Stream()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        return self

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.activate()
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
                raise FbinferError(f"{self.plan}: TensorRT execution failed")
        self.stream.synchronize()
        return {n: t.float().cpu().numpy() for n, t in out.items()}

    def deactivate(self) -> None:
        self.context = None
        self.engine = None


def runner(bundle: Bundle, precision: str, device: str | None = None) -> TensorRTRunner:
    """The bundle's TensorRT engine of ``precision`` (built by ``fbinfer build``)."""
    if device not in (None, "cuda") and not str(device).startswith("cuda"):
        raise FbinferError(f"device {device!r}: TensorRT runs on 'cuda'")
    plan, record = bundle.engine(precision)
    return TensorRTRunner(plan, record, bundle.folder)
