"""The distillation table (docs/results/distillation.md): teacher vs students, Rank@1/5/10 both directions on the fixed
candidate lists (all queries, as ``fbinfer eval``), parameters, torch fp32 pairs/s at batch 64.

Rank@K is cached beside the data (deterministic); pairs/s never is: every model is timed in this
run, the models taking turns round by round, so each speed-up divides two figures from one
machine state. Writes JSON, a Markdown table and rank1_kept.png (distill_plot.py).

Usage: python benchmarks/distill_table.py TEACHER.pt --data DATA NAME=STUDENT.pt ... [--out benchmarks/results/distill]
"""
from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

from distill_plot import plot

from fbinfer import terminal
from fbinfer.data.candidates import DIRECTIONS
from fbinfer.data.source import load_data
from fbinfer.distill.compare import compare_table, measure, share_kept
from fbinfer.export.exporter import versions
from fbinfer.fileio import atomic_path, write_json
from fbinfer.model.checkpoint import load_checkpoint
from fbinfer.threads import torch_threads


def markdown(teacher: dict, students: dict[str, dict]) -> str:
    lines = ["| model | layers x hidden | i2t R@1/5/10 | t2i R@1/5/10 | R@1 kept (i2t / t2i) | params (M) | pairs/s | speed-up | distillation |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, r in {"teacher": teacher, **students}.items():
        ranks = [f"{r['rank'][d]['rank1']:.1f} / {r['rank'][d]['rank5']:.1f} / {r['rank'][d]['rank10']:.1f}" for d in DIRECTIONS]
        share = " / ".join(f"{share_kept(r, teacher, d):.0f} %" for d in DIRECTIONS)
        how = r.get("how", "-")
        lines.append(f"| {name} | {r['layers']} x {r['hidden']} | {ranks[0]} | {ranks[1]} | {share} | {r['parameters'] / 1e6:.1f} "
                     f"| {r['pairs_per_s']:.0f} | {r['pairs_per_s'] / teacher['pairs_per_s']:.2f}x | {how} |")
    return "\n".join(lines) + "\n"


def describe(path: Path) -> str:
    """How a student was made, from its checkpoint's meta."""
    meta = load_checkpoint(path).meta
    if "distill" not in meta:
        return "-"
    dc, w = meta["distill"], meta["distill"]["weights"]
    ranked = bool(w.get("rank") and dc.get("lists"))
    terms = "+".join(k for k, v in w.items() if v and (k != "rank" or ranked))
    extra = f", {dc['lists']} lists of {dc['list_size']} per step" if ranked else ""
    extra += f", {dc['extra_negatives']:g} x batch extra negatives" if dc.get("extra_negatives") and w.get("kd") else ""
    extra += f", hard ratio {dc['hard_ratio']:g}" if "hard_ratio" in dc else ""
    extra += f", {dc['precision']} autocast" if dc.get("precision", "fp32") != "fp32" else ""
    for r in meta.get("resumed", []):
        changes = ", ".join(f"{k} {a} -> {b}" for k, (a, b) in r["changed"].items())
        extra += f", resumed at step {r['at_step']}" + (f" ({changes})" if changes else "")
    return f"{dc['steps']} steps, lr {dc['lr']:g}, starts as teacher layers {meta['init_layers']}, losses {terms}{extra}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("teacher", type=Path)
    ap.add_argument("students", nargs="+", help="NAME=STUDENT.pt")
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--queries", type=int, default=None)
    ap.add_argument("--teacher-eval", type=Path, help="the teacher's `fbinfer eval --json` on DATA (all queries): reused, not re-run")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/distill"))
    args = ap.parse_args()
    torch_threads()
    data = load_data(args.data)
    console = terminal.console()
    report = None
    if args.teacher_eval:
        report = json.loads(args.teacher_eval.read_text())
        if Path(report["data"]).resolve() != args.data.resolve() or args.queries is not None:
            raise SystemExit(f"{args.teacher_eval}: made on {report['data']} with all queries; not reusable here")
    paths = {"teacher": args.teacher, **{name: Path(path) for name, _, path in (spec.partition("=") for spec in args.students)}}
    students = measure(paths, data, args.queries, reports={"teacher": report} if report else None)  # all timed in turns
    teacher = students.pop("teacher")
    for name, path in paths.items():
        if name != "teacher":
            students[name]["how"] = describe(path)
    console.print(compare_table(teacher, students))
    args.out.mkdir(parents=True, exist_ok=True)
    result = {"machine": {"platform": platform.platform(), "processor": platform.processor(), "threads": teacher["threads"],
                          **versions()},
              "data": str(args.data), "teacher": teacher, "students": students}
    write_json(args.out / "distill.json", result)
    with atomic_path(args.out / "table.md") as tmp:
        tmp.write_text(markdown(teacher, students))
    png = plot(result, args.out / "rank1_kept.png")
    console.print(f"wrote {args.out / 'distill.json'}, {args.out / 'table.md'} and {png}")


if __name__ == "__main__":
    main()
