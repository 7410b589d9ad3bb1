"""INT8 graphs by NVIDIA Model Optimizer and NNCF against each other, fbinfer's former hand-built
Q/DQ graphs, and their own defaults: Q/DQ placement, Rank@1 drift on the bench's drift set, speed.

For one checkpoint and its bundle (``fbinfer export``), every INT8 candidate is scored on every
pair of the drift set (``fbinfer.bench.driftset``, 1,300+ queries per direction, 16 candidates)
against PyTorch FP32: ΔRank@1 per direction with its paired 95 % interval, top-1 agreement and
mean |Δlogit|. TensorRT's Q/DQ graphs run in ONNX Runtime on the CPU with FP32 around the Q/DQ
(numerics only: TensorRT does not install here, and ONNX Runtime's CPU FP16 kernels would make
the 20,000-pair scoring take half an hour per graph; the FP16 lowering's own drift is the bench's
``trt-int8-graph`` row). OpenVINO graphs run in OpenVINO with the f32 hint, and are timed at
batch 64 with the f32 and bf16 hints, every graph taking turns in the same run. ``--hand`` adds
the Q/DQ graph of a bundle exported by fbinfer before it used these tools (git af71dd4): its
``ov.int8`` was fbinfer's own TensorRT Q/DQ before the FP16 lowering, run on both backends.

Usage: python benchmarks/int8_quantizers.py MODEL.pt --bundle MODEL.bundle [--hand OLD.bundle]
       [--data DATA] [--rounds 10] [--out benchmarks/results/int8_quantizers_NAME.json]
"""
from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
from rich.table import Table

from fbinfer import terminal
from fbinfer.backends import openvino
from fbinfer.backends.onnxruntime import OnnxRuntimeRunner
from fbinfer.backends.pytorch import TorchRunner
from fbinfer.bench.config import DriftSetConfig
from fbinfer.bench.drift import LazyScores, drift
from fbinfer.bench.driftset import DriftPairs, drift_data
from fbinfer.bundle import Bundle
from fbinfer.bundle.io_spec import INPUT_IDS, LOGIT
from fbinfer.data.candidates import SHORT
from fbinfer.data.features import FeatureStore
from fbinfer.data.source import load_data
from fbinfer.evaluation.timing import times_in_turns, timing
from fbinfer.export import modelopt_int8, openvino_int8, qdq
from fbinfer.export.config import CalibrationConfig
from fbinfer.export.exporter import ExportConfig, calibration_feeds, versions
from fbinfer.export.onnxruntime_int8 import smooth
from fbinfer.fileio import sha256, write_json
from fbinfer.machine import cpu_flags
from fbinfer.model.checkpoint import load_checkpoint
from fbinfer.threads import cpu_count, torch_threads

console = terminal.console()
# its defaults except the FP16 lowering, which every row leaves out: the rows compare quantizers
MODELOPT_DEFAULTS = {"calibration_method": "entropy", "op_types_to_quantize": None, "nodes_to_exclude": None, "dq_only": False}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("--bundle", type=Path, required=True)
    ap.add_argument("--hand", type=Path, help="a bundle exported at git af71dd4 (hand-built Q/DQ graphs)")
    ap.add_argument("--data", type=Path, help="default: the checkpoint's training data")
    ap.add_argument("--rounds", type=int, default=10, help="timing rounds (every OpenVINO graph once per round)")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    torch_threads()
    ck = load_checkpoint(args.model)
    data = load_data(ck.training_data(args.data))
    bundle = Bundle.open(args.bundle)
    cc = CalibrationConfig(**{k: tuple(v) if k == "exclude" else v
                              for k, v in bundle.manifest["export_config"]["calibration"].items()})
    calib = calibration_feeds(ck, data, FeatureStore(data, ck.config).ensure(data.train), cc)
    dcfg = DriftSetConfig()
    dset = drift_data(data, dcfg)
    pairs = DriftPairs.build(dset, FeatureStore(dset, ck.config).ensure(dset.test), ck.tokenizer(), dcfg)
    queries = pairs.looks[-1]
    console.print(f"drift set: {pairs.describe()['queries_per_direction']} queries per direction, {pairs.pairs} pairs; scoring torch fp32")
    reference = pairs.matrices(LazyScores(TorchRunner(ck.model).activate().infer, pairs, "torch fp32").upto(len(pairs.looks) - 1), queries)

    fp32 = onnx.load(str(bundle.graph("tensorrt", "fp32")))
    ov = {"fp32 graph (no INT8)": bundle.graph("tensorrt", "fp32"),
          "fbinfer: NNCF (ONNX backend), exclusions": bundle.graph("openvino", "int8")}
    trt: dict[str, Path] = {}
    if args.hand:  # its ov.int8 is its TensorRT Q/DQ before the FP16 lowering
        trt["hand-built Q/DQ (fbinfer at af71dd4)"] = Bundle.open(args.hand).graph("openvino", "int8")
        ov["hand-built Q/DQ (fbinfer at af71dd4)"] = trt["hand-built Q/DQ (fbinfer at af71dd4)"]
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        smoothed = _smoothed(fp32, calib, cc.exclude)
        made = {
            "fbinfer: Model Optimizer, weight MatMuls, exclusions, SmoothQuant":
                lambda: modelopt_int8.quantize_tensorrt(smoothed, calib, cc, {"disable_mha_qdq": True}),
            "Model Optimizer, MatMuls and attention products (--int8-attention), exclusions, SmoothQuant":
                lambda: modelopt_int8.quantize_tensorrt(smoothed, calib, cc),
            "Model Optimizer defaults (entropy, every op type)": lambda: modelopt_int8.quantize_tensorrt(fp32, calib, cc, MODELOPT_DEFAULTS),
            "Model Optimizer, weight MatMuls, no exclusions, SmoothQuant":
                lambda: modelopt_int8.quantize_tensorrt(_smoothed(fp32, calib, ()), calib, CalibrationConfig(exclude=()), {"disable_mha_qdq": True}),
            "Model Optimizer, weight MatMuls, exclusions, no SmoothQuant": lambda: modelopt_int8.quantize_tensorrt(fp32, calib, cc, {"disable_mha_qdq": True})}
        for name, make in made.items():
            console.print(f"quantizing: {name}")
            trt[name] = _save(make(), Path(tmp) / f"trt.{len(trt)}.onnx")
        ov["NNCF (ONNX backend), no exclusions"] = _save(openvino_int8.quantize_openvino(fp32, calib, CalibrationConfig(exclude=())),
                                                        Path(tmp) / "ov.noexcl.onnx")
        ov["NNCF (ONNX backend), exclusions, fbinfer's SmoothQuant first"] = _save(
            openvino_int8.quantize_openvino(smoothed, calib, cc), Path(tmp) / "ov.smoothed.onnx")
        ov["NNCF (OpenVINO backend), exclusions"] = _nncf_openvino_backend(fp32, calib, cc, Path(tmp) / "ov.ir" / "ov.xml")
        for name, path in trt.items():
            rows.append(_drift_row("tensorrt Q/DQ (onnxruntime, fp32 around)", name, path, OnnxRuntimeRunner(path).activate().infer, pairs, reference))
        runners = {name: {p: openvino.OpenVINORunner(path, openvino.hints_for(p)) for p in ("fp32", "bf16")} for name, path in ov.items()}
        for name, path in ov.items():
            rows.append(_drift_row("openvino (f32 hint)", name, path, runners[name]["fp32"].infer, pairs, reference))
        feed = next(b for b in pairs.batches if len(b[INPUT_IDS]) == 64)
        calls = [(name, p, r) for name, by in runners.items() for p, r in by.items()]
        times = times_in_turns([lambda r=r: r.infer(feed) for _, _, r in calls], args.rounds, desc="openvino, batch 64, in turns")
        speed = {(name, p): timing(ms, 64) for (name, p, _), ms in zip(calls, times)}
    for row in rows:
        if row["backend"].startswith("openvino"):
            row["pairs_per_s"] = {p: round(speed[(row["graph"], p)].pairs_per_s, 1) for p in ("fp32", "bf16")}
    result = {"command": " ".join(shlex.quote(a) for a in [sys.executable.split("/")[-1], *sys.argv]),
              "checkpoint": {"path": str(args.model), "sha256": sha256(args.model), "recipe": ck.meta.get("recipe"),
                             "preset": ck.config.name},
              "bundle": str(args.bundle), "calibration": {"method": cc.method, "pairs": cc.batches * cc.batch_size,
                                                          "excluded_groups": list(cc.exclude)},
              "drift_set": pairs.describe(), "cpu": cpu_flags(), "versions": {**versions(), "nvidia-modelopt": modelopt_int8.modelopt_version(),
                                                                              "nncf": openvino_int8.nncf_version()},
              "timing": {"batch": 64, "rounds": args.rounds, "threads": cpu_count()}, "rows": rows}
    write_json(args.out, result)
    _print(result)


def _smoothed(fp32: onnx.ModelProto, calib: list[dict[str, np.ndarray]], exclude: tuple[str, ...]) -> onnx.ModelProto:
    return smooth(fp32, calib, exclude, ExportConfig().smooth_alpha)[0]


def _save(model: onnx.ModelProto, path: Path) -> Path:
    onnx.save(model, str(path))
    return path


def _nncf_openvino_backend(fp32: onnx.ModelProto, calib: list[dict[str, np.ndarray]], cc: CalibrationConfig, xml: Path) -> Path:
    """The same NNCF settings through its OpenVINO backend (the graph read by OpenVINO first), saved
    as IR: does the bundle's ONNX Q/DQ form cost OpenVINO anything?"""
    import nncf
    import openvino as ov

    with tempfile.TemporaryDirectory() as tmp:
        src = _save(fp32, Path(tmp) / "fp32.onnx")
        model = ov.Core().read_model(str(src))
        names = qdq.excluded_matmuls(fp32, cc.exclude)
        ignored = nncf.IgnoredScope(names=[op.get_friendly_name() for op in model.get_ops() if op.get_friendly_name() in names],
                                    validate=False)
        quantized = nncf.quantize(model, nncf.Dataset(calib), model_type=nncf.ModelType.TRANSFORMER, ignored_scope=ignored,
                                  subset_size=len(calib))
    xml.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(quantized, str(xml), compress_to_fp16=False)
    return xml


def _drift_row(backend: str, name: str, path: Path, infer: Callable, pairs: DriftPairs, reference: dict[str, np.ndarray]) -> dict:
    console.print(f"scoring the drift set: {name} on {backend}")
    scores = LazyScores(lambda f: {LOGIT: infer(f)[LOGIT]}, pairs, name)
    got = pairs.matrices(scores.upto(len(pairs.looks) - 1), pairs.looks[-1])
    row = {"backend": backend, "graph": name, "file": path.name, "drift": drift(reference, got, bar=1.0).to_dict()}
    if path.suffix == ".onnx":
        m = qdq.qdq_matmuls(onnx.load(str(path)))
        row["matmuls"] = {"int8": len(m["int8"]), "total": len(m["int8"]) + len(m["float"])}
        row["qdq_pairs"] = sum(n.op_type == "QuantizeLinear" for n in onnx.load(str(path)).graph.node)
    return row


def _print(result: dict) -> None:
    t = Table(title=f"INT8 by quantizer: {result['checkpoint']['preset']} (sha256 {result['checkpoint']['sha256'][:12]}), "
                    f"{result['drift_set']['queries_per_direction']} queries/direction x {result['drift_set']['candidates']}")
    for c in ("backend", "graph", "int8 MatMuls", "ΔR@1 i2t [95% CI]", "ΔR@1 t2i [95% CI]", "top-1 agree", "mean |Δlogit|",
              "pairs/s f32", "pairs/s bf16"):
        t.add_column(c)
    for r in result["rows"]:
        d = r["drift"]
        ci = [f"{d[s]['delta']:+.2f} [{d[s]['low']:+.2f}, {d[s]['high']:+.2f}]" for s in (SHORT["image_to_text"], SHORT["text_to_image"])]
        mm = f"{r['matmuls']['int8']}/{r['matmuls']['total']}" if "matmuls" in r else "-"
        sp = r.get("pairs_per_s", {})
        t.add_row(r["backend"], r["graph"], mm, *ci, f"{d['top1_agreement']:.3f}", f"{d['mean_abs_dlogit']:.4f}",
                  str(sp.get("fp32", "-")), str(sp.get("bf16", "-")))
    console.print(t)


if __name__ == "__main__":
    main()
