"""What running the last layer on [CLS] alone saves: the export graph with the last layer's query,
output and feed-forward on [CLS] only (``ExportGraph(cls_only=True)``, what ``fbinfer export``
writes) against the same graph with every token through it, on OpenVINO bf16 and f32 and ONNX
Runtime fp32, in shuffled turns with 50 ms pauses on one batch of real test pairs; each graph's
logits against torch fp32 eager on that batch.

    python benchmarks/cls_only.py /work/exp/demo/student.pt --json benchmarks/results/cls_only_student.json
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch
from timing_batch import model_and_batch, pairs_per_s, provenance

from fbinfer.backends.registry import open_runner
from fbinfer.evaluation.timing import times_in_turns
from fbinfer.export.fused_model import ExportGraph
from fbinfer.export.graphs import OPSET, as_torch, trace
from fbinfer.fileio import write_json

RUNS = (("openvino", "bf16"), ("openvino", "fp32"), ("onnxruntime", "fp32"))


def main() -> None:
    args, mb, feeds = model_and_batch(__doc__, rounds=30)
    with torch.inference_mode():
        reference = mb.ck.model.eval()(*as_torch(feeds)).logit.numpy()
    runners, parity = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for form, cls in (("every token", False), ("[CLS] only", True)):
            path = Path(tmp) / f"{cls}.onnx"
            trace(ExportGraph(mb.ck.model, "matmul", cls_only=cls), mb.ck.config, path, OPSET["matmul"], mb.bundle.max_batch)
            for backend, precision in RUNS:
                key = f"{backend} {precision}, {form}"
                runners[key] = open_runner(backend, mb.bundle, precision, graph=path).activate()
                parity[key] = float(np.abs(runners[key].infer(feeds)["logit"] - reference).max())
        times = times_in_turns([lambda r=r: r.infer(feeds) for r in runners.values()], args.rounds, "graphs, in turns", pause_s=0.05)
    speed = pairs_per_s(runners, times, args.batch)
    result = {**provenance(args, mb),
              "text_len": int(feeds["input_ids"].shape[1]), "max_abs_logit_diff_vs_torch": parity, "pairs_per_s_median": speed,
              "speedup": {f"{b} {p}": round(speed[f"{b} {p}, [CLS] only"] / speed[f"{b} {p}, every token"], 3) for b, p in RUNS}}
    for k in runners:
        print(f"{k:36s} {speed[k]:8.1f} pairs/s   max|dlogit| vs torch {parity[k]:.1e}")
    for k, v in result["speedup"].items():
        print(f"{k}: [CLS] only {v:.2f}x every token")
    if args.json:
        write_json(args.json, result)


if __name__ == "__main__":
    main()
