"""Timing: pairs/s and latency percentiles of a runner on fixed feeds, and the machine's peak
(one large matmul in the same precision, measured in the same run)."""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm


@dataclass
class Timing:
    pairs_per_s: float
    p50: float
    p95: float
    p99: float
    iterations: int

    def latency(self) -> dict[str, float]:
        return {"p50": round(self.p50, 3), "p95": round(self.p95, 3), "p99": round(self.p99, 3)}


def timing(ms: Sequence[float], batch: int) -> Timing:
    """pairs/s and latency percentiles from the milliseconds of calls on batches of ``batch`` pairs."""
    a = np.asarray(ms, dtype=np.float64)
    return Timing(batch * len(a) / (a.sum() / 1e3), *np.percentile(a, [50, 95, 99]).tolist(), len(a))


def times_in_turns(calls: Sequence[Callable[[], object]], rounds: int, desc: str = "timing, in turns",
                   seed: int = 0, pause_s: float = 0.0, warmup: bool = True) -> list[list[float]]:
    """Milliseconds of every call of each contender, the contenders taking turns in every round
    (after one warm-up round, unless the caller has just run each: ``warmup=False``), so that a
    shared machine's slow spells fall on all of them alike: for ratios between backends, where
    timing each alone was seen to drift by 20 % between identical graphs. The order is shuffled every round: a runtime whose threads keep spinning
    after a call (ONNX Runtime, OpenMP) slows whichever call comes next, and a fixed order would
    put that cost on the same contender every time. ``pause_s``: an untimed sleep before each call,
    long enough for the last runtime's threads to stop spinning, so that each call runs as it would
    alone (the bench's head-to-head; docs/results/drift_bar.md measured the need)."""
    for call in calls if warmup else ():
        call()
    times: list[list[float]] = [[] for _ in calls]
    order = np.random.default_rng(seed)
    for _ in tqdm(range(rounds), desc=desc, unit="round"):
        for i in order.permutation(len(calls)):
            if pause_s:
                time.sleep(pause_s)
            start = time.perf_counter()
            calls[i]()
            times[i].append((time.perf_counter() - start) * 1e3)
    return times


def median_ms_in_turns(calls: Sequence[Callable[[], object]], rounds: int, desc: str = "timing, in turns") -> list[float]:
    """Median milliseconds of each contender, timed in turns (``times_in_turns``)."""
    return [statistics.median(t) for t in times_in_turns(calls, rounds, desc)]


def peak_flops(dtype: torch.dtype = torch.float32, n: int = 2048, repeats: int = 20, device: str = "cpu",
               min_seconds: float = 0.5) -> float:
    """FLOP/s (OP/s for int8) of an n x n matmul: the ceiling a model's matmuls could reach here,
    the best of ``repeats`` calls and of ``min_seconds`` of them (a peak, so noise from other work
    on a shared machine only lowers it; 20 int8 calls, 0.1 s on AMX, measured 1.86 TOP/s in one
    bench run and 3.62 in the run before it). int8 uses torch._int_mm (int8 x int8 -> int32,
    VNNI/AMX on CPU)."""
    if dtype == torch.int8:
        a = torch.randint(-127, 127, (n, n), dtype=dtype, device=device)
        b = torch.randint(-127, 127, (n, n), dtype=dtype, device=device)
        matmul = torch._int_mm
    else:
        a = torch.randn(n, n, dtype=dtype, device=device)
        b = torch.randn(n, n, dtype=dtype, device=device)
        matmul = torch.matmul
    for _ in range(2):
        matmul(a, b)
    times: list[float] = []
    while len(times) < repeats or sum(times) < min_seconds:
        t = time.perf_counter()
        matmul(a, b)
        if device != "cpu":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return 2 * n**3 / min(times)
