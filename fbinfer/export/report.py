"""The export's result table (rich): one row per graph and backend that ran it."""
from __future__ import annotations

from rich.table import Table


def _notes(g: dict, row: dict) -> str:
    if row["backend"] != "onnxruntime":
        return ", ".join(f"{v} hint" for v in row.get("hints", {}).values())
    if "choice" in g:
        return g["choice"].split(":")[0]
    if "fused_ops" in g:
        return " ".join(f"{k}x{v}" for k, v in g["fused_ops"].items())
    if "fp32_islands" in g:
        return f"{len(g['fp32_islands'])} FP32 nodes"
    return ""


def bundle_table(manifest: dict) -> Table:
    table = Table(title=f"{manifest['config']['name']} vs PyTorch, {manifest['parity_data']['queries_per_direction']} "
                        "queries/direction x 101 candidates")
    for col in ("graph", "backend", "prec", "max |d|", "mean |d|", "max |d| / spread", "R@1 agree", "top-5 agree", "notes"):
        table.add_column(col, justify="left" if col in ("graph", "backend", "prec", "notes") else "right")
    for row in manifest["parity"]:
        table.add_row(row["graph"], row["backend"], row["precision"], f"{row['max_abs_logit_diff']:.1e}",
                      f"{row['mean_abs_logit_diff']:.1e}", f"{row['max_rel_logit_diff']:.1%}",
                      f"{100 * row['rank1_agreement']:.0f}%", f"{100 * row['top5_agreement']:.0f}%",
                      _notes(manifest["graphs"][row["graph"]], row))
    return table
