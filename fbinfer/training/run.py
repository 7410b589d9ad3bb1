"""The skeleton every trainer (``train``, ``distill``, ``embed train``) fills in: claim the output,
start this process's place in a torchrun job, continue from the resume state, build AdamW from the
model's own parameter groups, run the loop and write the checkpoint and its resume state.

A trainer passes what differs: the checkpoint kind, its model and vocab, the metadata it records,
one step's work, and any extra resume state (the distiller's projections and quantizer ranges).
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from fbinfer import checkpoint
from fbinfer.checkpoint import Checkpoint, Kind
from fbinfer.data.source import DataSource
from fbinfer.errors import FbinferError
from fbinfer.output_paths import claimed_file
from fbinfer.threads import torch_threads
from fbinfer.training import loop
from fbinfer.training.dist import Dist
from fbinfer.training.loop import Optimization, resume_path


@dataclass
class Result:
    steps: int
    seconds: float
    last: dict[str, float] = field(default_factory=dict)


@contextmanager
def session(out: Path, force: bool, resume: bool) -> Iterator[Dist]:
    """This process's place in the job (one process without torchrun); the main process holds ``out``
    (checked: replaced only with ``force``, continued only with ``resume``) until the block ends."""
    env = Dist.start()
    if env.world == 1:
        torch_threads()
    try:
        with claimed_file(out, "-o", force, resume) if env.main else nullcontext():
            yield env
    finally:
        env.stop()


def resume_state(out: Path, kind: Kind, data: DataSource) -> Checkpoint:
    """``out``'s resume state (weights, meta and train_state), or one line saying there is none or
    that it belongs to a run on other data (a resume state swapped in from elsewhere)."""
    if not resume_path(out).is_file():
        raise FbinferError(f"--resume: no resume state at {resume_path(out)}")
    ck = checkpoint.load(resume_path(out), kind, with_train_state=True)
    if ck.meta.get("data_fingerprint") != data.fingerprint():
        raise FbinferError(f"--resume: {resume_path(out)} was trained on other data ({ck.meta.get('data')}), not {data.path}")
    return ck


@dataclass
class Trainer:
    """One training run of ``model`` into ``out``; ``schedule`` is the trainer's config (steps,
    warmup, weight_decay, checkpoint_every, log_every, seed)."""

    env: Dist
    out: Path
    kind: Kind
    model: torch.nn.Module  # what is optimised (the student with its projections, for distill)
    schedule: Any
    name: str  # the log file's suffix and the progress bar's label

    def optimizer(self, groups: list[dict], total: int, state: dict | None, hold: int = 0) -> tuple[Optimization, int, float]:
        """AdamW over ``groups`` with the linear schedule, restored from ``state`` (a resume state's
        train_state) when given; dropout's streams seeded per process. Returns (it, first step,
        elapsed seconds)."""
        s = self.schedule
        optim = Optimization.adamw(groups, total, s.warmup, hold, s.weight_decay)
        torch.manual_seed(s.seed + self.env.rank)  # dropout's stream starts here, whatever ran before
        step, elapsed = optim.restore(state, self.env.rank) if state else (0, 0.0)
        return optim, step, elapsed

    def fit(self, one_step: Callable[[int], dict[str, float]], optim: Optimization, start: int, elapsed: float, total: int,
            saved: Callable[[], Checkpoint], extra_state: Callable[[], dict] = dict) -> Result:
        """Steps ``start`` .. ``total``; every ``checkpoint_every`` steps and at the end, the main
        process writes ``saved()`` (the model to keep, its vocab and meta) and, beside it, the same
        with the optimizer, RNG and ``extra_state()`` as the resume state."""
        s = self.schedule

        def save(step: int, seconds: float, last: dict[str, float]) -> None:
            rngs = self.env.rng_states()  # every rank takes part in the gather
            if not self.env.main:
                return
            ck = saved()
            ck.meta = {**ck.meta, "steps": step, "train_seconds": round(seconds, 1), "last": last}
            ck.train_state = {**optim.state(step, seconds, rngs), **extra_state()}
            checkpoint.save(ck, resume_path(self.out), self.kind)
            ck.train_state = None
            checkpoint.save(ck, self.out, self.kind)

        self.model.train()
        step, seconds, last = loop.run(one_step, save, start=start, total=total, elapsed=elapsed,
                                       log=self.out.with_name(f"{self.out.stem}.{self.name}.jsonl"), desc=f"{self.name} {self.out.name}",
                                       lr=lambda: optim.sched.get_last_lr()[0], checkpoint_every=s.checkpoint_every,
                                       log_every=s.log_every, main=self.env.main)
        self.model.eval()
        return Result(step, seconds, last)
