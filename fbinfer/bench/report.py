"""The bench's outputs: a rich table, and with ``--report DIR`` a Markdown report and PNG plots."""
from __future__ import annotations

from pathlib import Path

from rich.table import Table

from fbinfer.fileio import atomic_path, write_png


def _label(r: dict) -> str:
    return f"{r['backend']} {r['precision']} ({r['variant']})" + (" [peer]" if r.get("peer") else "")


def summary_table(result: dict) -> Table:
    """fbinfer's fastest path within the drift bar against the fastest peer, per model and batch."""
    table = Table(title=f"fbinfer's fastest path (|dRank@1| <= {result['config']['max_drift']:g} point both ways) "
                        "against the fastest peer")
    for c in ("model", "batch", "fbinfer", "pairs/s", "p50 ms", "dR@1 i2t/t2i", "peer", "pairs/s ", "ratio"):
        table.add_column(c, justify="left" if c in ("model", "fbinfer", "peer") else "right")
    for s in result["summary"]:
        table.add_row(s["model"], str(s["batch"]), s["best"], f"{s['best_pairs_per_s']:.1f}", f"{s['best_latency_p50_ms']:.1f}",
                      "/".join(f"{d:+.2f}" for d in s["best_d_rank1"]), s["best_peer"], f"{s['peer_pairs_per_s']:.1f}",
                      f"{s['ratio']:.2f}x")
    return table


def bench_table(result: dict) -> Table:
    """One row per model x backend x batch; the backend column is the --backends key."""
    table = Table(title=f"fbinfer bench on {result['machine']['cpu_threads']} threads"
                        + (f", {result['machine']['gpu']}" if result["machine"]["gpu"] else ", CPU")
                        + ": speed, and Rank@1 drift (points) against torch-fp32")
    cols = ("model", "backend", "batch", "pairs/s", "p50 ms", "p99 ms", "% peak", "R@1 i2t", "R@1 t2i", "dR@1 i2t", "dR@1 t2i",
            "top1", "max|dl|")
    for c in cols:
        table.add_column(c, justify="left" if c in ("model", "backend") else "right", overflow="fold")
    for r in result["results"]:
        d = r.get("drift", {})
        timed = r["batch"] is not None
        table.add_row(r["model"], r["key"] + (" (peer)" if r.get("peer") else ""), str(r["batch"] or "-"), f"{r['pairs_per_s']:.1f}" if timed else "-",
                      f"{r['latency_ms']['p50']:.1f}" if timed else "-", f"{r['latency_ms']['p99']:.1f}" if timed else "-",
                      f"{r['pct_of_peak']:.1f}" if timed else "-",
                      f"{r['rank']['image_to_text']['rank1']:.2f}", f"{r['rank']['text_to_image']['rank1']:.2f}",
                      f"{d['d_rank1_i2t']:+.2f}" if d else "ref", f"{d['d_rank1_t2i']:+.2f}" if d else "ref",
                      f"{100 * d['top1_agreement']:.0f}%" if d else "ref", f"{d['max_abs_dlogit']:.0e}" if d else "ref")
    return table


def write_report(result: dict, folder: Path) -> list[Path]:
    """report.md, throughput.png (pairs/s vs batch per backend) and drift.png (Rank@1 change per backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    rows = result["results"]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    series: dict[str, list[tuple[int, float]]] = {}
    for r in rows:
        if r["batch"] is not None:
            series.setdefault(f"{r['model']}: {_label(r)}", []).append((r["batch"], r["pairs_per_s"]))
    for name, pts in series.items():
        pts.sort()
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name)
    ax.set(xscale="log", xlabel="batch (pairs)", ylabel="pairs / s", title="Throughput by backend")
    ax.legend(fontsize=7)
    fig.tight_layout()
    paths = [folder / "throughput.png", folder / "drift.png", folder / "report.md"]
    write_png(fig, paths[0])
    drifted = {f"{r['model']}: {_label(r)}": r["drift"] for r in rows if "drift" in r}
    fig, ax = plt.subplots(figsize=(7, 4.5))
    names = list(drifted)
    ax.barh([n for n in names], [drifted[n]["d_rank1_i2t"] for n in names], height=0.4, label="image->text")
    ax.barh([n for n in names], [drifted[n]["d_rank1_t2i"] for n in names], height=0.2, label="text->image")
    ax.axvline(0, color="k", lw=0.8)
    ax.set(xlabel="Rank@1 change against torch fp32 (points)", title="Ranking drift by backend")
    ax.tick_params(axis="y", labelsize=7)
    ax.legend(fontsize=7)
    fig.tight_layout()
    write_png(fig, paths[1])
    machine = f"Machine: {result['machine']['platform']}, {result['machine']['cpu_threads']} threads, GPU: {result['machine']['gpu'] or 'none'}."
    lines = ["# fbinfer bench", "", machine, "",
             "| model | backend | precision | variant | peer | batch | pairs/s | p50 ms | p95 ms | p99 ms | % of peak | R@1 i2t | R@1 t2i | dR@1 i2t | dR@1 t2i | top-1 agreement | Spearman | max abs dlogit |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        d, t = r.get("drift"), r["batch"] is not None
        lat = r.get("latency_ms", {})
        lines.append("| " + " | ".join(str(x) for x in (
            r["model"], r["backend"], r["precision"], r["variant"], "yes" if r.get("peer") else "", r["batch"] or "-",
            r.get("pairs_per_s", "-"),
            lat.get("p50", "-") if t else "-", lat.get("p95", "-") if t else "-", lat.get("p99", "-") if t else "-",
            r.get("pct_of_peak", "-"), r["rank"]["image_to_text"]["rank1"], r["rank"]["text_to_image"]["rank1"],
            d["d_rank1_i2t"] if d else "ref", d["d_rank1_t2i"] if d else "ref",
            d["top1_agreement"] if d else "ref", d["spearman"] if d else "ref", f"{d['max_abs_dlogit']:.2e}" if d else "ref")) + " |")
    if result.get("summary"):
        lines += ["", (f"fbinfer's fastest path with |dRank@1| <= {result['config']['max_drift']:g} point in both directions, "
                      "against the fastest peer:"), "", "| model | batch | fbinfer | pairs/s | peer | pairs/s | ratio |",
                  "|---|---|---|---|---|---|---|"]
        lines += [f"| {s['model']} | {s['batch']} | {s['best']} | {s['best_pairs_per_s']} | {s['best_peer']} | "
                  f"{s['peer_pairs_per_s']} | {s['ratio']:.2f}x |" for s in result["summary"]]
    if result["skipped"]:
        lines += ["", "Not run here:", ""] + [f"- {k}: {v}" for k, v in result["skipped"].items()]
    lines += ["", "![throughput](throughput.png)", "", "![drift](drift.png)", ""]
    with atomic_path(paths[2]) as tmp:
        tmp.write_text("\n".join(lines))
    return paths
