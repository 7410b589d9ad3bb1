"""``fbinfer tune``: per backend, the fastest plan whose Rank@1 drift from PyTorch is within the
bar, measured on this machine, written into the bundle's manifest.

Steps: make every candidate's graph (NNCF INT8 with other groups in float; ``plans``); rank with
each on tuning lists against torch fp32, look by look until the bar's verdict is clear
(``fbinfer.bench.drift.sequential_drift``: the bench's rule, on lists drawn apart from the bench's
drift set so the bench stays an independent check); time them all in turns on one batch of real
pairs; per backend keep the fastest candidate that is *within* the bar. Every candidate's speed
and drift, the lists, the bar and this CPU's flags go into the manifest's ``tuning``; the chosen
INT8 graphs stay in the bundle, the others are deleted.
"""
from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

from fbinfer.backends.base import Runner
from fbinfer.backends.registry import backend as get_backend
from fbinfer.backends.registry import open_runner
from fbinfer.bench.config import BenchConfig
from fbinfer.bench.drift import LazyScores, RowDrift, sequential_drift
from fbinfer.bench.driftset import DriftPairs, drift_data
from fbinfer.bench.models import ModelBench, resolve
from fbinfer.bench.run import time_rows, timing_feeds, verdict_line
from fbinfer.bundle import Bundle
from fbinfer.bundle.plan import Plan
from fbinfer.data.features import FeatureStore
from fbinfer.errors import FbinferError
from fbinfer.evaluation.evaluate import eval_pairs
from fbinfer.evaluation.paired import WITHIN, inside
from fbinfer.export.config import CalibrationConfig
from fbinfer.export.exporter import calibration_feeds, versions
from fbinfer.machine import cpu_flags
from fbinfer.tune.candidates import candidates
from fbinfer.tune.config import TuneConfig

WORK = ".tuning"  # the candidates' graphs while they are measured, inside the bundle folder


@dataclass
class Candidate:
    plan: Plan
    file: str  # the graph, in the bundle folder
    runner: Runner
    drift: RowDrift | None = None
    drift_seconds: float = 0.0
    speed: dict = field(default_factory=dict)

    @property
    def inside_bar(self) -> bool:
        """Within, and every direction's 95 % interval inside [-bar, bar]: the tuner picks the
        fastest of many candidates, and a plan whose interval reaches past the bar is the one the
        noise favours (on 7 December such a plan, within on the tuning lists at -0.82
        [-1.70, +0.04], was beyond on the bench's drift set: docs/results/drift_bar.md)."""
        return self.drift.verdict == WITHIN and inside(self.drift.directions.values(), self.drift.bar)

    def to_dict(self) -> dict:
        return {**self.plan.to_dict(), "file": self.file, "verdict": self.drift.verdict, "inside_bar": self.inside_bar,
                "drift": self.drift.to_dict(), "drift_seconds": self.drift_seconds, **self.speed}


def tune(model: Path, data: Path | None, tune_cfg: TuneConfig, progress: Callable[[str], None] = print) -> dict:
    """Measure every candidate, choose per backend, and write ``tuning`` into the bundle's
    manifest; returns it. ``model``: a bundle folder, or a checkpoint (exported when needed, as
    by the bench)."""
    from fbinfer.threads import torch_threads

    tune_cfg = tune_cfg.validate()
    for b in tune_cfg.backends:
        if why := get_backend(b).unavailable():
            raise FbinferError(f"--backends {b}: {why}")
    torch_threads()
    mb = resolve(model, data)
    if mb.exported:
        progress(mb.exported)
    if tune_cfg.batch > mb.bundle.max_batch:
        raise FbinferError(f"--batch {tune_cfg.batch}: above the bundle's max batch {mb.bundle.max_batch} ({mb.bundle.folder})")
    cands: list[Candidate] = []
    try:
        cands = _open(mb, candidates(tune_cfg.backends, _bundle_exclude(mb.bundle), tune_cfg.ladder), progress)
        lists = _drift(mb, cands, tune_cfg, progress)
        _time(mb, cands, tune_cfg, progress)
    except BaseException:
        shutil.rmtree(mb.bundle.folder / WORK, ignore_errors=True)  # the bundle stays as it was
        raise
    finally:
        for c in cands:
            c.runner.deactivate()
    tuning = {"by": "fbinfer tune", "fbinfer": versions()["fbinfer"], "date": time.strftime("%Y-%m-%d"),
              "machine": {"cpu": cpu_flags(), "threads": _threads()}, "bar": tune_cfg.max_drift, "batch": tune_cfg.batch,
              "reference": "torch fp32 eager on the source checkpoint", "lists": lists,
              "candidates": [c.to_dict() for c in cands], "plans": choose(cands, tune_cfg.backends),
              "not_tuned": {"tensorrt": "TensorRT does not run on this machine: its plans cannot be timed; the bundle's "
                                        "trt.int8 graph keeps the export's float groups"}}
    _write(mb.bundle, tuning)
    return tuning


def choose(cands: list[Candidate], backends: tuple[str, ...]) -> dict[str, dict | None]:
    """Per backend, the fastest candidate within the bar with its interval inside it
    (``Candidate.inside_bar``; None if none is)."""
    out: dict[str, dict | None] = {}
    for b in backends:
        ok = [c for c in cands if c.plan.backend == b and c.inside_bar]
        out[b] = max(ok, key=lambda c: c.speed["pairs_per_s"]).to_dict() if ok else None
    return out


def _bundle_exclude(bundle: Bundle) -> tuple[str, ...]:
    return tuple(bundle.manifest["export_config"]["calibration"]["exclude"])


def _open(mb: ModelBench, plans: list[Plan], progress: Callable[[str], None]) -> list[Candidate]:
    """A runner per plan, making the INT8 graphs the bundle does not have (NNCF, the export's calibration)."""
    made: dict[tuple[str, ...], str] = {}
    out = []
    for plan in plans:
        if plan.backend == "openvino" and plan.precision == "int8" and plan.exclude != _bundle_exclude(mb.bundle):
            if plan.exclude not in made:
                made[plan.exclude] = _quantize(mb, plan, progress)
            file = made[plan.exclude]
        else:
            file = mb.bundle.graph(*_graph_of(plan)).name
        options = plan.options(mb.bundle.folder / file)
        out.append(Candidate(plan, file, open_runner(plan.backend, mb.bundle, plan.precision, **options).activate()))
    return out


def _graph_of(plan: Plan) -> tuple[str, str]:
    """The bundle graph (target, precision) a plan runs when it needs no graph of its own."""
    if plan.backend == "openvino":
        return ("openvino", "int8") if plan.precision == "int8" else ("tensorrt", "fp32")
    return ("onnxruntime", plan.precision)


def _quantize(mb: ModelBench, plan: Plan, progress: Callable[[str], None]) -> str:
    """NNCF's INT8 of the bundle's FP32 graph with ``plan.exclude`` in float, calibrated as the export was."""
    from fbinfer.export.openvino_int8 import quantize_openvino

    progress(f"{mb.name}: quantizing with NNCF, {'+'.join(plan.exclude) or 'no group'} in float")
    calib = mb.bundle.manifest["export_config"]["calibration"]
    cc = CalibrationConfig(method=calib["method"], batches=calib["batches"], batch_size=calib["batch_size"], exclude=plan.exclude)
    store = FeatureStore(mb.data, mb.ck.config).ensure(mb.data.train)
    fp32 = onnx.load(str(mb.bundle.graph("tensorrt", "fp32")))
    name = f"{WORK}/ov.int8.{plan.file_tag}.onnx"
    (mb.bundle.folder / WORK).mkdir(exist_ok=True)
    onnx.save(quantize_openvino(fp32, calibration_feeds(mb.ck, mb.data, store, cc), cc), str(mb.bundle.folder / name))
    return name


def _drift(mb: ModelBench, cands: list[Candidate], tune_cfg: TuneConfig, progress: Callable[[str], None]) -> dict:
    """Each candidate's drift on the tuning lists against torch fp32 (``measure_drift``)."""
    dset = drift_data(mb.data, tune_cfg.lists, split="train")
    store = FeatureStore(dset, mb.ck.config).ensure(dset.test)
    pairs = DriftPairs.build(dset, store, mb.ck.tokenizer(), tune_cfg.lists)
    progress(f"{mb.name}: tuning lists {pairs.describe()['queries_per_direction']} queries per direction x "
             f"{tune_cfg.lists.candidates} candidates ({dset.path}); {len(cands)} candidates")
    reference = LazyScores(open_runner("torch", mb.ck, "fp32", length_groups=1).activate().infer, pairs, f"{mb.name} on torch fp32")
    measure_drift(cands, reference, tune_cfg, lambda m: progress(f"{mb.name}: {m}"))
    return {**pairs.describe(), "seed": tune_cfg.lists.seed}


def measure_drift(cands: list[Candidate], reference: LazyScores, tune_cfg: TuneConfig, progress: Callable[[str], None]) -> None:
    """Each candidate ranked on ``reference``'s lists, look by look until the bar's verdict is
    clear (each pair scored once, as far as needed)."""
    for c in cands:
        start = time.perf_counter()
        c.drift = sequential_drift(reference, LazyScores(c.runner.infer, reference.pairs, c.plan.name), tune_cfg.max_drift, tune_cfg.lists)
        c.drift_seconds = round(time.perf_counter() - start, 2)
        progress(f"{c.plan.name}: {verdict_line(c.drift)} ({c.drift_seconds:.0f} s)")


def _time(mb: ModelBench, cands: list[Candidate], tune_cfg: TuneConfig, progress: Callable[[str], None]) -> None:
    """Every candidate on one batch of real test pairs (``measure_speed``)."""
    progress(f"{mb.name}: timing {len(cands)} candidates at batch {tune_cfg.batch}, in turns")
    store = FeatureStore(mb.data, mb.ck.config).ensure(mb.data.test)
    measure_speed(cands, timing_feeds(mb, store, eval_pairs(mb.data), tune_cfg.batch), tune_cfg.min_seconds, f"{mb.name}: batch {tune_cfg.batch}")


def measure_speed(cands: list[Candidate], feeds: dict[str, np.ndarray], min_seconds: float, desc: str) -> None:
    """Every candidate on ``feeds``, in shuffled turns, at least ``min_seconds`` for the slowest."""
    times = time_rows({str(i): c.runner for i, c in enumerate(cands)}, feeds, BenchConfig(min_seconds=min_seconds),
                      f"{desc}, candidates in turns")
    for c, t in zip(cands, times.values()):
        c.speed = {"pairs_per_s": round(t.pairs_per_s, 2), "latency_ms": t.latency(), "iterations": t.iterations}


def _write(bundle: Bundle, tuning: dict) -> None:
    """Move the chosen graphs made in ``WORK`` into the bundle and record them; drop the graphs of
    an earlier tuning no plan needs now, and ``WORK``; then save the manifest."""
    folder, graphs = bundle.folder, {g["file"] for g in bundle.manifest["graphs"].values()}
    old = {p["file"] for p in (bundle.manifest.get("tuning") or {}).get("plans", {}).values() if p} - graphs
    moved = {}
    for plan in (p for p in tuning["plans"].values() if p):
        if plan["file"].startswith(WORK + "/"):
            moved[plan["file"]] = Path(plan["file"]).name
            os.replace(folder / plan["file"], folder / moved[plan["file"]])
            bundle.add_file(moved[plan["file"]])
    for c in [*tuning["candidates"], *(p for p in tuning["plans"].values() if p)]:
        c["file"] = moved.get(c["file"], None if c["file"].startswith(WORK + "/") else c["file"])  # None: measured, not kept
    for name in old - set(moved.values()):
        bundle.manifest["files"].pop(name, None)
        (folder / name).unlink(missing_ok=True)
    bundle.manifest["tuning"] = tuning
    bundle.save()
    shutil.rmtree(folder / WORK, ignore_errors=True)


def _threads() -> int:
    import torch

    return torch.get_num_threads()

