"""``fbinfer tune``'s options: which backends, the bar, the batch it times at, and its own lists.
Cheap to import: the CLI takes its defaults from here."""
from __future__ import annotations

from dataclasses import dataclass

from fbinfer.bench.config import DriftSetConfig
from fbinfer.bundle.plan import TUNED_BACKENDS
from fbinfer.errors import FbinferError
from fbinfer.export.config import CalibrationConfig
from fbinfer.tune.candidates import LADDER

TUNE_SEED = 3  # the tuning lists' draw; the bench's drift set uses 1 (fbinfer.bench.config.DriftSetConfig)
# Twice the bench's queries, looked at after the same numbers of queries and then further: a candidate
# that keeps every ranking stops at the bench's first look, one near the bar is scored on until its
# interval decides (docs/results/tune.md).
TUNE_LISTS = DriftSetConfig(queries=2560, looks=(0.15, 0.25, 0.375, 0.5, 0.75, 1.0), seed=TUNE_SEED)


@dataclass(frozen=True)
class TuneConfig:
    backends: tuple[str, ...] = TUNED_BACKENDS
    max_drift: float = 1.0  # points of Rank@1, both directions, as the bench's bar
    batch: int = 64  # the batch every candidate is timed at
    lists: DriftSetConfig = TUNE_LISTS
    ladder: tuple[tuple[str, ...], ...] = LADDER
    min_seconds: float = 3.0

    def validate(self) -> TuneConfig:
        for b in self.backends:
            if b not in TUNED_BACKENDS:
                raise FbinferError(f"--backends: fbinfer tune measures {', '.join(TUNED_BACKENDS)}, not {b!r}"
                                   + (" (TensorRT does not run here, so none of its plans can be timed)" if b == "tensorrt" else ""))
        if self.max_drift <= 0:
            raise FbinferError(f"--max-drift: must be positive, got {self.max_drift}")
        if self.batch < 1:
            raise FbinferError(f"--batch: must be >= 1, got {self.batch}")
        if self.lists.seed == DriftSetConfig.seed:
            raise FbinferError(f"tuning lists seed {self.lists.seed}: that is the bench's drift set; choose another")
        for x in self.ladder:
            CalibrationConfig(exclude=x).validate()
        self.lists.validate()
        return self
