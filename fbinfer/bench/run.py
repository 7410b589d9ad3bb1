"""``fbinfer bench``: speed and Rank@K drift of every backend and precision against torch fp32,
fbinfer's paths beside the peers a user would run without fbinfer, all in one run.

Steps, per model (``bench``): open the rows' runners (``open_rows``); rank with each on the drift
set against the reference, torch fp32 eager, look by look until the drift bar's verdict is clear
(``measure_drift``; ``fbinfer.bench.drift``); time the rows in turns on the same real batches
(``time_rows``: pairs/s, latency p50/p95/p99, percent of the machine's peak measured in the same
run). Then ``summary`` puts fbinfer's fastest path *within* the bar beside the fastest peer.
"""
from __future__ import annotations

import math
import platform
import resource
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from fbinfer.backends.base import Runner
from fbinfer.backends.registry import backend as get_backend
from fbinfer.backends.registry import open_runner
from fbinfer.bench.config import REFERENCE, VARIANTS, BenchConfig, Variant
from fbinfer.bench.drift import LazyScores, RowDrift, rank_report, sequential_drift
from fbinfer.bench.driftset import DriftPairs, drift_data
from fbinfer.bench.flops import flops_per_pair
from fbinfer.bench.models import ModelBench, resolve
from fbinfer.bench.peers import PEER_GRAPHS
from fbinfer.bundle.io_spec import ATTENTION_MASK, batch_size, make_feeds
from fbinfer.bundle.plan import tuned
from fbinfer.data.features import FeatureStore
from fbinfer.errors import BackendUnavailable, FbinferError
from fbinfer.evaluation.evaluate import eval_pairs
from fbinfer.evaluation.paired import WITHIN
from fbinfer.evaluation.timing import Timing, peak_flops, times_in_turns, timing
from fbinfer.export.exporter import versions
from fbinfer.export.fused_model import EVERY_TOKEN
from fbinfer.machine import cpu_flags
from fbinfer.threads import torch_threads


@dataclass
class Row:
    """One bench row of one model: what ran, its drift (None for the reference) and, per batch
    size, its speed (``Speed``)."""

    model: str
    key: str
    backend: str
    precision: str
    variant: str
    peer: bool
    settings: dict
    rank: dict
    drift: RowDrift | None = None
    drift_seconds: float = 0.0
    last_layer: str = EVERY_TOKEN  # fbinfer's bundle graphs run it on [CLS] alone (the FLOPs its % of peak counts)

    def to_dict(self, speed: Speed | None = None) -> dict:
        out = {k: v for k, v in self.__dict__.items() if k != "drift"}
        if self.drift is not None:
            out["drift"] = self.drift.to_dict()
        return {**out, "batch": None, **(asdict(speed) if speed else {})}


@dataclass
class Speed:
    batch: int
    pairs_per_s: float
    latency_ms: dict[str, float]
    iterations: int
    threads: int
    pct_of_peak: float
    peak_precision: str
    head_to_head: dict | None = None  # {"pairs_per_s", "latency_ms", "iterations", "pause_ms"} for the summary's contenders


def tuned_variant(v: Variant, mb: ModelBench) -> Variant | str:
    """A tuned row made concrete from the bundle's plan (its precision, graph and hints), or why it has none."""
    if not v.tuned:
        return v
    found = tuned(mb.bundle, v.backend)
    if found is None:
        return f"no plan for {v.backend} in the bundle (run fbinfer tune {mb.bundle.folder})"
    plan, options = found
    return replace(v, precision=plan.precision, variant=f"fbinfer tune's plan: {plan.name}", options=tuple(options.items()))


def runner_for(v: Variant, mb: ModelBench, length_groups: int | None = None) -> tuple[Runner | None, str]:
    """The runner of a row, or (None, why it cannot run here). fbinfer's rows score a batch as up
    to ``length_groups`` sub-batches by caption length (None: the backend's default); a peer runs
    the batch as given."""
    b = get_backend(v.backend)
    why = b.unavailable()
    if why:
        return None, why
    options = dict(v.options)
    if isinstance(v.graph, str):
        options["graph"] = PEER_GRAPHS[v.graph](mb)
    elif v.graph:
        if not mb.bundle.has_graph(*v.graph):
            return None, f"the bundle has no {'.'.join(v.graph)} graph (re-export with that precision)"
        options["graph"] = mb.bundle.graph(*v.graph)
    if v.backend == "torch":
        options["fresh"] = v.key != REFERENCE  # a copy of the weights for each converted model
    try:
        return open_runner(v.backend, mb.ck if v.backend == "torch" else mb.bundle, v.precision,
                           length_groups=1 if v.peer else length_groups, **options).activate(), ""
    except BackendUnavailable as e:  # any other error fails the row loudly
        return None, str(e)


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


NUMERICS_ONLY = ("numerics only, not timed: name it in --backends to score it (on the drift set it costs about what an fp32 row "
                 "does, for no figure in the speed table or the summary)")


def open_rows(mb: ModelBench, bc: BenchConfig, skipped: dict[str, str]) -> list[tuple[Variant, Runner]]:
    """Every selected row that runs here, the reference first; the others go to ``skipped``. With
    no selection, every row that is timed: a numerics-only row (a TensorRT graph through ONNX
    Runtime's CPU kernels) runs when named, so that the default bench spends its drift set on the
    rows its speed table and summary show."""
    out = []
    for v in VARIANTS:
        if bc.backends is not None and v.key not in bc.backends and v.key != REFERENCE:
            continue
        if bc.backends is None and not v.timed:
            skipped[f"{mb.name}/{v.key}"] = NUMERICS_ONLY
            continue
        row = tuned_variant(v, mb)
        runner, why = runner_for(row, mb, bc.length_groups) if isinstance(row, Variant) else (None, row)
        if runner is None:
            skipped[f"{mb.name}/{v.key}"] = why
        else:
            out.append((row, runner))
    return out


def measure_drift(mb: ModelBench, opened: list[tuple[Variant, Runner]], bc: BenchConfig,
                  progress: Callable[[str], None]) -> tuple[list[Row], DriftPairs]:
    """Each row ranked on the drift set against the reference, look by look, with a line per row
    and an estimate of the time left."""
    if not opened or opened[0][0].key != REFERENCE:
        raise FbinferError(f"{mb.name}: the reference {REFERENCE} does not run here, so no row's drift can be measured")
    dset = drift_data(mb.data, bc.drift_set)
    store = FeatureStore(dset, mb.ck.config).ensure(dset.test)
    pairs = DriftPairs.build(dset, store, mb.ck.tokenizer(), bc.drift_set)
    size = pairs.describe()
    progress(f"{mb.name}: drift set {size['queries_per_direction']} queries per direction x {size['candidates']} candidates "
             f"({dset.path}); looks at {pairs.looks} queries")
    reference = LazyScores(opened[0][1].infer, pairs, f"{mb.name} on {REFERENCE}")
    rows, began = [], time.perf_counter()
    for n, (v, runner) in enumerate(opened):
        start = time.perf_counter()
        scores = reference if v.key == REFERENCE else LazyScores(runner.infer, pairs, f"{mb.name} on {v.key}")
        d = None if v.key == REFERENCE else sequential_drift(reference, scores, bc.max_drift, bc.drift_set)
        queries = d.queries if d else pairs.looks[0]
        flat = scores.upto(pairs.looks.index(queries))
        settings = runner.describe()
        rows.append(Row(mb.name, v.key, v.backend, effective_precision(v, settings), v.variant, v.peer, settings,
                        rank_report(pairs.matrices(flat, queries)), d, round(time.perf_counter() - start, 2), last_layer(v, mb)))
        left = (time.perf_counter() - began) / (n + 1) * (len(opened) - n - 1)
        progress(f"{mb.name}: {v.key}: " + (verdict_line(d) if d else "reference") + f" ({rows[-1].drift_seconds:.0f} s; "
                 f"about {left / 60:.1f} min of drift left for this model)")
    furthest = max(k for k, end in enumerate(pairs.batches_at) if end <= len(reference.logits))  # no pair scored for this alone
    next(r for r in rows if r.key == REFERENCE).rank = rank_report(pairs.matrices(reference.upto(furthest), pairs.looks[furthest]))
    return rows, pairs


def last_layer(v: Variant, mb: ModelBench) -> str:
    """What a row's last layer computes: torch and the plain export run it on every token; the
    bundle's graphs as the manifest says (on [CLS] alone since 7 December 2026)."""
    if v.backend == "torch" or isinstance(v.graph, str):
        return EVERY_TOKEN
    return mb.bundle.graphs()[("tensorrt", "fp32")].get("last_layer", EVERY_TOKEN)


def verdict_line(d: RowDrift) -> str:
    """'within at 992 queries (i2t +0.10 [-0.46, +0.71], t2i ... points of Rank@1)': a progress line's drift."""
    parts = [f"{k} {p.delta:+.2f} [{p.low:+.2f}, {p.high:+.2f}]" for k, p in zip(("i2t", "t2i"), d.directions.values())]
    return f"{d.verdict} at {d.queries} queries ({', '.join(parts)} points of Rank@1)"


def bench(models: list[Path], data: Path | None, bc: BenchConfig, progress: Callable[[str], None] = print) -> dict:
    """Every row of every model: drift on the drift set, then speed, the rows of one model timed
    in turns on the same batches (``time_rows``)."""
    import torch

    bc = bc.validate()
    torch_threads()
    machine = {"cpu_threads": torch.get_num_threads(), "platform": platform.platform(), "processor": platform.processor(),
               "cpu": cpu_flags(), "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
               "versions": versions()}
    progress("measuring the machine's peak (one large matmul per precision)")
    machine["peak_flops"] = peaks()
    results, skipped, drift_sets, exported, sources = [], {}, {}, {}, {}
    for model in models:
        mb = resolve(model, data)
        sources[mb.name] = {"bundle": str(mb.bundle.folder), "checkpoint": mb.bundle.manifest["source"]["checkpoint"],
                            "checkpoint_sha256": mb.bundle.manifest["source"]["sha256"]}
        if mb.exported:
            progress(mb.exported)
            exported[mb.name] = mb.exported
        too_big = [b for b in bc.batches if b > mb.bundle.max_batch]
        if too_big:
            raise FbinferError(f"--batch {too_big[0]}: above the bundle's max batch {mb.bundle.max_batch} ({mb.bundle.folder})")
        opened = open_rows(mb, bc, skipped)
        try:
            rows, pairs = measure_drift(mb, opened, bc, progress)
            drift_sets[mb.name] = pairs.describe()
            timed = {v.key: r for v, r in opened if v.timed}
            for v, runner in opened:
                if not v.timed:
                    results.append(next(r for r in rows if r.key == v.key).to_dict())
            results += [row.to_dict(speed) for row, speed in time_model(mb, rows, timed, bc, machine, progress)]
        finally:
            for _, runner in opened:
                runner.deactivate()
    order, names = {v.key: i for i, v in enumerate(VARIANTS)}, list(dict.fromkeys(r["model"] for r in results))
    results.sort(key=lambda r: (names.index(r["model"]), order[r["key"]], r["batch"] or 0))  # rows by model, row, batch
    machine["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return {"machine": machine, "config": {"batches": list(bc.batches), "min_seconds": bc.min_seconds, "max_drift": bc.max_drift,
                                           "drift_set": asdict(bc.drift_set), "timing": "rows of a model in turns, per batch size"},
            "models": sources, "drift_sets": drift_sets, "exported": exported, "results": results, "skipped": skipped,
            "summary": summary(results, bc.max_drift)}


def time_model(mb: ModelBench, rows: list[Row], timed: dict[str, Runner], bc: BenchConfig, machine: dict,
               progress: Callable[[str], None]) -> list[tuple[Row, Speed]]:
    """The timed rows of one model at every batch size, in turns."""
    import torch

    store = FeatureStore(mb.data, mb.ck.config).ensure(mb.data.test)
    every_pair = eval_pairs(mb.data)
    by_key, out = {r.key: r for r in rows}, []
    for b in bc.batches:
        progress(f"{mb.name}: timing {len(timed)} rows at batch {b}, in turns (at least {bc.min_seconds:g} s for the slowest)")
        feeds = timing_feeds(mb, store, every_pair, b)
        text_len = float(feeds[ATTENTION_MASK].sum(1).mean())
        speeds = {}
        for key, t in time_rows(timed, feeds, bc, f"{mb.name}: batch {b}, rows in turns").items():
            precision = by_key[key].precision
            peak_key = precision if precision in machine["peak_flops"] else "fp32"
            flops = flops_per_pair(mb.ck.config, round(text_len), cls_only=by_key[key].last_layer != EVERY_TOKEN)
            pct = 100 * flops * t.pairs_per_s / machine["peak_flops"][peak_key]
            speeds[key] = Speed(b, round(t.pairs_per_s, 2), t.latency(), t.iterations, torch.get_num_threads(), round(pct, 2), peak_key)
        keys = contenders({k: sp.pairs_per_s for k, sp in speeds.items()}, by_key, bc.contender_share)
        if keys:
            progress(f"{mb.name}: batch {b}, head to head ({', '.join(keys)}), in turns with {bc.pause_s * 1e3:g} ms pauses")
            for key, t in time_rows({k: timed[k] for k in keys}, feeds, bc, f"{mb.name}: batch {b}, head to head",
                                    bc.pause_s).items():
                speeds[key].head_to_head = {"pairs_per_s": round(t.pairs_per_s, 2), "latency_ms": t.latency(),
                                            "iterations": t.iterations, "pause_ms": round(bc.pause_s * 1e3, 1)}
        out += [(by_key[k], sp) for k, sp in speeds.items()]
    return out


def contenders(pairs_per_s: dict[str, float], rows: dict[str, Row], share: float) -> list[str]:
    """The rows the summary may choose between, timed again head to head: on each side (fbinfer's
    rows within the bar, the peers at any drift) every row at least ``share`` of its side's fastest
    in the all-rows turns, where a neighbour's spinning threads move a fast row by up to 40 %
    (docs/results/drift_bar.md). None when a side is empty: then there is no ratio to take."""
    sides = ([k for k in pairs_per_s if not rows[k].peer and rows[k].drift and rows[k].drift.verdict == WITHIN],
             [k for k in pairs_per_s if rows[k].peer])
    if not all(sides):
        return []
    return [k for side in sides for k in side if pairs_per_s[k] >= share * max(pairs_per_s[x] for x in side)]


def time_rows(runners: dict[str, Runner], feeds: dict[str, np.ndarray], bc: BenchConfig, desc: str,
              pause_s: float = 0.0) -> dict[str, Timing]:
    """Every row on the same batch, in turns (one call each per round), for as many rounds as fill
    ``min_seconds`` with the slowest row's calls and the pauses before them, and give every row at
    least ``min_iters`` calls; ``pause_s`` before each call (``times_in_turns``). One untimed call
    of each, to find the slowest, is the warm-up."""
    calls = [lambda r=r: r.infer(feeds) for r in runners.values()]
    slowest = 0.0
    for call in calls:
        start = time.perf_counter()
        call()
        slowest = max(slowest, time.perf_counter() - start)
    rounds = max(bc.min_iters, math.ceil(bc.min_seconds / max(slowest + pause_s, 1e-6)))
    times = times_in_turns(calls, rounds, desc, pause_s=pause_s, warmup=False)
    return {key: timing(t, batch_size(feeds)) for key, t in zip(runners, times)}


def _peer_line(r: dict) -> dict:
    d = r.get("drift")
    return {"key": r["key"], "pairs_per_s": r["pairs_per_s"], "verdict": d["verdict"] if d else "reference",
            "d_rank1": [[d[k]["delta"], d[k]["low"], d[k]["high"]] for k in ("i2t", "t2i")] if d else None}


def summary(results: list[dict], max_drift: float) -> list[dict]:
    """Per model and batch: fbinfer's fastest row whose verdict is *within* the bar, against the
    fastest peer at any drift (with that peer's drift shown), their ratio, and the fbinfer rows
    faster than the chosen one with their verdicts (beyond, or undecided: not proven within).
    Speeds come from the head-to-head of the contenders (``contenders``) where the run has one,
    else from the all-rows turns; the two are never mixed in one choice."""
    out = []
    timed = [r for r in results if r["batch"] is not None]
    for model, batch in sorted({(r["model"], r["batch"]) for r in timed}, key=lambda x: (x[0], x[1])):
        rows = [r for r in timed if r["model"] == model and r["batch"] == batch]
        h2h = [r for r in rows if r.get("head_to_head")]
        pool, speed = (h2h, lambda r: r["head_to_head"]) if h2h else (rows, lambda r: r)
        ours = [r for r in pool if not r["peer"] and r.get("drift") and r["drift"]["verdict"] == WITHIN]
        peers = [r for r in pool if r["peer"]]
        if not ours or not peers:
            continue
        best, peer = max(ours, key=lambda r: speed(r)["pairs_per_s"]), max(peers, key=lambda r: speed(r)["pairs_per_s"])
        faster = [_peer_line(r) for r in rows if not r["peer"] and r.get("drift") and r["drift"]["verdict"] != WITHIN
                  and r["pairs_per_s"] > best["pairs_per_s"]]  # both from the all-rows turns
        out.append({"model": model, "batch": batch, "max_drift": max_drift, "timing": "head to head" if h2h else "all rows in turns",
                    "best": best["key"], "best_pairs_per_s": speed(best)["pairs_per_s"],
                    "best_latency_p50_ms": speed(best)["latency_ms"]["p50"], "best_d_rank1": _peer_line(best)["d_rank1"],
                    "best_peer": peer["key"], "peer_pairs_per_s": speed(peer)["pairs_per_s"],
                    "peer_verdict": _peer_line(peer)["verdict"], "peer_d_rank1": _peer_line(peer)["d_rank1"],
                    "ratio": round(speed(best)["pairs_per_s"] / speed(peer)["pairs_per_s"], 3), "faster_not_within": faster})
    return out
