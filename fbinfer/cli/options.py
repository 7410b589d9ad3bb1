"""Option groups the commands share (like Polygraphy's ``tools/args``): each declared once, its
default read from the config dataclass that uses it, and the checks commands share (a positive
count, a writable output) run while the command line is parsed, before any work."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from fbinfer.errors import FbinferError
from fbinfer.output_paths import check_writable


def positive(option: str) -> Callable[[Any], Any]:
    """A callback refusing a number <= 0 (None passes: the option's default)."""
    def check(value: Any) -> Any:
        if value is not None and value <= 0:
            raise FbinferError(f"{option}: must be positive, got {value}")
        return value
    return check


def writable(option: str, file: str | None = None) -> Callable[[Path | None], Path | None]:
    """A callback checking that the output can be written (``file`` inside it, for a folder option)."""
    def check(value: Path | None) -> Path | None:
        if value is not None:
            check_writable(value / file if file else value, option)
        return value
    return check


def csv(value: str) -> tuple[str, ...]:
    """'a, b,,c' -> ('a', 'b', 'c')."""
    return tuple(v.strip() for v in value.split(",") if v.strip())


def ints(value: str, option: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in csv(value))
    except ValueError:
        raise FbinferError(f"{option}: {value!r} is not a comma list of whole numbers") from None


def out(help: str) -> Any:
    """The required ``-o/--out`` of a command that writes one file or folder."""
    return Annotated[Path, typer.Option("-o", "--out", help=help)]


# ---- data -----------------------------------------------------------------------------------------
Data = Annotated[Path, typer.Option("--data", help="Data folder (train.jsonl, test.jsonl, images/) or a Fashion-Gen .h5 file.")]
DataOr = Annotated[Path | None, typer.Option("--data", help="Data folder or Fashion-Gen .h5 (default: the model's training data).")]

# ---- a training run -------------------------------------------------------------------------------
Steps = Annotated[int | None, typer.Option(help="Optimizer steps.")]
Epochs = Annotated[float | None, typer.Option(help="Epochs over the training items (if --steps is not given).")]
BatchSize = Annotated[int, typer.Option(help="Pairs per step (global: split over torchrun processes).")]
Lr = Annotated[float, typer.Option(help="Peak learning rate (of the pretrained encoder; linear warm-up and decay).")]
HeadLr = Annotated[float, typer.Option(help="Learning rate of the new parameters (patch embedding, heads, projections).")]
HardRatio = Annotated[float, typer.Option(help="Share of negatives from the same sub-category (the rest: any other product).")]
Lists = Annotated[int, typer.Option(help="Ranking lists per batch (one anchor, candidates from its sub-category, ranked by the "
                                          "loss or the teacher); 0 = off.")]
ListSize = Annotated[int, typer.Option(help="Pairs per ranking list (the truth first).")]
TrainPrecision = Annotated[str, typer.Option("--precision", help="Forward-pass precision: fp32, or bf16 autocast (fp32 weights and "
                                             "optimizer; several times faster on CPUs with AMX and on GPUs).")]
CheckpointEvery = Annotated[int, typer.Option(help="Write the checkpoint and its resume state every N steps.")]
Seed = Annotated[int, typer.Option()]
Resume = Annotated[bool, typer.Option(help="Continue from OUT.resume (a larger --steps extends a finished run).")]
Force = Annotated[bool, typer.Option(help="Replace an existing OUT (and its resume state) that fbinfer made.")]

# ---- results --------------------------------------------------------------------------------------
Queries = Annotated[int | None, typer.Option(help="Use the first N queries per direction (default: all).", callback=positive("--queries"))]
JsonOut = Annotated[Path | None, typer.Option("--json", help="Write the result as JSON.", callback=writable("--json"))]

# ---- a reranker (search, eval-retrieval) ----------------------------------------------------------
Backend = Annotated[str | None, typer.Option(help="The FashionBERT model's backend (fbinfer backends; default: its tuned plan's).")]
Precision = Annotated[str | None, typer.Option(help="The FashionBERT model's precision (default: its tuned plan's, else fp32).")]
Hints = Annotated[str, typer.Option(help="OpenVINO properties for the reranker, K=V,K=V (e.g. INFERENCE_PRECISION_HINT=bf16 "
                                         "with --precision int8: the student's fastest CPU path).")]


def reranker(path: Path | None, backend: str | None, precision: str | None, hints: str):
    """The FashionBERT Matcher a search reranks with, or None."""
    from fbinfer.runtime.load import load

    if path is None:
        return None
    pairs = [h.split("=", 1) for h in csv(hints)]
    if any(len(p) != 2 for p in pairs):
        raise FbinferError(f"--hints {hints!r}: expected KEY=VALUE pairs separated by commas")
    return load(path, backend=backend, precision=precision, **({"hints": dict(pairs)} if pairs else {}))
