"""How many CPU threads the torch work of one process uses."""
from __future__ import annotations

import os


def cpu_count() -> int:
    """Cores this process may run on (the affinity mask: 2 on CI and on the development machine)."""
    return len(os.sched_getaffinity(0))


def torch_threads(processes: int = 1) -> None:
    """Use every core we are given, shared by ``processes`` on this node."""
    import torch

    torch.set_num_threads(max(1, cpu_count() // processes))
