"""This process's place in a torchrun job, and what ``distill`` and ``embed train`` need from it:
its device, its shard of a global batch, loss terms averaged for the log, rank 0 first."""
from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields

import torch
import torch.distributed as dist

from fbinfer.threads import torch_threads
from fbinfer.training.objectives import PretrainBatch


def is_main() -> bool:
    """Whether this process is rank 0 of a torchrun job (or runs alone): the one that reports."""
    return os.environ.get("RANK", "0") == "0"


@dataclass
class Dist:
    """This process's place in a torchrun job (rank 0 of 1 without torchrun)."""

    rank: int = 0
    world: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @classmethod
    def start(cls) -> Dist:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world == 1:
            return cls()
        local = int(os.environ.get("LOCAL_RANK", "0"))
        cuda = torch.cuda.is_available()
        device = torch.device(f"cuda:{local}") if cuda else torch.device("cpu")
        if cuda:
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if cuda else "gloo")
        torch_threads(int(os.environ.get("LOCAL_WORLD_SIZE", str(world))))
        return cls(dist.get_rank(), world, device)

    @property
    def main(self) -> bool:
        return self.rank == 0

    def shard(self, b: PretrainBatch, lists: int = 0, list_size: int = 0) -> PretrainBatch:
        """Pairs rank, rank + world, ... of the global batch, then its lists (the last
        ``lists * list_size`` rows, list-major) rank, rank + world, ..., on this process's device."""
        pairs = len(b.labels) - lists * list_size
        mine = torch.arange(lists)[self.rank :: self.world]
        rows = torch.cat([torch.arange(self.rank, pairs, self.world),
                          (pairs + mine[:, None] * list_size + torch.arange(list_size)).flatten()])
        return PretrainBatch(*(getattr(b, f.name)[rows].to(self.device) for f in fields(b)))

    def mean(self, values: dict[str, float]) -> dict[str, float]:
        """Loss terms averaged over processes (for the log: the global batch's losses)."""
        if self.world == 1:
            return values
        t = torch.tensor(list(values.values()), dtype=torch.float64)
        dist.all_reduce(t)
        return dict(zip(values, (t / self.world).tolist()))

    def rng_states(self) -> list[torch.Tensor]:
        """Every process's torch RNG state (what a resume restores, rank by rank)."""
        rngs = [torch.get_rng_state()]
        if self.world > 1:
            rngs = [torch.empty_like(rngs[0]) for _ in range(self.world)]
            dist.all_gather(rngs, torch.get_rng_state())
        return rngs

    @contextmanager
    def main_first(self) -> Iterator[None]:
        """Rank 0 runs the block first (e.g. writing the feature cache), the others after it."""
        if self.world > 1 and not self.main:
            dist.barrier()
        yield
        if self.world > 1 and self.main:
            dist.barrier()

    def stop(self) -> None:
        if self.world > 1:
            dist.destroy_process_group()
