"""The one interface every backend implements, Polygraphy-style: ``activate()`` loads (lazily,
once), ``infer(feeds)`` maps input name -> array to output name -> array, ``deactivate()``
frees. Every backend takes the same feeds (``fbinfer.bundle.io_spec``), so any two can be
compared pair by pair."""
from __future__ import annotations

from typing import Self

import numpy as np


class Runner:
    name = "runner"

    def activate(self) -> Runner:
        return self

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def deactivate(self) -> None:
        pass

    def describe(self) -> dict[str, str]:
        """What this runner runs, for bench results: graph, precision and settings."""
        return {}

    def __enter__(self) -> Self:
        return self.activate()

    def __exit__(self, *exc) -> None:
        self.deactivate()

