"""``fbinfer bench``: speed and Rank@K drift of every backend and precision against torch fp32.

Per model, the reference (torch fp32 eager) is evaluated on the ``fbinfer eval`` candidate lists;
every other variant is evaluated on the same pairs (drift: Rank@K differences in points, top-1
agreement, Spearman's rho per query, |delta logit|) and timed on the same real batches (pairs/s,
latency p50/p95/p99, percent of the machine's peak measured in the same run).
"""
from __future__ import annotations

import platform
import resource
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from fbinfer.bench.drift import drift
from fbinfer.bench.flops import flops_per_pair
from fbinfer.bench.measure import peak_flops, time_runner
from fbinfer.data.features import FeatureStore, torch_threads
from fbinfer.data.source import DataSource, load_data
from fbinfer.errors import FbinferError
from fbinfer.evaluation.evaluate import RunnerScorer, eval_pairs, report, score_matrices, score_pairs
from fbinfer.export.bundle import ExportConfig, default_bundle_dir, export_bundle, training_data, versions
from fbinfer.export.graphs import export_plain
from fbinfer.export.io_spec import make_feeds
from fbinfer.fileio import read_json
from fbinfer.model.checkpoint import Checkpoint, load_checkpoint
from fbinfer.runtime.runners import OnnxRuntimeRunner, Runner, TorchRunner

REFERENCE = "torch-fp32"


@dataclass(frozen=True)
class Variant:
    key: str  # what --backends names
    backend: str
    precision: str
    variant: str
    timed: bool = True  # False: numerics only (a TensorRT graph run through ONNX Runtime)


VARIANTS = (
    Variant(REFERENCE, "torch", "fp32", "eager"),
    Variant("torch-bf16", "torch", "bf16", "eager"),
    Variant("torch-fp16", "torch", "fp16", "eager (CUDA only)"),
    Variant("torch-compile", "torch", "fp32", "torch.compile"),
    Variant("ort-plain", "onnxruntime", "fp32", "plain export"),
    Variant("ort-fused", "onnxruntime", "fp32", "fused"),
    Variant("ort-int8", "onnxruntime", "int8", "cpu int8"),
    Variant("trt-fp16-graph", "tensorrt graph in onnxruntime", "fp16", "numerics only", timed=False),
    Variant("trt-int8-graph", "tensorrt graph in onnxruntime", "int8", "numerics only", timed=False),
    Variant("tensorrt-fp16", "tensorrt", "fp16", "engine"),
    Variant("tensorrt-int8", "tensorrt", "int8", "engine"),
)
KEYS = tuple(v.key for v in VARIANTS)


@dataclass(frozen=True)
class BenchConfig:
    batches: tuple[int, ...] = (1, 8, 64, 256)
    backends: tuple[str, ...] | None = None  # None: everything available here
    queries: int | None = None  # per direction; None: all (at most 1,000), as fbinfer eval
    min_seconds: float = 3.0
    min_iters: int = 10

    def validate(self) -> BenchConfig:
        for b in self.batches:
            if b < 1:
                raise FbinferError(f"--batch: batch sizes must be >= 1, got {b}")
        for k in self.backends or ():
            if k not in KEYS:
                raise FbinferError(f"--backends: unknown backend {k!r} (choose from {', '.join(KEYS)})")
        return self


@dataclass
class ModelBench:
    name: str
    checkpoint: Path
    bundle: Path
    data: DataSource
    ck: Checkpoint = field(repr=False)


def resolve(model: Path, data: Path | None) -> ModelBench:
    """A checkpoint (exported on the fly into MODEL.bundle, reused later) or a bundle folder."""
    if model.is_dir():
        manifest = read_json(model / "manifest.json") if (model / "manifest.json").is_file() else None
        if manifest is None:
            raise FbinferError(f"{model}: not a bundle (no manifest.json) and not a checkpoint")
        checkpoint, bundle = Path(manifest["source"]["checkpoint"]), model
    else:
        checkpoint, bundle = model, default_bundle_dir(model)
    ck = load_checkpoint(checkpoint)
    src = load_data(training_data(ck, checkpoint, data))
    if not (bundle / "manifest.json").is_file():
        export_bundle(checkpoint, src, bundle, ExportConfig(parity_queries=4))
    return ModelBench(checkpoint.stem, checkpoint, bundle, src, ck)


def runner_for(v: Variant, mb: ModelBench, manifest: dict) -> tuple[Runner | None, str]:
    """The runner of a variant, or (None, why it is not available here)."""
    graphs, cuda = manifest["graphs"], torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    if v.key == REFERENCE:
        return TorchRunner(mb.ck.model, device=device), ""
    if v.key == "torch-bf16":
        return TorchRunner(_copy(mb), device=device, dtype=torch.bfloat16, name="torch-bf16"), ""
    if v.key == "torch-fp16":
        if not cuda:
            return None, "no CUDA device (CPU fp16 matmuls are not a serving target)"
        return TorchRunner(_copy(mb), device=device, dtype=torch.float16, name="torch-fp16"), ""
    if v.key == "torch-compile":
        return _compiled(mb, device)
    if v.key == "ort-plain":
        plain = mb.bundle / "bench" / "plain.fp32.onnx"
        if not plain.is_file():
            plain.parent.mkdir(exist_ok=True)
            export_plain(mb.ck.model, plain, manifest["max_batch"])
        return OnnxRuntimeRunner(plain), ""
    name = {"ort-fused": "ort.fp32", "ort-int8": "ort.int8", "trt-fp16-graph": "trt.fp16", "trt-int8-graph": "trt.int8"}.get(v.key)
    if name:
        if name not in graphs:
            return None, f"the bundle has no {name} graph (re-export with that precision)"
        return OnnxRuntimeRunner(mb.bundle / graphs[name]["file"]), ""
    precision = v.precision
    if precision not in manifest.get("engines", {}):
        return None, f"no TensorRT {precision} engine in the bundle (fbinfer build {mb.bundle} --precision {precision})"
    try:
        from fbinfer.engines.tensorrt import TensorRTRunner

        return TensorRTRunner(mb.bundle / manifest["engines"][precision]["file"], manifest["engines"][precision], mb.bundle).activate(), ""
    except FbinferError as e:
        return None, str(e)


def _copy(mb: ModelBench):
    return load_checkpoint(mb.checkpoint).model


def _compiled(mb: ModelBench, device: str) -> tuple[Runner | None, str]:
    model = _copy(mb).to(device)
    runner = TorchRunner(model, device=device, name="torch-compile")
    try:
        runner.model = torch.compile(model, dynamic=True)
        probe = make_feeds(mb.ck.tokenizer(), np.zeros((2, mb.ck.config.num_patches, mb.ck.config.patch_feature_dim), np.float32), ["a", "b"])
        runner.infer(probe)
    except Exception as e:  # noqa: BLE001 - inductor fails in many ways (no compiler, unsupported op)
        return None, f"torch.compile failed here ({type(e).__name__}: {str(e).splitlines()[0][:100]})"
    return runner, ""


def timing_feeds(mb: ModelBench, store: FeatureStore, pairs: list[tuple[int, int]], batch: int) -> dict[str, np.ndarray]:
    """``batch`` real test pairs spread over the caption lengths (``pairs`` is sorted by length),
    padded to the longest."""
    pick = [pairs[int(i)] for i in np.linspace(0, len(pairs) - 1, batch)]
    texts = [mb.data.test[t].text for t, _ in pick]
    return make_feeds(mb.ck.tokenizer(), store.get([mb.data.test[i] for _, i in pick]).numpy(), texts)


def peaks() -> dict[str, float]:
    """FLOP/s of one large matmul per precision, measured now (the ceiling for percent of peak)."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    out = {"fp32": peak_flops(torch.float32, device=device), "bf16": peak_flops(torch.bfloat16, device=device)}
    if device == "cuda":
        out["fp16"] = peak_flops(torch.float16, device=device)
    try:
        out["int8"] = peak_flops(torch.int8, device=device)
    except RuntimeError:  # torch._int_mm has no kernel for this device/shape
        pass
    return out


def bench(models: list[Path], data: Path | None, bc: BenchConfig, progress: Callable[[str], None] = print) -> dict:
    bc = bc.validate()
    torch_threads()
    machine = {"cpu_threads": torch.get_num_threads(), "platform": platform.platform(), "processor": platform.processor(),
               "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None, "versions": versions()}
    progress("measuring the machine's peak (one large matmul per precision)")
    machine["peak_flops"] = peaks()
    results, skipped = [], {}
    for model in models:
        mb = resolve(model, data)
        manifest = read_json(mb.bundle / "manifest.json")
        too_big = [b for b in bc.batches if b > manifest["max_batch"]]
        if too_big:
            raise FbinferError(f"--batch {too_big[0]}: above the bundle's max batch {manifest['max_batch']} ({mb.bundle})")
        store = FeatureStore(mb.data, mb.ck.config).ensure(mb.data.test)
        pairs = eval_pairs(mb.data, bc.queries)
        every_pair = eval_pairs(mb.data)
        feeds = {b: timing_feeds(mb, store, every_pair, b) for b in bc.batches}
        ref_report = ref_mats = None
        for v in VARIANTS:
            if bc.backends is not None and v.key not in bc.backends and v.key != REFERENCE:
                continue
            runner, why = runner_for(v, mb, manifest)
            if runner is None:
                skipped[f"{mb.name}/{v.key}"] = why
                continue
            progress(f"{mb.name}: {v.key}")
            with runner:
                scores = score_pairs(RunnerScorer(runner, mb.ck.tokenizer(), store), mb.data, pairs, desc=f"{v.key}: eval pairs")
                rep, mats = report(mb.data, scores, bc.queries), score_matrices(mb.data, scores, bc.queries)
                if v.key == REFERENCE:
                    ref_report, ref_mats = rep, mats
                base = {"model": mb.name, "backend": v.backend, "precision": v.precision, "variant": v.variant, "key": v.key,
                        "rank": rep}
                if v.key != REFERENCE:
                    base["drift"] = drift(ref_report, rep, ref_mats, mats)
                if not v.timed:
                    results.append({**base, "batch": None})
                    continue
                for b, f in feeds.items():
                    t = time_runner(runner, f, min_iters=bc.min_iters, min_seconds=bc.min_seconds)
                    text_len = float(f["attention_mask"].sum(1).mean())
                    peak = machine["peak_flops"].get(v.precision, machine["peak_flops"]["fp32"])
                    results.append({**base, "batch": b, "pairs_per_s": round(t.pairs_per_s, 2), "latency_ms": t.latency(),
                                    "iterations": t.iterations, "threads": torch.get_num_threads(),
                                    "pct_of_peak": round(100 * flops_per_pair(mb.ck.config, round(text_len)) * t.pairs_per_s / peak, 2),
                                    "peak_precision": v.precision if v.precision in machine["peak_flops"] else "fp32"})
    machine["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return {"machine": machine, "config": {"batches": list(bc.batches), "queries": bc.queries, "min_seconds": bc.min_seconds},
            "results": results, "skipped": skipped}
