"""The optimisation loop ``fbinfer train`` and ``fbinfer distill`` share: AdamW with a linear
warm-up/decay schedule, resume (optimizer, schedule, step, elapsed time and every process's RNG
restored, so a killed and resumed run ends where an uninterrupted one does), a progress bar, a
JSONL log, and a checkpoint every ``checkpoint_every`` steps and at the end.

What differs between the two is passed in: the parameter groups, one step's work
(``step_fn(step) -> {term: loss}``, which also takes the optimizer step), and how a checkpoint is
written (``save_fn(step, seconds, last, state)``).
"""
from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from fbinfer.errors import FbinferError
from fbinfer.training.config import PRECISIONS


def autocast(precision: str, device: torch.device | str = "cpu"):
    """The forward pass's precision for training: ``bf16`` runs the matmuls in bfloat16 (AMX on
    recent Xeons, tensor cores on GPUs: several times fp32's rate) while the weights, gradients
    and AdamW state stay fp32; bf16 keeps fp32's exponent range, so no loss scaling is needed."""
    if precision not in PRECISIONS:
        raise FbinferError(f"--precision {precision!r}: training runs {' or '.join(PRECISIONS)}")
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=precision == "bf16")


def total_steps(steps: int | None, epochs: float | None, steps_per_epoch: int) -> int:
    """``steps`` if given, else ``epochs`` (default 1) of ``steps_per_epoch``."""
    if steps:
        return steps
    return max(1, math.ceil((epochs or 1.0) * steps_per_epoch))


def linear_schedule(total: int, warmup: float, hold: int = 0) -> Callable[[int], float]:
    """LR factor per step: constant for the first ``hold`` steps, then a linear warm-up over
    ``warmup`` of the rest and a linear decay to zero."""
    start = min(hold, total - 1)
    rest = total - start
    warm = max(1, int(warmup * rest))

    def factor(s: int) -> float:
        if s < start:
            return 1.0
        s -= start
        return min((s + 1) / warm, max(0.0, (rest - s) / max(1, rest - warm)))

    return factor


def resume_path(out: Path) -> Path:
    return out.with_name(out.name + ".resume")


@dataclass
class Optimization:
    """AdamW (PyTorch's fused kernel: one vectorised pass, a third faster on CPU than the
    per-tensor loop) and its LR schedule."""

    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LambdaLR

    @classmethod
    def adamw(cls, groups: list[dict], total: int, warmup: float, hold: int = 0, weight_decay: float = 0.0) -> Optimization:
        opt = torch.optim.AdamW([g for g in groups if g["params"]], weight_decay=weight_decay, fused=True)
        return cls(opt, torch.optim.lr_scheduler.LambdaLR(opt, linear_schedule(total, warmup, hold)))

    def step(self, loss: torch.Tensor, params: Iterable[torch.nn.Parameter], clip: float = 1.0) -> None:
        """One update: backward, clip the gradient norm, step the optimizer and the schedule."""
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, clip)
        self.opt.step()
        self.sched.step()

    def state(self, step: int, seconds: float, rngs: list[torch.Tensor]) -> dict[str, Any]:
        """What a resume needs besides the weights; ``rngs``: every process's torch RNG state."""
        return {"optimizer": self.opt.state_dict(), "scheduler": self.sched.state_dict(), "step": step, "seconds": seconds,
                "torch_rng": rngs}

    def restore(self, state: dict[str, Any], rank: int = 0) -> tuple[int, float]:
        """Load a resume state; returns (step, elapsed seconds). Dropout continues exactly where it stopped."""
        self.opt.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])
        rngs = state["torch_rng"]
        rngs = [rngs] if isinstance(rngs, torch.Tensor) else rngs  # one process's state, as older runs saved it
        torch.set_rng_state(rngs[rank % len(rngs)])
        return int(state["step"]), float(state["seconds"])


def run(step_fn: Callable[[int], dict[str, float]], save_fn: Callable[[int, float, dict[str, float]], None], *,
        start: int, total: int, elapsed: float, log: Path, desc: str, lr: Callable[[], float], checkpoint_every: int,
        log_every: int, main: bool = True) -> tuple[int, float, dict[str, float]]:
    """Steps ``start`` .. ``total``: ``step_fn(step)`` does one step and returns its loss terms;
    ``save_fn(step, seconds, last)`` writes a checkpoint (every ``checkpoint_every`` steps and at the
    end). Only the main process logs and shows progress. Returns (steps, seconds, last terms)."""
    if main:
        log.parent.mkdir(parents=True, exist_ok=True)
    last: dict[str, float] = {}
    step, t0 = start, time.perf_counter() - elapsed
    with tqdm(total=total, initial=step, desc=desc, unit="step", disable=not main) as bar, \
            (log.open("a" if start else "w") if main else open(os.devnull, "w")) as logf:
        while step < total:
            last = step_fn(step)
            step += 1
            bar.set_postfix({k: f"{v:.3f}" for k, v in last.items()})
            bar.update(1)
            if main and (step % log_every == 0 or step == total):
                logf.write(json.dumps({"step": step, "lr": lr(), **last}) + "\n")
                logf.flush()
            if step % checkpoint_every == 0 and step < total:
                save_fn(step, time.perf_counter() - t0, last)
    seconds = time.perf_counter() - t0
    save_fn(step, seconds, last)
    return step, seconds, last
