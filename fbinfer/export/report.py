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


def _change(row: dict) -> str:
    """'+0.0 [-32, +32] / ...': with a few parity queries the interval says how little they can tell."""
    return " / ".join(f"{row[k]['delta']:+.1f} [{row[k]['low']:+.0f}, {row[k]['high']:+.0f}]" for k in ("i2t", "t2i") if k in row) or "-"


def bundle_table(manifest: dict) -> Table:
    table = Table(title=f"{manifest['config']['name']} vs PyTorch, {manifest['parity_data']['queries_per_direction']} "
                        "queries/direction x 101 candidates")
    for col in ("graph", "backend", "prec", "max |d|", "mean |d|", "max |d| / spread", "R@1 agree", "top-5 agree",
                "dR@1 i2t / t2i [95 % CI]", "notes"):
        table.add_column(col, justify="left" if col in ("graph", "backend", "prec", "notes") else "right", overflow="fold")
    for row in manifest["parity"]:
        table.add_row(row["graph"], row["backend"], row["precision"], f"{row['max_abs_logit_diff']:.1e}",
                      f"{row['mean_abs_logit_diff']:.1e}", f"{row['max_rel_logit_diff']:.1%}",
                      f"{100 * row['rank1_agreement']:.0f}%", f"{100 * row['top5_agreement']:.0f}%", _change(row),
                      _notes(manifest["graphs"][row["graph"]], row))
    return table
