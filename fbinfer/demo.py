"""``fbinfer demo``: the whole path on a small embedded default, in minutes on 2 CPU cores."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from fbinfer.data.source import load_data
from fbinfer.data.synth import SynthConfig, synthesize
from fbinfer.distill.compare import compare_table, measure
from fbinfer.distill.student import StudentSpec
from fbinfer.distill.trainer import DistillConfig, distill
from fbinfer.errors import FbinferError
from fbinfer.evaluation.run import run_eval
from fbinfer.export.exporter import ExportConfig, export_bundle
from fbinfer.export.report import bundle_table
from fbinfer.model.checkpoint import load_checkpoint
from fbinfer.model.config import preset
from fbinfer.training.trainer import TrainConfig, train


def default_workdir() -> Path:
    return Path.home() / ".cache" / "fbinfer" / "demo"


@dataclass(frozen=True)
class DemoConfig:
    products: int = 480
    teacher: str = "fashionbert-mini-2l"
    steps: int = 300
    batch_size: int = 32
    seed: int = 0
    export_queries: int = 4  # parity queries per direction in the export stage
    student_layers: int = 1
    distill_steps: int = 100


def demo_models(workdir: Path) -> list[Path]:
    """What the demo made and ``fbinfer bench`` benches by default: the teacher, then the student."""
    return [p for p in (workdir / "teacher.pt", workdir / "student.pt") if p.is_file()]


def run_demo(workdir: Path, cfg: DemoConfig, console: Console, fresh: bool = False) -> dict[str, str]:
    """Make data, train (or reuse) the teacher, evaluate, export and distil it; return what was made, by name."""
    t0 = time.perf_counter()
    data_dir, teacher, student = workdir / "data", workdir / "teacher.pt", workdir / "student.pt"
    made: dict[str, str] = {}
    if fresh or not (data_dir / "test.jsonl").is_file():
        console.print(f"[bold]1/5[/] synthetic catalogue: {cfg.products} products -> {data_dir}")
        synthesize(data_dir, SynthConfig(products=cfg.products, seed=cfg.seed), force=True)
    else:
        console.print(f"[bold]1/5[/] reusing data {data_dir}")
    data = load_data(data_dir)
    made["data"] = str(data_dir)
    model_cfg = preset(cfg.teacher)
    reuse = not fresh and teacher.is_file() and _same_run(teacher, data.fingerprint(), model_cfg.name, cfg.steps)
    if reuse:
        console.print(f"[bold]2/5[/] reusing teacher {teacher}")
    else:
        console.print(f"[bold]2/5[/] training teacher {model_cfg.name} for {cfg.steps} steps -> {teacher}")
        train(data, model_cfg, TrainConfig(steps=cfg.steps, batch_size=cfg.batch_size, seed=cfg.seed), teacher, force=True)
    made["teacher"] = str(teacher)
    console.print("[bold]3/5[/] evaluating the teacher (Rank@K on the fixed candidate lists)")
    report_path = workdir / "teacher.eval.json"
    run_eval(teacher, data, console, json_out=report_path)
    made["eval"] = str(report_path)
    bundle = workdir / "teacher.bundle"
    console.print(f"[bold]4/5[/] exporting ONNX graphs (TensorRT FP32/FP16/INT8, ONNX Runtime FP32/INT8) -> {bundle}")
    manifest = export_bundle(teacher, data, bundle, ExportConfig(parity_queries=cfg.export_queries), force=True)
    console.print(bundle_table(manifest))
    made["bundle"] = str(bundle)
    console.print(f"[bold]5/5[/] distilling a {cfg.student_layers}-layer student for {cfg.distill_steps} steps -> {student}")
    distill(teacher, data, StudentSpec(layers=cfg.student_layers), DistillConfig(steps=cfg.distill_steps, seed=cfg.seed), student,
            force=True)
    r = measure({"teacher": teacher, student.name: student}, data)
    console.print(compare_table(r["teacher"], {student.name: r[student.name]}))
    made["student"] = str(student)
    console.print(f"demo finished in {time.perf_counter() - t0:.0f} s; made:")
    for k, v in made.items():
        console.print(f"  {k:8s} {v}")
    return made


def _same_run(path: Path, fingerprint: str, name: str, steps: int) -> bool:
    """The teacher on disk was trained here before, on this data, with these settings."""
    try:
        ck = load_checkpoint(path)
    except FbinferError:
        return False
    return ck.config.name == name and ck.meta.get("data_fingerprint") == fingerprint and ck.meta.get("steps") == steps
