"""``fbinfer demo``: the whole path on a small embedded default, in minutes on 2 CPU cores
(docs/results/demo.log).

The teacher is the default 6 x 384 model over 128-px images and 4 x 4 patches
(``fashionbert-demo``): the 2-layer model does not leave the TIA plateau within a demo's budget,
the 6-layer one does within 50 steps, and the smaller image grid halves its step time. The
demo exports and benches the student, the model one deploys; the teacher-vs-student table times
both in turns.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.table import Table

from fbinfer.bench.config import BenchConfig, DriftSetConfig
from fbinfer.bench.report import summary_table, write_report
from fbinfer.bench.run import bench
from fbinfer.data.candidates import DIRECTIONS
from fbinfer.data.source import load_data
from fbinfer.data.synth import SynthConfig, synthesize
from fbinfer.distill.compare import compare_table, measure, share_kept
from fbinfer.distill.student import StudentSpec
from fbinfer.distill.trainer import DistillConfig, distill
from fbinfer.errors import FbinferError
from fbinfer.evaluation.run import run_eval
from fbinfer.export.exporter import ExportConfig, default_bundle_dir, export_bundle
from fbinfer.export.report import bundle_table
from fbinfer.fileio import read_json, write_json
from fbinfer.model.checkpoint import load_checkpoint
from fbinfer.model.config import preset
from fbinfer.training.trainer import TrainConfig, train


def default_workdir() -> Path:
    return Path.home() / ".cache" / "fbinfer" / "demo"


@dataclass(frozen=True)
class DemoConfig:
    products: int = 1200  # fewer let the teacher memorise its training images (docs/results/training.md)
    teacher: str = "fashionbert-demo"
    steps: int = 300
    tia_warmup_steps: int = 200  # TIA alone on random negatives first (docs/training.md)
    precision: str = "bf16"  # autocast for teacher and student training
    batch_size: int = 32
    seed: int = 0
    eval_queries: int = 100  # per direction, 101 candidates each, for both models' Rank@K
    timing_rounds: int = 15  # teacher and student timed in turns for the speed-up
    export: ExportConfig = field(default_factory=lambda: ExportConfig(parity_queries=4))  # 4 parity queries per direction
    student_layers: int = 2
    distill_steps: int = 300  # fewer keep much less of the teacher's Rank@1 (docs/results/training.md)
    distill_extra_negatives: float = 0.0  # the extra hard negatives cost more than they give here (docs/results/training.md)
    bench_backends: tuple[str, ...] = ("ort-fused", "ov-bf16", "ov-int8")
    bench_batch: int = 64
    bench_seconds: float = 1.0
    bench_drift_set: DriftSetConfig = field(default_factory=lambda: DriftSetConfig(queries=400, candidates=8, looks=(1.0,)))

    def teacher_training(self) -> TrainConfig:
        """How the demo trains its teacher (also benchmarks/demo_distill.py's teacher)."""
        return TrainConfig(steps=self.steps, batch_size=self.batch_size, seed=self.seed, tia_warmup_steps=self.tia_warmup_steps,
                           precision=self.precision)


def demo_models(workdir: Path) -> list[Path]:
    """What the demo made and ``fbinfer bench`` benches by default: the teacher, then the student."""
    return [p for p in (workdir / "teacher.pt", workdir / "student.pt") if p.is_file()]


def run_demo(workdir: Path, cfg: DemoConfig, console: Console, fresh: bool = False) -> dict[str, str]:
    """Make data, train (or reuse) the teacher, evaluate it, distil it, export and bench the student; return what was made, by name."""
    t0 = time.perf_counter()
    data_dir, teacher, student = workdir / "data", workdir / "teacher.pt", workdir / "student.pt"
    made: dict[str, str] = {}
    if fresh or not (data_dir / "test.jsonl").is_file() or not _same_data(data_dir, cfg):
        console.print(f"[bold]1/6[/] synthetic catalogue: {cfg.products} products -> {data_dir}")
        synthesize(data_dir, SynthConfig(products=cfg.products, seed=cfg.seed), force=True)
    else:
        console.print(f"[bold]1/6[/] reusing data {data_dir}")
    data = load_data(data_dir)
    made["data"] = str(data_dir)
    model_cfg = preset(cfg.teacher)
    if not fresh and teacher.is_file() and _same_run(teacher, data.fingerprint(), model_cfg.name, cfg.steps):
        console.print(f"[bold]2/6[/] reusing teacher {teacher}")
    else:
        console.print(f"[bold]2/6[/] training teacher {model_cfg.name} for {cfg.steps} steps ({cfg.precision}) -> {teacher}")
        train(data, model_cfg, cfg.teacher_training(), teacher, force=True)
    made["teacher"] = str(teacher)
    console.print(f"[bold]3/6[/] evaluating the teacher (Rank@K, {cfg.eval_queries} queries per direction)")
    made["eval"] = str(workdir / "teacher.eval.json")
    report = run_eval(teacher, data, console, json_out=Path(made["eval"]), queries=cfg.eval_queries)
    console.print(f"[bold]4/6[/] distilling a {cfg.student_layers}-layer student for {cfg.distill_steps} steps -> {student}")
    distill(teacher, data, StudentSpec(layers=cfg.student_layers),
            DistillConfig(steps=cfg.distill_steps, extra_negatives=cfg.distill_extra_negatives, seed=cfg.seed, precision=cfg.precision),
            student, force=True)
    made["student"] = str(student)
    compared = measure({"teacher": teacher, student.name: student}, data, cfg.eval_queries, rounds=cfg.timing_rounds,
                       reports={"teacher": report})
    console.print(compare_table(compared["teacher"], {student.name: compared[student.name]}))
    made["comparison"] = str(workdir / "compare.json")
    write_json(Path(made["comparison"]), compared)
    made["bundle"] = str(default_bundle_dir(student))
    console.print(f"[bold]5/6[/] exporting the student's ONNX graphs (TensorRT FP32/FP16/INT8, ONNX Runtime FP32/INT8, "
                  f"OpenVINO INT8) -> {made['bundle']}")
    manifest = export_bundle(student, data, Path(made["bundle"]), cfg.export, force=True)
    console.print(bundle_table(manifest))
    console.print(f"[bold]6/6[/] bench of the student: torch fp32 and {', '.join(cfg.bench_backends)} at batch {cfg.bench_batch}")
    result = bench([student], None, BenchConfig(batches=(cfg.bench_batch,), backends=cfg.bench_backends,
                                                min_seconds=cfg.bench_seconds, drift_set=cfg.bench_drift_set),
                   progress=lambda m: console.print(f"[dim]{m}[/]"))
    made["report"] = str(workdir / "report")
    made["plots"] = ", ".join(str(p) for p in write_report(result, Path(made["report"])) if p.suffix == ".png")
    console.print(summary_table(result))
    console.print(look_at(compared, student.name, manifest, time.perf_counter() - t0))
    for k, v in made.items():
        console.print(f"  {k:10s} {v}")
    return made


def look_at(compared: dict[str, dict], student: str, manifest: dict, seconds: float) -> Table:
    """The figures a first run should be judged by: the two models' Rank@1 against chance, and the student bundle's worst parity."""
    t = Table(title=f"demo finished in {seconds / 60:.1f} min: what to look at")
    t.add_column("what")
    t.add_column("figure", justify="right")
    chance = 100 / compared["teacher"]["rank"][DIRECTIONS[0]]["candidates"]
    for name in ("teacher", student):
        ranks = compared[name]["rank"]
        t.add_row(f"{name} Rank@1 image->text / text->image", " / ".join(f"{ranks[d]['rank1']:.1f} %" for d in DIRECTIONS))
    t.add_row(f"{student} keeps of the teacher's Rank@1",
              " / ".join(f"{share_kept(compared[student], compared['teacher'], d):.0f} %" if compared["teacher"]["rank"][d]["rank1"] else "-"
                         for d in DIRECTIONS))
    t.add_row("chance Rank@1", f"{chance:.1f} %")
    worst = min(manifest["parity"], key=lambda row: row["rank1_agreement"])
    t.add_row(f"student bundle: lowest Rank@1 agreement with PyTorch ({worst['graph']} on {worst['backend']})",
              f"{100 * worst['rank1_agreement']:.0f} %")
    return t


def _same_data(folder: Path, cfg: DemoConfig) -> bool:
    """The catalogue on disk was made with this product count and seed."""
    try:
        made = read_json(folder / "synth.json")
    except (FbinferError, OSError, ValueError):
        return False
    made = made.get("config", {})
    return made.get("products") == cfg.products and made.get("seed") == cfg.seed


def _same_run(path: Path, fingerprint: str, name: str, steps: int) -> bool:
    """The teacher on disk was trained here before, on this data, with these settings."""
    try:
        ck = load_checkpoint(path)
    except FbinferError:
        return False
    return ck.config.name == name and ck.meta.get("data_fingerprint") == fingerprint and ck.meta.get("steps") == steps
