"""Named recipes: the multi-run chains behind the documented teacher and student, one command each
(``fbinfer train --recipe NAME``, ``fbinfer distill --recipe NAME``).

A recipe is a list of runs. A run trains to its first step count, then extends itself to each
further count with a resume (the linear schedule restarts at the remaining share of the peak lr,
as the documented models were made). A later run of a training recipe fine-tunes the previous
run's model (``--from``), as a later run of a distillation recipe goes on from the student before it.
Runs before the last write ``OUT.runN.pt``, next to ``OUT``.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from fbinfer.data.source import DataSource
from fbinfer.errors import FbinferError
from fbinfer.model.checkpoint import load_checkpoint
from fbinfer.training.loop import resume_path


@dataclass(frozen=True)
class Run:
    steps: tuple[int, ...]  # the run's total steps after each segment; every segment after the first resumes
    options: dict[str, Any] = field(default_factory=dict)  # TrainConfig / DistillConfig fields


@dataclass(frozen=True)
class Recipe:
    command: str  # train or distill
    runs: tuple[Run, ...]
    model: dict[str, Any]  # train: the preset name under "config"; distill: StudentSpec fields
    doc: str  # where its documented run, its figures and its wall time are (docs/results/...)

    def describe(self, name: str) -> str:
        """The line a recipe run starts with: its runs, and where its documented run is."""
        runs = [f"{' -> '.join(map(str, r.steps))} steps ({', '.join(f'{k}={v}' for k, v in r.options.items())})" for r in self.runs]
        return f"recipe {name}: {'; then from it, '.join(runs)}; its documented run: {self.doc}"


RECIPES: dict[str, Recipe] = {
    "teacher": Recipe(
        "train",
        (Run((1200, 1800, 3000), {"hard_ratio": 1.0, "precision": "bf16"}),
         Run((600,), {"hard_ratio": 0.5, "lr": 5e-5, "head_lr": 5e-5, "precision": "bf16"})),
        {"config": "fashionbert-mini"}, "docs/results/training.md"),
    "teacher-short": Recipe(
        "train",
        (Run((1200,), {"hard_ratio": 1.0}), Run((600,), {"hard_ratio": 0.5, "lr": 5e-5, "head_lr": 5e-5})),
        {"config": "fashionbert-mini"}, "docs/results/training.md"),
    "student": Recipe(
        "distill", (Run((3000, 4500), {"lr": 3e-4, "precision": "bf16"}),), {"layers": 2}, "docs/results/distillation.md"),
    "student-int8": Recipe(
        "distill",
        (Run((3000, 4500), {"lr": 3e-4, "precision": "bf16"}),
         Run((600,), {"lr": 5e-5, "precision": "bf16", "quantize": "int8"})),  # QAD as a short fine-tune of the student
        {"layers": 2}, "docs/results/tune.md"),
}


def measured(name: str, out: Path, data: DataSource, seconds: float, teacher: Path | None = None, quantized: bool = False) -> str:
    """The line a training run ends with: its wall time and the Rank@1 of the model it just made,
    evaluated now on ``fbinfer eval``'s lists (a distilled one beside its teacher's, and a
    quantization-aware one's INT8 graph against its own fp32)."""
    from fbinfer.distill.compare import ranking, share_kept

    r = ranking(out, data)
    i2t, t2i = (r["rank"][d] for d in ("image_to_text", "text_to_image"))
    line = (f"{name}: {out} made in {seconds / 60:.1f} min, measured Rank@1 {i2t['rank1']:.1f} / {t2i['rank1']:.1f} "
            f"(image -> text / text -> image, {i2t['queries']} queries x {i2t['candidates']} candidates)")
    if teacher is not None:
        t = ranking(teacher, data)
        line += f", {share_kept(r, t, 'image_to_text'):.0f} / {share_kept(r, t, 'text_to_image'):.0f} % of its teacher's"
    if quantized:
        line += "; " + int8_drift(out)
    return line


def int8_drift(model: Path, row: str = "ov-int8-bf16") -> str:
    """How the model's INT8 graph (NNCF, OpenVINO) ranks against its own fp32 form, on the bench's
    drift set: what quantization-aware distillation is for. Exports the bundle if there is none."""
    from fbinfer.bench.config import BenchConfig
    from fbinfer.bench.run import bench

    r = next(x for x in bench([model], None, BenchConfig(batches=(64,), backends=(row,)), progress=lambda _: None)["results"]
             if x["key"] == row)
    d = r["drift"]
    sides = " / ".join(f"{d[s]['delta']:+.1f} [{d[s]['low']:+.1f}, {d[s]['high']:+.1f}]" for s in ("i2t", "t2i"))
    return (f"its INT8 graph ({row}) against its own fp32: top-1 agreement {d['top1_agreement']:.1%}, "
            f"dRank@1 {sides}, {d['verdict']} the {d['bar']:g}-point bar ({d['queries']} queries)")


def find_recipe(name: str, command: str) -> Recipe:
    """The recipe called ``name`` for ``command``; a one-line error names the choices otherwise."""
    names = [n for n, r in RECIPES.items() if r.command == command]
    if name not in names:
        raise FbinferError(f"--recipe: unknown {command} recipe {name!r}; choose from {', '.join(names)}")
    return RECIPES[name]


def run_path(out: Path, index: int, runs: int) -> Path:
    """Where run ``index`` writes: ``out`` for the last, ``OUT.runN.pt`` before it."""
    return out if index == runs - 1 else out.with_name(f"{out.stem}.run{index + 1}{out.suffix}")


def done_steps(path: Path) -> int:
    """Steps a checkpoint holds (0 when there is none yet)."""
    return load_checkpoint(path).meta.get("steps", 0) if path.is_file() else 0


Segment = Callable[[Run, int, Path, "Path | None", bool, bool], object]


def run_recipe(r: Recipe, out: Path, segment: Segment, console: Console, resume: bool = False, force: bool = False) -> Any:
    """Run every segment of ``r`` in order through ``segment(run, steps, path, previous, resume,
    force)``, ``previous`` being the run before's checkpoint. With ``resume``, segments whose
    checkpoint already holds their steps are skipped and an interrupted one continues, so a
    stopped recipe picks up where it stopped. Returns the last segment's result (None if every one was done)."""
    previous, result = None, None
    for i, run in enumerate(r.runs):
        path = run_path(out, i, len(r.runs))
        for j, steps in enumerate(run.steps):
            have = done_steps(path) if resume or j else 0
            if have >= steps:
                console.print(f"recipe: {path} already holds {have} steps; skipped")
                continue
            cont = j > 0 or (resume and resume_path(path).is_file())
            console.print(f"[bold]recipe {i + 1}.{j + 1}[/]: to step {steps} -> {path}" + (" (resumed)" if cont else ""))
            result = segment(run, steps, path, previous, cont, force and not cont)
        previous = path
    return result


def train_recipe(r: Recipe, data: DataSource, out: Path, console: Console, seed: int = 0, checkpoint_every: int = 200,
                 resume: bool = False, force: bool = False) -> None:
    """``fbinfer train --recipe``: every run of a training recipe, the later ones fine-tuning the earlier."""
    from fbinfer.model.config import preset
    from fbinfer.training.trainer import TrainConfig, train

    def segment(run: Run, steps: int, path: Path, previous: Path | None, cont: bool, replace: bool) -> None:
        train_cfg = TrainConfig(steps=steps, seed=seed, checkpoint_every=checkpoint_every, start=str(previous) if previous else None,
                         **run.options)
        train(data, preset(r.model["config"]), train_cfg, path, resume=cont, force=replace)

    run_recipe(r, out, segment, console, resume, force)


def distill_recipe(r: Recipe, teacher: Path, data: DataSource, out: Path, console: Console, seed: int = 0,
                   checkpoint_every: int = 200, resume: bool = False, force: bool = False) -> Any:
    """``fbinfer distill --recipe``: the student recipe's segments, each extending the one before."""
    from fbinfer.distill.student import StudentSpec
    from fbinfer.distill.trainer import DistillConfig, distill

    def segment(run: Run, steps: int, path: Path, previous: Path | None, cont: bool, replace: bool) -> Any:
        dc = DistillConfig(steps=steps, seed=seed, checkpoint_every=checkpoint_every, start=str(previous) if previous else None,
                           **run.options).validate()
        return distill(teacher, data, StudentSpec(**r.model), dc, path, resume=cont, force=replace)

    return run_recipe(r, out, segment, console, resume, force)
