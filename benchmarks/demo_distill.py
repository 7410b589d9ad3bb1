"""The demo's distillation settings (docs/results/training.md, "The demo's student"): 2-layer
students of the demo's own teacher, each scored as the demo scores them (Rank@1 on
``DemoConfig.eval_queries`` queries per direction), with the wall time of its distillation.

Stages 1-3 are the demo's (catalogue, 300-step teacher, its Rank@1), made once in WORKDIR and
reused; each variant is distilled and scored in turn and added to WORKDIR/demo_distill.json, so
a stopped run continues where it was. The times come from one machine state only when the
variants run in one go on an idle machine: compare them within a run.

Usage: python benchmarks/demo_distill.py WORKDIR [VARIANT ...]   (no variant: all of them)
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from fbinfer import terminal
from fbinfer.data.candidates import DIRECTIONS
from fbinfer.data.source import load_data
from fbinfer.data.synth import SynthConfig, synthesize
from fbinfer.demo import DemoConfig
from fbinfer.distill.student import StudentSpec
from fbinfer.distill.trainer import DistillConfig, LossWeights, distill
from fbinfer.evaluation.run import run_eval
from fbinfer.fileio import read_json, write_json
from fbinfer.model.config import preset
from fbinfer.training.trainer import train

# name -> (StudentSpec options, DistillConfig options); otherwise the demo's 2 layers, seed and bf16, and
# `fbinfer distill`'s defaults (0.5 x batch extra negatives: the demo's own student drops them, s300_noneg)
VARIANTS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "s100": ({}, {"steps": 100}),
    "s100_lr1e-3": ({}, {"steps": 100, "lr": 1e-3}),
    "s100_first": ({"init_layers": "first"}, {"steps": 100}),
    "l3_s100": ({"layers": 3}, {"steps": 100}),
    "s200": ({}, {"steps": 200}),
    "s250": ({}, {"steps": 250}),
    "s300": ({}, {"steps": 300}),
    "s300_noatt": ({}, {"steps": 300, "weights": LossWeights(attention=0.0)}),
    "s300_noneg": ({}, {"steps": 300, "extra_negatives": 0.0}),
    "s300_noneg_noatt": ({}, {"steps": 300, "extra_negatives": 0.0, "weights": LossWeights(attention=0.0)}),
    "s400_noneg": ({}, {"steps": 400, "extra_negatives": 0.0}),
}


def rank1(report: dict) -> list[float]:
    return [report[d]["rank1"] for d in DIRECTIONS]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("workdir", type=Path)
    ap.add_argument("variants", nargs="*", help=", ".join(VARIANTS))
    args = ap.parse_args()
    if unknown := [v for v in args.variants if v not in VARIANTS]:
        ap.error(f"unknown variant {unknown[0]!r}; choose from {', '.join(VARIANTS)}")
    cfg, console, w = DemoConfig(), terminal.console(), args.workdir
    w.mkdir(parents=True, exist_ok=True)
    if not (w / "data" / "test.jsonl").is_file():
        synthesize(w / "data", SynthConfig(products=cfg.products, seed=cfg.seed), force=True)
    data = load_data(w / "data")
    teacher = w / "teacher.pt"
    if not teacher.is_file():
        train(data, preset(cfg.teacher), cfg.teacher_training(), teacher, force=True)
    out = w / "demo_distill.json"
    res = read_json(out) if out.is_file() else {}
    if "teacher" not in res:
        res["teacher"] = {"rank1": rank1(run_eval(teacher, data, console, queries=cfg.eval_queries))}
    for name in args.variants or list(VARIANTS):
        if name in res:
            continue
        spec, options = VARIANTS[name]
        student, t0 = w / f"{name}.pt", time.perf_counter()
        distill(teacher, data, StudentSpec(**{"layers": cfg.student_layers, **spec}),
                DistillConfig(seed=cfg.seed, precision=cfg.precision, **options), student, force=True)
        seconds = time.perf_counter() - t0
        res[name] = {"rank1": rank1(run_eval(student, data, console, queries=cfg.eval_queries)), "distill_s": round(seconds)}
        write_json(out, res)
        console.print(name, res[name])
    write_json(out, res)


if __name__ == "__main__":
    main()
