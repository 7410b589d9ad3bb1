"""The bench's outputs: rich tables, and with ``--report DIR`` a Markdown report and PNG plots."""
from __future__ import annotations

from pathlib import Path

from rich.table import Table

from fbinfer.bench.config import REFERENCE
from fbinfer.fileio import atomic_path, write_png

SIDES = (("i2t", "image->text"), ("t2i", "text->image"))


def _label(r: dict) -> str:
    return f"{r['backend']} {r['precision']} ({r['variant']})" + (" [peer]" if r.get("peer") else "")


def ci_text(d: dict | None, side: str) -> str:
    """'+0.31 [-0.40, +1.02]' points of Rank@1, or 'ref'."""
    if not d:
        return "ref"
    p = d[side]
    return f"{p['delta']:+.2f} [{p['low']:+.2f}, {p['high']:+.2f}]"


def _ci_list(x: list | None) -> str:
    return " / ".join(f"{a:+.2f} [{lo:+.2f}, {hi:+.2f}]" for a, lo, hi in x) if x else "ref"


def summary_table(result: dict) -> Table:
    """fbinfer's fastest path within the drift bar against the fastest peer, per model and batch."""
    table = Table(title=f"fbinfer's fastest path within the bar (|dRank@1| <= {result['config']['max_drift']:g} point both ways, "
                        "95 % interval no wider) against the fastest peer at any drift")
    for c in ("model", "batch", "fbinfer", "pairs/s", "p50 ms", "dR@1 i2t / t2i [95 % CI]", "peer", "peer pairs/s",
              "peer dR@1 [95 % CI]", "ratio", "timed", "faster, not within"):
        table.add_column(c, justify="left" if c in ("model", "fbinfer", "peer", "faster, not within") else "right", overflow="fold")
    for s in result["summary"]:
        table.add_row(s["model"], str(s["batch"]), s["best"], f"{s['best_pairs_per_s']:.1f}", f"{s['best_latency_p50_ms']:.2f}",
                      _ci_list(s["best_d_rank1"]), s["best_peer"], f"{s['peer_pairs_per_s']:.1f}",
                      f"{s['peer_verdict']}: {_ci_list(s['peer_d_rank1'])}", f"{s['ratio']:.2f}x", s.get("timing", "all rows in turns"),
                      ", ".join(f"{f['key']} ({f['verdict']})" for f in s["faster_not_within"]) or "-")
    return table


def bench_table(result: dict) -> Table:
    """One row per model x backend x batch; the backend column is the --backends key."""
    ref = {r["model"]: r["rank"] for r in result["results"] if r["key"] == REFERENCE}
    refs = "; ".join(f"{m} {k['image_to_text']['rank1']:.1f} / {k['text_to_image']['rank1']:.1f}" for m, k in ref.items())
    table = Table(title=f"fbinfer bench on {result['machine']['cpu_threads']} threads"
                        + (f", {result['machine']['gpu']}" if result["machine"]["gpu"] else ", CPU")
                        + ": speed, and Rank@1 drift (points, 95 % interval) against torch-fp32 on the drift set "
                        + f"(torch-fp32 Rank@1 i2t / t2i there: {refs})")
    cols = ("model", "backend", "batch", "pairs/s", "p50 ms", "p99 ms", "% peak", "dR@1 i2t", "dR@1 t2i", "top1", "verdict",
            "queries", "max|dl|")
    for c in cols:
        table.add_column(c, justify="left" if c in ("model", "backend", "verdict") else "right", overflow="fold")
    for r in result["results"]:
        d = r.get("drift")
        timed = r["batch"] is not None
        table.add_row(r["model"], r["key"] + (" (peer)" if r.get("peer") else ""), str(r["batch"] or "-"),
                      f"{r['pairs_per_s']:.1f}" if timed else "-", f"{r['latency_ms']['p50']:.2f}" if timed else "-",
                      f"{r['latency_ms']['p99']:.2f}" if timed else "-", f"{r['pct_of_peak']:.1f}" if timed else "-",
                      ci_text(d, "i2t"), ci_text(d, "t2i"), f"{100 * d['top1_agreement']:.1f}%" if d else "ref",
                      d["verdict"] if d else "ref", str(d["queries"] if d else r["rank"]["image_to_text"]["queries"]),
                      f"{d['max_abs_dlogit']:.0e}" if d else "ref")
    return table


def _throughput_plot(rows: list[dict], path: Path) -> None:
    """Lines over batch sizes; bars where the run had one batch size (three dots on a log axis say nothing)."""
    import matplotlib.pyplot as plt

    series: dict[str, list[tuple[int, float]]] = {}
    for r in rows:
        if r["batch"] is not None:
            series.setdefault(f"{r['model']}: {_label(r)}", []).append((r["batch"], r["pairs_per_s"]))
    batches = sorted({b for pts in series.values() for b, _ in pts})
    fig, ax = plt.subplots(figsize=(8, 0.8 + 0.35 * max(len(series), 4)) if len(batches) == 1 else (8, 5))
    if len(batches) == 1:
        names = list(series)
        ax.barh(names, [series[n][0][1] for n in names])
        ax.set(xlabel=f"pairs / s at batch {batches[0]}", title="Throughput by backend")
        ax.tick_params(axis="y", labelsize=7)
    else:
        for name, pts in series.items():
            pts.sort()
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name)
        ax.set(xscale="log", xlabel="batch (pairs)", ylabel="pairs / s", title="Throughput by backend")
        ax.legend(fontsize=7)
    fig.tight_layout()
    write_png(fig, path)


def _drift_plot(rows: list[dict], bar: float, path: Path) -> None:
    """Each row's Rank@1 change with its 95 % interval per direction, the bar shaded; a change of 0
    is drawn as a point, so a row that did not drift is visible, not an empty line."""
    import matplotlib.pyplot as plt

    drifted = {f"{r['model']}: {_label(r)}": r["drift"] for r in rows if r.get("drift")}
    names = list(drifted)
    fig, ax = plt.subplots(figsize=(8, 1 + 0.45 * max(len(names), 3)))
    ax.axvspan(-bar, bar, color="0.92", label=f"the bar (+-{bar:g})")
    for off, (side, label) in zip((-0.15, 0.15), SIDES):
        y = [i + off for i in range(len(names))]
        d = [drifted[n][side] for n in names]
        ax.errorbar([p["delta"] for p in d], y, xerr=[[p["delta"] - p["low"] for p in d], [p["high"] - p["delta"] for p in d]],
                    fmt="o", capsize=3, label=label)
    ax.set_yticks(range(len(names)), [f"{n} ({drifted[n]['verdict']})" for n in names], fontsize=7)
    ax.axvline(0, color="k", lw=0.8)
    ax.set(xlabel="Rank@1 change against torch fp32 (points), 95 % interval", title="Ranking drift by backend")
    ax.legend(fontsize=7)
    fig.tight_layout()
    write_png(fig, path)


def write_report(result: dict, folder: Path) -> list[Path]:
    """report.md, throughput.png (pairs/s per backend) and drift.png (Rank@1 change with its interval)."""
    import matplotlib

    matplotlib.use("Agg")
    folder.mkdir(parents=True, exist_ok=True)
    rows = result["results"]
    paths = [folder / "throughput.png", folder / "drift.png", folder / "report.md"]
    _throughput_plot(rows, paths[0])
    _drift_plot(rows, result["config"]["max_drift"], paths[1])
    m = result["machine"]
    lines = ["# fbinfer bench", "",
             (f"Machine: {m['platform']}, {m['cpu_threads']} threads, CPU {m['cpu']['model']} ({' '.join(m['cpu']['flags'])}), "
             f"GPU: {m['gpu'] or 'none'}."), ""]
    lines += [f"Model {name}: {m['checkpoint']} (sha256 {m['checkpoint_sha256']}), bundle {m['bundle']}."
              for name, m in result.get("models", {}).items()]
    lines += [f"Drift set of {name}: {d['queries_per_direction']} queries per direction x {d['candidates']} candidates "
              f"({d['data']}); looks at {d['looks']} queries." for name, d in result["drift_sets"].items()]
    lines += ["", ("| model | backend | precision | variant | peer | batch | pairs/s | p50 ms | p95 ms | p99 ms | % of peak | R@1 i2t | "
              "R@1 t2i | dR@1 i2t [95 % CI] | dR@1 t2i [95 % CI] | top-1 agreement | verdict | queries | truth ties ref / row | "
              "Spearman | max abs dlogit |"), "|" + "---|" * 21]
    for r in rows:
        d, t = r.get("drift"), r["batch"] is not None
        lat = r.get("latency_ms", {})
        ties = f"{d['i2t']['truth_ties_reference'] + d['t2i']['truth_ties_reference']} / " \
               f"{d['i2t']['truth_ties_other'] + d['t2i']['truth_ties_other']}" if d else "-"
        lines.append("| " + " | ".join(str(x) for x in (
            r["model"], r["backend"], r["precision"], r["variant"], "yes" if r.get("peer") else "", r["batch"] or "-",
            r.get("pairs_per_s", "-"), lat.get("p50", "-") if t else "-", lat.get("p95", "-") if t else "-",
            lat.get("p99", "-") if t else "-", r.get("pct_of_peak", "-"), r["rank"]["image_to_text"]["rank1"],
            r["rank"]["text_to_image"]["rank1"], ci_text(d, "i2t"), ci_text(d, "t2i"), d["top1_agreement"] if d else "ref",
            d["verdict"] if d else "ref", d["queries"] if d else r["rank"]["image_to_text"]["queries"], ties,
            d["spearman"] if d else "ref", f"{d['max_abs_dlogit']:.2e}" if d else "ref")) + " |")
    if result.get("summary"):
        lines += ["", (f"fbinfer's fastest path within the bar (|dRank@1| <= {result['config']['max_drift']:g} point in both "
                       "directions and its 95 % interval no wider), against the fastest peer at any drift:"), "",
                  "| model | batch | fbinfer | pairs/s | dR@1 i2t / t2i | peer | pairs/s | peer verdict, dR@1 | ratio | timed | faster, not within |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        lines += [f"| {s['model']} | {s['batch']} | {s['best']} | {s['best_pairs_per_s']} | {_ci_list(s['best_d_rank1'])} | "
                  f"{s['best_peer']} | {s['peer_pairs_per_s']} | {s['peer_verdict']}: {_ci_list(s['peer_d_rank1'])} | {s['ratio']:.2f}x | "
                  f"{s.get('timing', 'all rows in turns')} | "
                  + (", ".join(f"{f['key']} ({f['verdict']})" for f in s["faster_not_within"]) or "-") + " |" for s in result["summary"]]
    if result["skipped"]:
        lines += ["", "Not run here:", ""] + [f"- {k}: {v}" for k, v in result["skipped"].items()]
    lines += ["", "![throughput](throughput.png)", "", "![drift](drift.png)", ""]
    with atomic_path(paths[2]) as tmp:
        tmp.write_text("\n".join(lines))
    return paths
