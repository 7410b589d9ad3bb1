"""Rank@1 kept per student (both directions) against the 95 % goal, with each student's speed-up:
the distillation table at a glance, as rank1_kept.png beside its distill.json.

distill_table.py draws it after each run; this script redraws committed results.

Usage: python benchmarks/distill_plot.py benchmarks/results/distill_bf16_long/distill.json [...]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from fbinfer.data.candidates import DIRECTIONS
from fbinfer.distill.compare import share_kept
from fbinfer.fileio import write_png

GOAL = 95.0  # % of the teacher's Rank@1 (issue 3)


def plot(result: dict, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    teacher, students = result["teacher"], result["students"]
    names = list(students)[::-1]  # first student on top
    fig, ax = plt.subplots(figsize=(9, 1.6 + 0.7 * len(names)))
    for i, (d, label) in enumerate(zip(DIRECTIONS, ("image -> text", "text -> image"))):
        bars = ax.barh([y + 0.2 - 0.4 * i for y in range(len(names))], [share_kept(students[n], teacher, d) for n in names],
                       height=0.38, label=label)
        ax.bar_label(bars, fmt="%.0f %%", fontsize=7, padding=2)
    ax.axvline(GOAL, color="k", ls="--", lw=0.8, label=f"goal: {GOAL:.0f} %")
    ax.set_yticks(range(len(names)),
                  [f"{n}\n{students[n]['pairs_per_s'] / teacher['pairs_per_s']:.2f}x pairs/s" for n in names], fontsize=7)
    ax.set(xlabel="Rank@1 kept (% of the teacher's)", xlim=(0, 120),
           title=f"Students against the teacher ({teacher['rank'][DIRECTIONS[0]]['rank1']:.1f} / "
                 f"{teacher['rank'][DIRECTIONS[1]]['rank1']:.1f} Rank@1)")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=3)
    fig.tight_layout()
    return write_png(fig, out, bbox_inches="tight")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", nargs="+", type=Path, help="distill.json files")
    for path in ap.parse_args().results:
        print(f"wrote {plot(json.loads(path.read_text()), path.with_name('rank1_kept.png'))}")


if __name__ == "__main__":
    main()
