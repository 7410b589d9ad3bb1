"""A plan: one way to run a bundle on a CPU backend (which graph, which of its MatMuls INT8, what
precision elsewhere), as ``fbinfer tune`` records the one it chose in the manifest's ``tuning``,
and how ``fbinfer.load`` and the bench's tuned rows read it back."""
from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from fbinfer.machine import cpu_flags

TUNED_BACKENDS = ("openvino", "onnxruntime")  # TensorRT does not run here: none of its plans can be timed
HINT = "INFERENCE_PRECISION_HINT"


@dataclass(frozen=True)
class Plan:
    """A backend, the registry precision of its graph, the INT8 graph's float groups (None: a float
    graph), and OpenVINO's precision for what is not INT8 ('f32' or 'bf16')."""

    backend: str
    precision: str
    exclude: tuple[str, ...] | None = None
    rest: str | None = None

    @property
    def name(self) -> str:
        parts = [{"openvino": "ov", "onnxruntime": "ort"}[self.backend], self.precision]
        if self.exclude is not None:
            parts.append("float:" + ("+".join(self.exclude) or "none"))
        if self.rest and self.precision == "int8":
            parts.append(f"rest:{self.rest}")
        return " ".join(parts)

    @property
    def file_tag(self) -> str:
        """The INT8 graph's file name part: 'x-embeddings-head-layer0' ('x-none' for no float group)."""
        return "x-" + ("-".join(g.replace(":", "") for g in self.exclude) or "none") if self.exclude is not None else ""

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, **{k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Plan:
        return cls(d["backend"], d["precision"], tuple(d["exclude"]) if d.get("exclude") is not None else None, d.get("rest"))

    def options(self, graph: Path) -> dict[str, Any]:
        """The backend's runner options that run this plan on ``graph``."""
        if self.backend == "openvino":
            return {"graph": graph, "hints": {HINT: self.rest}, "streams": 1}
        return {"graph": graph}


def tuned(bundle, backend: str) -> tuple[Plan, dict[str, Any]] | None:
    """The plan ``fbinfer tune`` chose for ``backend`` and the runner options that run it (its
    graph in the bundle, its hints), or None. Warns when this CPU's instruction-set flags differ
    from the ones it was measured on: the choice may not hold."""
    tuning = bundle.manifest.get("tuning")
    record = (tuning or {}).get("plans", {}).get(backend)
    if not record:
        return None
    here, there = cpu_flags()["flags"], tuning["machine"]["cpu"]["flags"]
    if here != there:
        warnings.warn(f"{bundle.folder}: tuned on a CPU with {', '.join(there) or 'no listed flags'}; this one has "
                      f"{', '.join(here) or 'none of them'}: re-run fbinfer tune here", stacklevel=4)
    plan = Plan.from_dict(record)
    return plan, plan.options(bundle.file(record["file"]))


def fastest_tuned(bundle, runs_here: Callable[[str], bool]) -> str | None:
    """The backend whose tuned plan measured the most pairs/s, among those that ``runs_here``
    (asked only of backends with a plan: an untuned bundle imports no engine to answer it)."""
    plans = {b: r for b, r in (bundle.manifest.get("tuning") or {}).get("plans", {}).items() if r and runs_here(b)}
    return max(plans, key=lambda b: plans[b]["pairs_per_s"]) if plans else None
