"""CPU INT8 drift and speed against SmoothQuant's migration strength alpha and the float parts.

For one checkpoint and its bundle, quantizes the fused FP32 graph (``ort.fp32.onnx``)
dynamically, per output channel, as ``fbinfer export`` does, after smoothing with each alpha
(0 = no smoothing) and each exclusion set, and measures against the fused FP32 graph on the
held-out pairs of the fixed candidate lists: max and mean |delta logit|, Rank@1 agreement, and
the median latency of one batch of 64 real pairs (all graphs and FP32 taking turns, in the same run). The default of
``fbinfer export --int8-smooth`` is chosen from this table.

Usage: python benchmarks/cpu_int8_smoothing.py MODEL.pt --bundle MODEL.bundle --data DATA
       [--queries 24] [--alphas 0,0.5,0.75,0.9] [--out benchmarks/results/cpu_int8_smoothing.json]
"""
from __future__ import annotations

import argparse
import platform
import tempfile
from pathlib import Path

import onnx
import torch
from rich.table import Table

from fbinfer import terminal
from fbinfer.backends.onnxruntime import OnnxRuntimeRunner
from fbinfer.evaluation.timing import median_ms_in_turns
from fbinfer.export import onnxruntime_int8
from fbinfer.export.config import CalibrationConfig
from fbinfer.export.exporter import calibration_feeds, versions
from fbinfer.export.parity import compare, held_out
from fbinfer.fileio import write_json
from fbinfer.threads import torch_threads

EXCLUSIONS = {"embeddings+head+layer:0": ("embeddings", "head", "layer:0"), "embeddings+head": ("embeddings", "head")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("--bundle", type=Path, required=True)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--queries", type=int, default=24, help="queries per direction, 101 candidates each")
    ap.add_argument("--alphas", default="0,0.5,0.75,0.9")
    ap.add_argument("--rounds", type=int, default=15, help="timing rounds (every graph once per round)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/cpu_int8_smoothing.json"))
    args = ap.parse_args()
    torch_threads()
    ck, data, store, parity = held_out(args.model, args.data, args.queries)
    calib = calibration_feeds(ck, data, store, CalibrationConfig())
    fused = args.bundle / "ort.fp32.onnx"
    reference = parity.logits(OnnxRuntimeRunner(fused), "fused fp32")
    graph = onnx.load(str(fused))
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        graphs = [fused]
        for excluded, groups in EXCLUSIONS.items():
            for alpha in (float(a) for a in args.alphas.split(",")):
                src, out = Path(tmp) / "smoothed.onnx", Path(tmp) / f"int8.{len(rows)}.onnx"
                onnx.save(onnxruntime_int8.smooth(graph, calib, groups, alpha)[0] if alpha else graph, str(src))
                onnxruntime_int8.quantize_dynamic_int8(src, out, groups)
                drift = compare(reference, parity.logits(OnnxRuntimeRunner(out), f"alpha {alpha}, {excluded}"), parity.queries)
                rows.append({"excluded": excluded, "alpha": alpha, **drift})
                graphs.append(out)
        feed = parity.batches[0]
        runners = [OnnxRuntimeRunner(g).activate() for g in graphs]
        fp32_ms, *int8_ms = median_ms_in_turns([lambda r=r: r.infer(feed) for r in runners], args.rounds, "timing, graphs in turn")
    for r, ms in zip(rows, int8_ms):
        r.update(latency_ms=ms, speedup_vs_fp32=fp32_ms / ms)
    table = Table(title=f"CPU INT8 (dynamic, per-channel) vs fused FP32: {args.queries} queries per direction")
    for col in ("kept in float", "alpha", "max |dlogit|", "mean |dlogit|", "Rank@1 agreement", "ms / 64 pairs", "x FP32"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["excluded"], f"{r['alpha']:g}", f"{r['max_abs_logit_diff']:.3f}", f"{r['mean_abs_logit_diff']:.4f}",
                      f"{r['rank1_agreement']:.1%}", f"{r['latency_ms']:.0f}", f"{r['speedup_vs_fp32']:.2f}")
    terminal.console().print(table)
    write_json(args.out, {"machine": {"platform": platform.platform(), "threads": torch.get_num_threads(), **versions()},
                          "model": str(args.model), "data": str(args.data), "queries_per_direction": args.queries,
                          "fp32_latency_ms": fp32_ms, "timing_rounds": args.rounds, "batch": int(parity.batches[0]["input_ids"].shape[0]), "rows": rows})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
