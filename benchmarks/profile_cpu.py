"""Where the time of a CPU path goes: OpenVINO's per-node counters on real batches, each compiled
node charged to the work of the ONNX nodes it was fused from.

    python benchmarks/profile_cpu.py runs/teacher7/model.bundle --data runs/data --precision int8 --batch 64

Categories, from the ONNX graph the node came from: "matmul (weights)" (a MatMul/Gemm with a
constant weight: the Linear layers), "attention" (the activation x activation MatMuls and
Softmax), "quantize" (QuantizeLinear/DequantizeLinear left as their own kernels), "norm and
element-wise" (LayerNorm, GELU, adds, the mask), and "data movement" (Transpose, Reshape, Concat,
Gather, OpenVINO's layout Reorders). A fused kernel holding a weight MatMul counts as matmul, one
holding attention as attention. The matmul FLOPs per pair (fbinfer.bench.flops) and the machine's
measured peak give each category's rate next to its time.
"""
from __future__ import annotations

import argparse
import collections
import platform
from pathlib import Path

import onnx

from fbinfer.backends import openvino as ovb
from fbinfer.backends.registry import open_runner
from fbinfer.bench.flops import matmuls
from fbinfer.bench.run import peaks, resolve, timing_feeds
from fbinfer.bundle.io_spec import INPUT_IDS
from fbinfer.data.features import FeatureStore
from fbinfer.evaluation.evaluate import eval_pairs
from fbinfer.export.qdq import weight_ops
from fbinfer.fileio import write_json
from fbinfer.threads import cpu_count, torch_threads

CATEGORIES = ("matmul (weights)", "attention", "quantize", "norm and element-wise", "data movement")
MOVES = {"Transpose", "Reshape", "Concat", "Gather", "Slice", "Squeeze", "Unsqueeze", "Shape", "Expand", "Reorder", "Input",
         "Output", "Const", "Parameter", "Result", "Cast", "Convert", "Split", "Broadcast"}


def onnx_categories(path: Path) -> dict[str, str]:
    """ONNX node name -> category."""
    model = onnx.load(str(path), load_external_data=False)
    weights = {o.node for o in weight_ops(model)}
    out = {}
    for n in model.graph.node:
        if n.name in weights:
            out[n.name] = CATEGORIES[0]
        elif n.op_type in ("MatMul", "Softmax"):
            out[n.name] = CATEGORIES[1]
        elif n.op_type in ("QuantizeLinear", "DequantizeLinear"):
            out[n.name] = CATEGORIES[2]
        elif n.op_type in MOVES:
            out[n.name] = CATEGORIES[4]
        else:
            out[n.name] = CATEGORIES[3]
    return out


def charge(layer_type: str, originals: list[str], by_name: dict[str, str]) -> str:
    """The category a compiled node's time goes to: the heaviest kind of work it was fused from.
    OpenVINO's FullyConnected is a MatMul with a constant weight (fused with its bias Add, and
    named after the Add alone), its MatMul one of two activations (attention)."""
    if layer_type.startswith("FullyConnected"):
        return CATEGORIES[0]
    if layer_type == "MatMul":
        return CATEGORIES[1]
    found = {by_name[o] for o in originals if o in by_name}
    for c in CATEGORIES[:3]:
        if c in found:
            return c
    if layer_type in MOVES or (found and found <= {CATEGORIES[4]}):
        return CATEGORIES[4]
    return CATEGORIES[3]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model", type=Path, help="checkpoint or bundle")
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--precision", default="int8", choices=ovb.PRECISIONS)
    ap.add_argument("--rest", choices=("f32", "bf16"), default=None,
                    help="int8: the precision of what is not quantized (default: the backend's, f32)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/profile_cpu.json"))
    args = ap.parse_args()
    torch_threads()
    mb = resolve(args.model, args.data)
    store = FeatureStore(mb.data, mb.ck.config).ensure(mb.data.test)
    feeds = timing_feeds(mb, store, eval_pairs(mb.data), args.batch)
    # one request on every core: the counters of one whole batch
    hints = {**ovb.hints_for(args.precision), "PERF_COUNT": "YES"}
    if args.rest:
        hints["INFERENCE_PRECISION_HINT"] = args.rest
    runner = open_runner("openvino", mb.bundle, args.precision, hints=hints, streams=1).activate()
    graph = runner.path
    by_name = onnx_categories(graph)
    nodes = {op.get_friendly_name(): (str(op.get_rt_info()["layerType"].astype(str)),
                                      [s for s in op.get_rt_info()["originalLayersNames"].astype(str).split(",") if s])
             for op in runner.compiled.get_runtime_model().get_ordered_ops()}
    for _ in range(3):
        runner.infer(feeds)
    totals: collections.Counter[str] = collections.Counter()
    kernels: collections.Counter[str] = collections.Counter()
    for _ in range(args.repeats):
        runner.infer(feeds)
        for p in runner.requests[0].profiling_info:
            us = p.real_time.total_seconds() * 1e6
            layer_type, originals = nodes.get(p.node_name, (p.node_type, []))
            totals[charge(layer_type, originals, by_name)] += us / args.repeats
            kernels[f"{p.node_type} ({p.exec_type})"] += us / args.repeats
    total_us = sum(totals.values())
    width = int(feeds[INPUT_IDS].shape[1])
    mm = matmuls(mb.ck.config, width)
    weight_flops = 2 * args.batch * sum(m.macs for m in mm if m.weight)
    attention_flops = 2 * args.batch * sum(m.macs for m in mm if not m.weight)
    peak = peaks()
    rows = {c: {"ms": round(totals[c] / 1e3, 2), "share": round(totals[c] / total_us, 4)} for c in CATEGORIES}
    rows[CATEGORIES[0]]["gflops_per_s"] = round(weight_flops / (totals[CATEGORIES[0]] * 1e-6) / 1e9, 1)
    rows[CATEGORIES[1]]["gflops_per_s"] = round(attention_flops / max(totals[CATEGORIES[1]] * 1e-6, 1e-9) / 1e9, 1)
    result = {"model": mb.name, "graph": graph.name, "precision": args.precision, "settings": runner.describe(),
              "batch": args.batch, "text_len": width, "total_ms": round(total_us / 1e3, 2), "categories": rows,
              "top_kernels_ms": {k: round(v / 1e3, 2) for k, v in kernels.most_common(12)},
              "peak_gflops_per_s": {k: round(v / 1e9, 1) for k, v in peak.items()},
              "machine": {"platform": platform.platform(), "threads": cpu_count()}}
    write_json(args.out, result)
    for c, r in rows.items():
        print(f"{c:24s} {r['ms']:8.1f} ms {100 * r['share']:5.1f} %" + (f"  {r['gflops_per_s']} GFLOP/s" if "gflops_per_s" in r else ""))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
