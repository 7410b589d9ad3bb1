"""``fbinfer build``: a TensorRT engine from a bundle's graph (``fbinfer.backends.tensorrt`` runs it).

Written against NVIDIA's documented Python API for TensorRT 10.12+ and 11.x and kept thin:
strongly typed networks (the precision is the ONNX graph's own: FP16 tensors, Q/DQ for INT8;
TensorRT 11 removed BuilderFlag.FP16/INT8 and the calibrators), one optimization profile over
batch and text length, an optional timing cache. TensorRT cannot be installed on the machines
this project is developed on, so this module has NOT been run; the profile shapes, the manifest
record and the error paths around it are tested.
"""
from __future__ import annotations

import time
from pathlib import Path

from fbinfer.backends.tensorrt import PRECISIONS, require_tensorrt, this_gpu
from fbinfer.bundle import Bundle, engine_file
from fbinfer.errors import EngineError, FbinferError
from fbinfer.fileio import atomic_path

OPT_BATCH = 64  # the batch the kernels are tuned for
WORKSPACE_MB = 4096


def build_engine(folder: Path, precision: str, max_batch: int | None = None, opt_batch: int = OPT_BATCH,
                 workspace_mb: int = WORKSPACE_MB, timing_cache: Path | None = None) -> dict:
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
        raise EngineError(f"{graph.name}: TensorRT's ONNX parser failed: {listed}")
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
        raise EngineError(f"{graph.name}: TensorRT could not build an engine (see the TensorRT log above)")
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
