"""``fbinfer bench``: speed and Rank@K drift of every backend and precision against torch fp32,
fbinfer's paths beside the peers a user would run without fbinfer, all in one run.

Per model, the reference (torch fp32 eager) is evaluated on the ``fbinfer eval`` candidate lists;
every other row is evaluated on the same pairs (drift: Rank@K differences in points, top-1
agreement, Spearman's rho per query, |delta logit|) and timed on the same real batches (pairs/s,
latency p50/p95/p99, percent of the machine's peak measured in the same run). The summary puts
fbinfer's fastest path whose Rank@1 stays within ``max_drift`` points of PyTorch in both
directions beside the fastest peer, per batch size.
"""
from __future__ import annotations

import math
import platform
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fbinfer.backends.base import Runner
from fbinfer.backends.registry import backend as get_backend
from fbinfer.backends.registry import open_runner
from fbinfer.bench.drift import drift
from fbinfer.bench.flops import flops_per_pair
from fbinfer.bundle import Bundle
from fbinfer.bundle.io_spec import ATTENTION_MASK, batch_size, make_feeds
from fbinfer.data.features import FeatureStore
from fbinfer.data.source import DataSource, load_data
from fbinfer.errors import FbinferError
from fbinfer.evaluation.evaluate import RunnerScorer, eval_pairs, report, score_matrices, score_pairs
from fbinfer.evaluation.timing import Timing, peak_flops, times_in_turns, timing
from fbinfer.export.exporter import ExportConfig, default_bundle_dir, export_bundle, versions
from fbinfer.export.graphs import export_plain
from fbinfer.model.checkpoint import Checkpoint, load_checkpoint
from fbinfer.threads import torch_threads

REFERENCE = "torch-fp32"
PLAIN = "plain"  # the graph a user would export without fbinfer: FashionBert.forward traced as it is


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


VARIANTS = (
    Variant(REFERENCE, "torch", "fp32", "eager", peer=True),
    Variant("torch-bf16", "torch", "bf16", "eager"),
    Variant("torch-fp16", "torch", "fp16", "eager (CUDA only)"),
    Variant("torch-compile", "torch", "fp32", "torch.compile", peer=True, options=(("compile", True),)),
    Variant("torch-int8-dynamic", "torch", "int8", "quantize_dynamic on Linear", peer=True),
    Variant("ort-plain", "onnxruntime", "fp32", "plain export", peer=True, graph=PLAIN),
    Variant("ort-fused", "onnxruntime", "fp32", "fused"),
    Variant("ort-int8", "onnxruntime", "int8", "cpu int8"),
    Variant("ov-default", "openvino", "fp32", "plain export, OpenVINO's defaults", peer=True, graph=PLAIN,
            options=(("hints", {}), ("streams", 1))),
    Variant("ov-fp32", "openvino", "fp32", "f32 hint"),
    Variant("ov-bf16", "openvino", "bf16", "bf16 hint"),
    Variant("ov-int8", "openvino", "int8", "Q/DQ graph, f32 elsewhere"),
    Variant("ov-int8-bf16", "openvino", "int8", "Q/DQ graph, bf16 elsewhere", options=(("hints", {"INFERENCE_PRECISION_HINT": "bf16"}),)),
    Variant("trt-fp16-graph", "onnxruntime", "fp16", "numerics only", timed=False),
    Variant("trt-int8-graph", "onnxruntime", "int8", "numerics only", timed=False, graph=("tensorrt", "int8")),
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
    max_drift: float = 1.0  # points of Rank@1, both directions: the summary's bar for fbinfer's paths

    def validate(self) -> BenchConfig:
        for b in self.batches:
            if b < 1:
                raise FbinferError(f"--batch: batch sizes must be >= 1, got {b}")
        for k in self.backends or ():
            if k not in KEYS:
                raise FbinferError(f"--backends: unknown backend {k!r} (choose from {', '.join(KEYS)})")
        if self.queries is not None and self.queries < 1:
            raise FbinferError(f"--queries: must be positive, got {self.queries}")
        return self


@dataclass
class ModelBench:
    name: str
    bundle: Bundle
    data: DataSource
    ck: Checkpoint = field(repr=False)


def resolve(model: Path, data: Path | None) -> ModelBench:
    """A checkpoint (exported on the fly into MODEL.bundle, reused later) or a bundle folder."""
    if model.is_dir():
        bundle = Bundle.open(model)
        ck = bundle.load_source()
    else:
        ck = load_checkpoint(model)
        folder = default_bundle_dir(model)
        if not folder.is_dir():
            export_bundle(model, load_data(ck.training_data(data)), folder, ExportConfig(parity_queries=4))
        bundle = Bundle.open(folder)
    return ModelBench(ck.path.stem, bundle, load_data(ck.training_data(data)), ck)


def runner_for(v: Variant, mb: ModelBench) -> tuple[Runner | None, str]:
    """The runner of a row, or (None, why it cannot run here)."""
    b = get_backend(v.backend)
    why = b.unavailable()
    if why:
        return None, why
    options = dict(v.options)
    if v.graph == PLAIN:
        options["graph"] = plain_graph(mb)
    elif v.graph:
        if not mb.bundle.has_graph(*v.graph):
            return None, f"the bundle has no {'.'.join(v.graph)} graph (re-export with that precision)"
        options["graph"] = mb.bundle.graph(*v.graph)
    if v.backend == "torch":
        options["fresh"] = v.key != REFERENCE  # a copy of the weights for each converted model
    try:
        return open_runner(v.backend, mb.ck if v.backend == "torch" else mb.bundle, v.precision, **options).activate(), ""
    except FbinferError as e:
        return None, str(e)


def plain_graph(mb: ModelBench) -> Path:
    """The naive export, made once beside the bundle's graphs (bench/plain.fp32.onnx)."""
    path = mb.bundle.folder / "bench" / f"{PLAIN}.fp32.onnx"
    if not path.is_file():
        path.parent.mkdir(exist_ok=True)
        export_plain(mb.ck.model, path, mb.bundle.max_batch)
    return path


def timing_feeds(mb: ModelBench, store: FeatureStore, pairs: list[tuple[int, int]], batch: int) -> dict[str, np.ndarray]:
    """``batch`` real test pairs spread over the caption lengths (``pairs`` is sorted by length),
    padded to the longest."""
    pick = [pairs[int(i)] for i in np.linspace(0, len(pairs) - 1, batch)]
    texts = [mb.data.test[t].text for t, _ in pick]
    return make_feeds(mb.ck.tokenizer(), store.get([mb.data.test[i] for _, i in pick]).numpy(), texts)


def peaks() -> dict[str, float]:
    """FLOP/s of one large matmul per precision, measured now (the ceiling for percent of peak)."""
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    out = {"fp32": peak_flops(torch.float32, device=device), "bf16": peak_flops(torch.bfloat16, device=device)}
    if device == "cuda":
        out["fp16"] = peak_flops(torch.float16, device=device)
    try:
        out["int8"] = peak_flops(torch.int8, device=device)
    except RuntimeError:  # torch._int_mm has no kernel for this device/shape
        pass
    return out


def effective_precision(v: Variant, settings: dict[str, str]) -> str:
    """What ran: OpenVINO reports the precision it chose (bf16 by default on CPUs that have it)."""
    chosen = settings.get("effective INFERENCE_PRECISION_HINT")
    return {"bf16": "bf16", "f32": "fp32", "f16": "fp16"}.get(chosen, v.precision) if v.precision != "int8" else v.precision


def bench(models: list[Path], data: Path | None, bc: BenchConfig, progress: Callable[[str], None] = print) -> dict:
    """Every row of every model: drift on the eval candidate lists, then speed, the rows of one
    model timed in turns on the same batches (``time_rows``)."""
    import torch

    bc = bc.validate()
    torch_threads()
    machine = {"cpu_threads": torch.get_num_threads(), "platform": platform.platform(), "processor": platform.processor(),
               "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None, "versions": versions()}
    progress("measuring the machine's peak (one large matmul per precision)")
    machine["peak_flops"] = peaks()
    results, skipped = [], {}
    for model in models:
        mb = resolve(model, data)
        too_big = [b for b in bc.batches if b > mb.bundle.max_batch]
        if too_big:
            raise FbinferError(f"--batch {too_big[0]}: above the bundle's max batch {mb.bundle.max_batch} ({mb.bundle.folder})")
        store = FeatureStore(mb.data, mb.ck.config).ensure(mb.data.test)
        pairs = eval_pairs(mb.data, bc.queries)
        every_pair = eval_pairs(mb.data)
        ref_report = ref_mats = None
        rows: dict[str, dict] = {}
        timed: dict[str, Runner] = {}
        for v in VARIANTS:
            if bc.backends is not None and v.key not in bc.backends and v.key != REFERENCE:
                continue
            runner, why = runner_for(v, mb)
            if runner is None:
                skipped[f"{mb.name}/{v.key}"] = why
                continue
            progress(f"{mb.name}: {v.key}")
            scores = score_pairs(RunnerScorer(runner, mb.ck.tokenizer(), store), mb.data, pairs, desc=f"{v.key}: eval pairs")
            rep, mats = report(mb.data, scores, bc.queries), score_matrices(mb.data, scores, bc.queries)
            if not np.isfinite(np.concatenate(list(mats.values()))).all():
                raise FbinferError(f"{mb.name} on {v.key}: non-finite scores (NaN or inf); the model or graph is broken")
            if v.key == REFERENCE:
                ref_report, ref_mats = rep, mats
            settings = runner.describe()
            rows[v.key] = {"model": mb.name, "backend": v.backend, "precision": effective_precision(v, settings),
                           "variant": v.variant, "key": v.key, "peer": v.peer, "settings": settings, "rank": rep}
            if v.key != REFERENCE:
                rows[v.key]["drift"] = drift(ref_report, rep, ref_mats, mats)
            if v.timed:
                timed[v.key] = runner
            else:
                runner.deactivate()
                results.append({**rows[v.key], "batch": None})
        for b in bc.batches:
            feeds = timing_feeds(mb, store, every_pair, b)
            text_len = float(feeds[ATTENTION_MASK].sum(1).mean())
            for key, t in time_rows(timed, feeds, bc, f"{mb.name}: batch {b}, rows in turns").items():
                precision = rows[key]["precision"]
                peak_key = precision if precision in machine["peak_flops"] else "fp32"
                results.append({**rows[key], "batch": b, "pairs_per_s": round(t.pairs_per_s, 2), "latency_ms": t.latency(),
                                "iterations": t.iterations, "threads": torch.get_num_threads(),
                                "pct_of_peak": round(100 * flops_per_pair(mb.ck.config, round(text_len)) * t.pairs_per_s
                                                     / machine["peak_flops"][peak_key], 2),
                                "peak_precision": peak_key})
        for runner in timed.values():
            runner.deactivate()
    order, names = {v.key: i for i, v in enumerate(VARIANTS)}, list(dict.fromkeys(r["model"] for r in results))
    results.sort(key=lambda r: (names.index(r["model"]), order[r["key"]], r["batch"] or 0))  # rows by model, row, batch
    machine["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return {"machine": machine, "config": {"batches": list(bc.batches), "queries": bc.queries, "min_seconds": bc.min_seconds,
                                           "max_drift": bc.max_drift, "timing": "rows of a model in turns, per batch size"},
            "results": results, "skipped": skipped, "summary": summary(results, bc.max_drift)}


def time_rows(runners: dict[str, Runner], feeds: dict[str, np.ndarray], bc: BenchConfig, desc: str) -> dict[str, Timing]:
    """Every row on the same batch, in turns (one call each per round), for as many rounds as give
    the slowest row ``min_seconds`` and every row at least ``min_iters`` calls."""
    calls = [lambda r=r: r.infer(feeds) for r in runners.values()]
    slowest = 0.0
    for call in calls:
        start = time.perf_counter()
        call()
        slowest = max(slowest, time.perf_counter() - start)
    rounds = max(bc.min_iters, math.ceil(bc.min_seconds / max(slowest, 1e-6)))
    times = times_in_turns(calls, rounds, desc)
    return {key: timing(t, batch_size(feeds)) for key, t in zip(runners, times)}


def summary(results: list[dict], max_drift: float) -> list[dict]:
    """Per model and batch: fbinfer's fastest row whose Rank@1 moved at most ``max_drift`` points in
    both directions, against the fastest peer row, and their ratio."""
    out = []
    timed = [r for r in results if r["batch"] is not None]
    for model, batch in sorted({(r["model"], r["batch"]) for r in timed}, key=lambda x: (x[0], x[1])):
        rows = [r for r in timed if r["model"] == model and r["batch"] == batch]
        ours = [r for r in rows if not r["peer"] and "drift" in r
                and max(abs(r["drift"]["d_rank1_i2t"]), abs(r["drift"]["d_rank1_t2i"])) <= max_drift]
        peers = [r for r in rows if r["peer"]]
        if not ours or not peers:
            continue
        best, peer = max(ours, key=lambda r: r["pairs_per_s"]), max(peers, key=lambda r: r["pairs_per_s"])
        out.append({"model": model, "batch": batch, "best": best["key"], "best_pairs_per_s": best["pairs_per_s"],
                    "best_latency_p50_ms": best["latency_ms"]["p50"],
                    "best_d_rank1": [best["drift"]["d_rank1_i2t"], best["drift"]["d_rank1_t2i"]],
                    "best_peer": peer["key"], "peer_pairs_per_s": peer["pairs_per_s"],
                    "ratio": round(best["pairs_per_s"] / peer["pairs_per_s"], 3)})
    return out
