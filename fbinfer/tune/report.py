"""``fbinfer tune``'s table: every candidate's speed and drift, the chosen plan of each backend marked."""
from __future__ import annotations

from rich.table import Table

from fbinfer.bench.report import ci_text


def tune_table(tuning: dict, title: str) -> Table:
    chosen = {p["name"] for p in tuning["plans"].values() if p}
    lists = tuning["lists"]
    table = Table(title=f"{title}: candidates at batch {tuning['batch']}, Rank@1 drift (points, 95 % interval) against torch fp32 "
                        f"on {lists['queries_per_direction']} tuning queries x {lists['candidates']} candidates; "
                        f"bar {tuning['bar']:g}; * = chosen")
    for c in ("plan", "pairs/s", "p50 ms", "dR@1 i2t", "dR@1 t2i", "top1", "verdict", "queries"):
        table.add_column(c, justify="left" if c in ("plan", "verdict") else "right", overflow="fold")
    for c in sorted(tuning["candidates"], key=lambda c: (c["backend"], -c["pairs_per_s"])):
        d = c["drift"]
        table.add_row(("* " if c["name"] in chosen else "  ") + c["name"], f"{c['pairs_per_s']:.0f}", f"{c['latency_ms']['p50']:.2f}",
                      ci_text(d, "i2t"), ci_text(d, "t2i"),
                      f"{d['top1_agreement']:.3f}", c["verdict"] + ("" if c.get("inside_bar", True) or c["verdict"] != "within"
                                                                       else ", interval past the bar"), str(d["queries"]))
    return table
