"""Backend name -> its module: the runner factory, the precisions it offers, and why it cannot run
here. ``fbinfer.load`` and ``fbinfer bench`` both resolve backends through this one table, so a new
backend is one file in this package plus one line below.

Each backend module defines ``PRECISIONS``, ``RUNS`` ("checkpoint" or "bundle"), ``LENGTH_GROUPS`` (the
sub-batches by caption length its runners score a batch as by default, measured per backend),
``unavailable() -> str | None`` and ``runner(source, precision, device=None, **options) -> Runner``, and
those that run any ONNX file ``graph_runner(path, outputs, device=None) -> Runner``;
it imports its engine lazily, so listing backends never fails for a missing optional package.
"""
from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from fbinfer.backends.base import Runner
from fbinfer.backends.length_groups import LengthGroups
from fbinfer.errors import BackendUnavailable, FbinferError

REGISTRY = {
    "torch": "fbinfer.backends.pytorch",
    "onnxruntime": "fbinfer.backends.onnxruntime",
    "openvino": "fbinfer.backends.openvino",
    "tensorrt": "fbinfer.backends.tensorrt",
}


@dataclass(frozen=True)
class Backend:
    name: str
    module: ModuleType

    @property
    def precisions(self) -> tuple[str, ...]:
        return self.module.PRECISIONS

    @property
    def runs(self) -> str:
        return self.module.RUNS

    @property
    def length_groups(self) -> int:
        return self.module.LENGTH_GROUPS

    def unavailable(self) -> str | None:
        """Why it cannot run here, or None."""
        return self.module.unavailable()

    def require(self) -> None:
        """``BackendUnavailable`` saying why it cannot run here, if it cannot."""
        why = self.unavailable()
        if why:
            raise BackendUnavailable(f"backend {self.name!r} is not available here: {why}")


def backend(name: str) -> Backend:
    """A backend by name, or one line listing the backends (with why each unavailable one is)."""
    if name not in REGISTRY:
        raise FbinferError(f"backend {name!r} is unknown; choose from {listing()}")
    return Backend(name, importlib.import_module(REGISTRY[name]))


def listing() -> str:
    """'torch, onnxruntime, openvino (not here: ...), tensorrt (not here: ...)'."""
    parts = []
    for name in REGISTRY:
        why = backend(name).unavailable()
        parts.append(name + (f" (not here: {why})" if why else ""))
    return ", ".join(parts)


def describe() -> dict[str, dict[str, Any]]:
    """Every backend: its precisions, what it runs, and why it is unavailable here (None if it runs)."""
    return {name: {"precisions": list(b.precisions), "runs": b.runs, "unavailable": b.unavailable()}
            for name, b in ((n, backend(n)) for n in REGISTRY)}


def open_runner(name: str, source: Any, precision: str, device: str | None = None, length_groups: int | None = None,
                **options: Any) -> Runner:
    """A runner of backend ``name`` for ``source`` (a Checkpoint or a Bundle) at ``precision``.
    Checks, in order: the backend exists, offers the precision, runs here, and fits the source.
    ``length_groups`` > 1 scores each batch as up to that many sub-batches by caption length, on any
    backend (``fbinfer.backends.length_groups``; None: the backend's ``LENGTH_GROUPS``); ``options``
    are the backend's own."""
    b = backend(name)
    if precision not in b.precisions:
        raise FbinferError(f"precision {precision!r} on {name}: choose from {', '.join(b.precisions)}")
    b.require()
    from fbinfer.bundle import Bundle

    if b.runs == "bundle" and not isinstance(source, Bundle):
        raise FbinferError(f"{source.path}: a checkpoint runs on the torch backend; export it (fbinfer export {source.path}) "
                           f"for {name}")
    known = list(inspect.signature(b.module.runner).parameters)[3:]  # after (source, precision, device)
    for key in options:
        if key not in known:
            raise FbinferError(f"option {key!r} on {name}: choose from {', '.join(known + ['length_groups'])}")
    length_groups = b.length_groups if length_groups is None else length_groups
    if isinstance(length_groups, bool) or not isinstance(length_groups, int) or length_groups < 1:
        raise FbinferError(f"length_groups: must be a positive integer, not {length_groups!r}")
    runner = b.module.runner(source, precision, device, **options)
    return LengthGroups(runner, length_groups) if length_groups > 1 else runner


def graph_runner(name: str, path: Path, outputs: tuple[str, ...], device: str | None = None) -> Runner:
    """Any ONNX file (the image extractor, an embedding tower) in FP32 beside backend ``name``'s
    matcher: its own engine where it runs ONNX files, ONNX Runtime on the same device for TensorRT."""
    b = backend(name)
    if not hasattr(b.module, "graph_runner"):
        raise FbinferError(f"backend {name!r} does not run ONNX files; choose from "
                           f"{', '.join(n for n in REGISTRY if hasattr(backend(n).module, 'graph_runner'))}")
    b.require()
    return b.module.graph_runner(Path(path), outputs, device)
