"""Which ops stay FP32 in the FP16 graph, and which parts stay out of INT8: chosen by measured drift.

For one checkpoint and its data, exports the FP32 TensorRT graph once, then measures against
PyTorch (ONNX Runtime CPU, held-out pairs of the fixed candidate lists):
  fp16  each FP32-island policy (op types kept FP32, with/without the pooler + TIA head in FP32);
  int8  each calibration method x each exclusion set (embeddings, head, first/last layer).
Drift = max and mean |delta logit| and Rank@1 agreement with PyTorch. The defaults of
``fbinfer export`` (``ExportConfig``) are the cheapest policy within the best drift.

Usage: python benchmarks/export_precision.py MODEL.pt --data DATA [--queries 16] [--out benchmarks/results]
"""
from __future__ import annotations

import argparse
import json
import platform
import tempfile
from dataclasses import replace
from pathlib import Path

import onnx
from rich.console import Console
from rich.table import Table

from fbinfer.backends.onnxruntime import OnnxRuntimeRunner
from fbinfer.backends.pytorch import TorchRunner
from fbinfer.export.exporter import calibration_feeds, versions
from fbinfer.export.graphs import export_fp32, to_fp16
from fbinfer.export.int8 import CalibrationConfig, calibrate, insert_qdq, weight_ops
from fbinfer.export.parity import compare, held_out
from fbinfer.threads import torch_threads

FP16_POLICIES = {
    "none": ((), False),
    "head": ((), True),
    "layernorm": (("LayerNormalization",), False),
    "layernorm+head": (("LayerNormalization",), True),
    "layernorm+softmax+head": (("LayerNormalization", "Softmax"), True),
}


def int8_exclusions(layers: int) -> dict[str, tuple[str, ...]]:
    return {
        "none": (),
        "head": ("head",),
        "embeddings+head": ("embeddings", "head"),
        f"embeddings+head+layer:{layers - 1}": ("embeddings", "head", f"layer:{layers - 1}"),
        "embeddings+head+layer:0": ("embeddings", "head", "layer:0"),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--queries", type=int, default=16, help="queries per direction, 101 candidates each")
    ap.add_argument("--calib-batches", type=int, default=16)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = ap.parse_args()
    torch_threads()
    ck, data, store, parity = held_out(args.model, args.data, args.queries)
    reference = parity.logits(TorchRunner(ck.model), "pytorch")
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "fp32.onnx"
        fp32 = export_fp32(ck.model, base, "matmul", 256)

        def measure(kind: str, policy: str, graph: onnx.ModelProto) -> None:
            path = Path(tmp) / f"{kind}.{len(rows)}.onnx"
            onnx.save(graph, str(path))
            rows.append({"graph": kind, "policy": policy, **compare(reference, parity.logits(OnnxRuntimeRunner(path), policy), parity.queries)})

        measure("fp32", "-", fp32)
        for name, (ops, head) in FP16_POLICIES.items():
            measure("fp16", name, to_fp16(fp32, ops, head)[0])
        cc = CalibrationConfig(batches=args.calib_batches)
        feeds = calibration_feeds(ck, data, store, cc)
        all_ops = weight_ops(fp32)
        for method in ("max", "percentile", "entropy"):
            ranges = calibrate(fp32, feeds, sorted({o.activation for o in all_ops}), replace(cc, method=method))
            for name, exclude in int8_exclusions(ck.config.num_layers).items():
                ops = [o for o in all_ops if o.group not in exclude]
                measure("int8", f"{method} / exclude {name}", to_fp16(insert_qdq(fp32, ops, ranges), ("LayerNormalization",), True)[0])
    table = Table(title=f"{ck.config.name}: drift against PyTorch ({args.queries} queries/direction x 101)")
    for col in ("graph", "policy", "max |d|", "mean |d|", "R@1 agree"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["graph"], r["policy"], f"{r['max_abs_logit_diff']:.2e}", f"{r['mean_abs_logit_diff']:.2e}",
                      f"{100 * r['rank1_agreement']:.1f} %")
    Console().print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    result = {"model": str(args.model), "config": ck.config.name, "data": str(args.data), "queries_per_direction": args.queries,
              "machine": {"cpu_threads": len(__import__("os").sched_getaffinity(0)), "platform": platform.platform()},
              "versions": versions(), "rows": rows}
    (args.out / "export_precision.json").write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
