"""The one interface every backend implements, Polygraphy-style (``backend/base/runner.py``).

The base class owns the lifecycle and its guard: ``activate()`` loads once (a second call is a
no-op), ``infer(feeds)`` on an inactive runner is an error, and every feed is checked against the
declared inputs (names, dtypes, ranks: ``fbinfer.bundle.io_spec`` for the matcher) before the
backend sees it. A backend implements ``activate_impl``, ``infer_impl`` and ``deactivate_impl``.
Every backend takes the same feeds, so any two can be compared pair by pair.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable
from types import ModuleType
from typing import Self

import numpy as np

from fbinfer.bundle.io_spec import TensorSpec
from fbinfer.errors import BackendUnavailable, FbinferError


class Runner:
    def __init__(self, name: str, inputs: tuple[TensorSpec, ...] | None = None):
        """``inputs``: what ``infer`` accepts; None takes them from the graph at activation."""
        self.name, self.inputs, self.is_active = name, inputs, False

    def activate(self) -> Self:
        if not self.is_active:
            self.activate_impl()
            self.is_active = True
        return self

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Input name -> array to output name -> float32 array."""
        if not self.is_active:
            raise FbinferError(f"{self.name}: infer() on an inactive runner; activate it first (runner.activate() or `with runner:`)")
        check_feeds(self.name, feeds, self.inputs)
        return self.infer_impl(feeds)

    def deactivate(self) -> None:
        if self.is_active:
            self.deactivate_impl()
            self.is_active = False

    def describe(self) -> dict[str, str]:
        """What this runner runs, for bench results: graph, precision and settings (no side effects)."""
        return {}

    def activate_impl(self) -> None:
        raise NotImplementedError

    def infer_impl(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def deactivate_impl(self) -> None:
        pass

    def __enter__(self) -> Self:
        return self.activate()

    def __exit__(self, *exc) -> None:
        self.deactivate()


def require(module: str, unavailable: Callable[[], str | None]) -> ModuleType:
    """``module`` imported, or ``BackendUnavailable`` saying why its backend cannot run here."""
    why = unavailable()
    if why:
        raise BackendUnavailable(why)
    return importlib.import_module(module)


def check_feeds(name: str, feeds: dict[str, np.ndarray], inputs: tuple[TensorSpec, ...] | None) -> None:
    """One line naming the runner and the input when a feed is missing, unknown, of another dtype or rank."""
    if inputs is None:
        return
    want = {s.name: s for s in inputs}
    for key in feeds.keys() - want.keys():
        raise FbinferError(f"{name}: unknown input {key!r}; it takes {', '.join(want)}")
    for key, spec in want.items():
        if key not in feeds:
            raise FbinferError(f"{name}: input {key!r} is missing")
        array = feeds[key]
        if not isinstance(array, np.ndarray) or array.dtype != np.dtype(spec.dtype) or array.ndim != len(spec.axes):
            got = f"{array.dtype} of rank {array.ndim}" if isinstance(array, np.ndarray) else type(array).__name__
            raise FbinferError(f"{name}: input {key!r} is {got}, expected {spec.dtype} of rank {len(spec.axes)} ({', '.join(spec.axes)})")
