"""``fbinfer export``: a checkpoint -> a bundle folder that alone is enough to serve.

    bundle/
      manifest.json     source sha256, config, I/O spec, versions, and per graph: file, target,
                        precision, parity against PyTorch, ops, FP32 islands, quantization
      vocab.txt         the tokenizer's WordPiece vocab (lower-cased BERT WordPiece)
      trt.fp32.onnx     standard ops only: fused patch embedding, attention for TensorRT
      trt.fp16.onnx     FP16 with measured FP32 islands
      trt.int8.onnx     explicit Q/DQ (TensorRT rules), FP16 elsewhere
      ort.fp32.onnx     fused for ONNX Runtime (MultiHeadAttention, SkipLayerNormalization, BiasGelu)
      ort.int8.onnx     CPU INT8 (dynamic or u8s8 Q/DQ, whichever measured faster at equal drift)
      int8.ranges.json  the activation thresholds the INT8 graph was built with

The bundle is written under a temporary name and renamed when complete.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import onnx

from fbinfer.data.features import FeatureStore
from fbinfer.data.source import DataSource
from fbinfer.errors import FbinferError
from fbinfer.export import cpu_int8
from fbinfer.export.graphs import OPSET, export_fp32, fuse_for_onnxruntime, nonstandard_ops, op_counts, to_fp16
from fbinfer.export.int8 import CalibrationConfig, calibrate, calibration_key, check_qdq, insert_qdq, weight_ops
from fbinfer.export.io_spec import OUTPUTS, input_specs, make_feeds
from fbinfer.export.parity import ParitySet, compare
from fbinfer.fileio import atomic_path, write_json
from fbinfer.model.checkpoint import Checkpoint, load_checkpoint
from fbinfer.runtime.runners import OnnxRuntimeRunner, TorchRunner
from fbinfer.training.pairs import PairSampler

PRECISIONS = ("fp32", "fp16", "int8")
TARGETS = ("tensorrt", "onnxruntime")
MANIFEST = "manifest.json"
FORMAT = "fbinfer.bundle"


@dataclass(frozen=True)
class ExportConfig:
    precisions: tuple[str, ...] = PRECISIONS
    targets: tuple[str, ...] = TARGETS
    attention: str = "matmul"
    max_batch: int = 256
    fp32_ops: tuple[str, ...] = ("LayerNormalization",)  # FP16 islands; chosen by benchmarks/export_precision.py
    fp32_head: bool = True  # pooler + TIA logit in FP32
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)
    cpu_int8: str = "auto"
    smooth_alpha: float = 0.75  # SmoothQuant migration strength for both INT8 graphs, 0 = off (README, "CPU INT8")
    parity_queries: int = 8  # per direction, each with 101 candidates
    fp32_tolerance: float = 1e-4

    def validate(self) -> ExportConfig:
        for p in self.precisions:
            if p not in PRECISIONS:
                raise FbinferError(f"--precision: unknown precision {p!r} (choose from {', '.join(PRECISIONS)})")
        for t in self.targets:
            if t not in TARGETS:
                raise FbinferError(f"--targets: unknown target {t!r} (choose from {', '.join(TARGETS)})")
        if self.cpu_int8 not in cpu_int8.CPU_INT8_KINDS:
            raise FbinferError(f"--cpu-int8 must be one of {', '.join(cpu_int8.CPU_INT8_KINDS)}, not {self.cpu_int8!r}")
        if not 0 <= self.smooth_alpha <= 1:
            raise FbinferError(f"--int8-smooth must be in [0, 1] (0 = off), not {self.smooth_alpha}")
        if self.max_batch < 1:
            raise FbinferError(f"--max-batch must be >= 1, not {self.max_batch}")
        self.calibration.validate()
        return self


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def training_data(ck: Checkpoint, checkpoint: Path, data: Path | None) -> Path:
    """``data`` if given, else the data the checkpoint was trained on (its meta records it)."""
    if data is not None:
        return data
    if not ck.meta.get("data"):
        raise FbinferError(f"{checkpoint}: the checkpoint names no training data; pass --data")
    return Path(ck.meta["data"])


def default_bundle_dir(checkpoint: Path) -> Path:
    return checkpoint.with_name(checkpoint.stem + ".bundle")


def check_output(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise FbinferError(f"-o {out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise FbinferError(f"-o {out}: folder is not empty (use --force to overwrite it)")
    probe = out.parent.resolve()
    while not probe.exists():
        probe = probe.parent
    if not os.access(probe, os.W_OK):
        raise FbinferError(f"-o {out}: {probe} is not writable")


def calibration_feeds(ck: Checkpoint, data: DataSource, store: FeatureStore, cc: CalibrationConfig) -> list[dict[str, np.ndarray]]:
    """Real training pairs, matched and unmatched 50/50 as in training, padded to the full text
    length (ONNX Runtime's histogram calibrators stack batches, so shapes must agree)."""
    need = cc.batches * cc.batch_size
    if len(data.train) < need:
        raise FbinferError(f"--calib-data {data.path}: calibration data too small ({len(data.train)} training items, "
                           f"need {need} = {cc.batches} batches x {cc.batch_size}; lower --calib-batches)")
    sampler = PairSampler(data.train, seed=0, batch_size=cc.batch_size)
    tok = ck.tokenizer()
    feeds = []
    for step in range(cc.batches):
        texts, images, _ = sampler.pairs(step)
        feeds.append(make_feeds(tok, store.get(images).numpy(), [t.text for t in texts], pad_to=ck.config.max_text_len))
    return feeds


def check_features(ck: Checkpoint, store: FeatureStore, data: DataSource, option: str = "--calib-data") -> None:
    cfg = ck.config
    sample = store.get(data.train[:1])
    if tuple(sample.shape[1:]) != (cfg.num_patches, cfg.patch_feature_dim):
        raise FbinferError(f"{option} {data.path}: patch features are {tuple(sample.shape[1:])}, "
                           f"the model wants ({cfg.num_patches}, {cfg.patch_feature_dim})")


def versions() -> dict[str, str]:
    out = {}
    for pkg in ("torch", "onnx", "onnxruntime", "onnxscript", "fbinfer"):
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def export_bundle(checkpoint: Path, data: DataSource, out: Path, ec: ExportConfig, force: bool = False) -> dict:
    """Write the bundle; returns its manifest. FP32 graphs off by more than ``fp32_tolerance``
    in any logit fail the export (nothing is left behind)."""
    ec = ec.validate()
    check_output(out, force)
    ck = load_checkpoint(checkpoint)
    cfg = ck.config
    store = FeatureStore(data, cfg).ensure(data.train + data.test)
    check_features(ck, store, data)
    calib = calibration_feeds(ck, data, store, ec.calibration) if "int8" in ec.precisions else []
    parity = ParitySet.from_data(data, store, ck.tokenizer(), ec.parity_queries)
    reference = parity.logits(TorchRunner(ck.model), "parity: pytorch")
    graphs: dict[str, dict] = {}

    def verify(name: str, path: Path, target: str, precision: str, record: bool = True, **extra) -> dict:
        got = parity.logits(OnnxRuntimeRunner(path), f"parity: {name}")
        entry = {"file": path.name, "target": target, "precision": precision, "parity": compare(reference, got, parity.queries),
                 "ops": op_counts(onnx.load(str(path), load_external_data=False)), **extra}
        if precision == "fp32" and entry["parity"]["max_abs_logit_diff"] > ec.fp32_tolerance:
            raise FbinferError(f"export failed: {path.name} differs from PyTorch by {entry['parity']['max_abs_logit_diff']:.2e} "
                               f"in the logit (> {ec.fp32_tolerance:g})")
        if record:
            graphs[name] = entry
        return entry

    with atomic_path(out) as tmp:
        tmp.mkdir()
        base = tmp / "trt.fp32.onnx"
        fp32 = export_fp32(ck.model, base, ec.attention, ec.max_batch)
        if nonstandard_ops(fp32):
            raise FbinferError(f"export failed: TensorRT graph has non-standard ops {nonstandard_ops(fp32)}")
        verify("trt.fp32", base, "tensorrt", "fp32", opset=OPSET[ec.attention], attention=ec.attention)
        if "tensorrt" in ec.targets and "fp16" in ec.precisions:
            g16, islands = to_fp16(fp32, ec.fp32_ops, ec.fp32_head)
            onnx.save(g16, str(tmp / "trt.fp16.onnx"))
            verify("trt.fp16", tmp / "trt.fp16.onnx", "tensorrt", "fp16", fp32_islands=islands,
                   fp32_ops=list(ec.fp32_ops), fp32_head=ec.fp32_head, parity_note=FP16_NOTE)
        # SmoothQuant on the TensorRT graph, once: both the TensorRT INT8 graph and the CPU Q/DQ candidate start from it
        smoothed = _smooth(fp32, calib, ec) if "int8" in ec.precisions else (fp32, 0)
        if "tensorrt" in ec.targets and "int8" in ec.precisions:
            graphs_int8 = _tensorrt_int8(*smoothed, calib, data, ec, tmp)
            verify("trt.int8", tmp / "trt.int8.onnx", "tensorrt", "int8", **graphs_int8)
        if "onnxruntime" in ec.targets:
            fused = fuse_for_onnxruntime(base, tmp / "ort.fp32.onnx")
            verify("ort.fp32", tmp / "ort.fp32.onnx", "onnxruntime", "fp32", fused_ops=fused)
            if "int8" in ec.precisions:
                _onnxruntime_int8(tmp, calib, ec, parity, verify, smoothed)
        if "fp32" not in ec.precisions:
            graphs["trt.fp32"]["note"] = "always written: every other graph is derived from it"
        (tmp / "vocab.txt").write_text("\n".join(ck.vocab) + "\n", encoding="utf-8")
        manifest = {
            "format": FORMAT, "format_version": 1,
            "source": {"checkpoint": str(checkpoint), "sha256": sha256(checkpoint), "meta": ck.meta},
            "config": cfg.to_dict(),
            "tokenizer": {"vocab": "vocab.txt", "lowercase": True, "max_length": cfg.max_text_len},
            "features": {"key": cfg.feature_key, "patches": cfg.num_patches, "dim": cfg.patch_feature_dim},
            "inputs": [s.to_dict() for s in input_specs(cfg)], "outputs": [s.to_dict() for s in OUTPUTS],
            "max_batch": ec.max_batch, "opset": OPSET[ec.attention], "versions": versions(),
            "parity_data": {"data": str(data.path), "fingerprint": data.fingerprint(), "split": "test",
                            "queries_per_direction": ec.parity_queries},
            "export_config": {**asdict(ec), "calibration": asdict(ec.calibration)},
            "graphs": graphs,
        }
        write_json(tmp / MANIFEST, manifest)
    return manifest


FP16_NOTE = ("run in ONNX Runtime CPU, whose kernels upcast some FP16 ops to FP32 internally; "
             "GPU drift can be larger and is measured by the bench on a GPU")


def _smooth(graph: onnx.ModelProto, calib: list[dict[str, np.ndarray]], ec: ExportConfig) -> tuple[onnx.ModelProto, int]:
    """``graph`` smoothed with ``--int8-smooth`` (unchanged when it is 0), and the number of
    activations scaled."""
    return cpu_int8.smooth(graph, calib, ec.calibration.exclude, ec.smooth_alpha) if ec.smooth_alpha else (graph, 0)


def _tensorrt_int8(fp32: onnx.ModelProto, scaled: int, calib: list[dict[str, np.ndarray]], data: DataSource,
                   ec: ExportConfig, tmp: Path) -> dict:
    """``fp32``: the TensorRT graph, already smoothed (``scaled`` activations; one element-wise
    Mul before each Q, which TensorRT can fuse with its neighbours)."""
    cc = ec.calibration
    ops = [o for o in weight_ops(fp32) if o.group not in cc.exclude]
    key = calibration_key(fp32, data.fingerprint(), cc)
    ranges = calibrate(fp32, calib, sorted({o.activation for o in ops}), cc, data.cache_dir / "calibration" / f"{key}.json")
    qdq = insert_qdq(fp32, ops, ranges)
    problems = check_qdq(qdq)
    if problems:
        raise FbinferError(f"export failed: Q/DQ breaks TensorRT's rules: {problems[0]}")
    g, islands = to_fp16(qdq, ec.fp32_ops, ec.fp32_head)
    onnx.save(g, str(tmp / "trt.int8.onnx"))
    write_json(tmp / "int8.ranges.json", ranges)
    return {"fp32_islands": islands, "quantization": {
        "scheme": "symmetric int8, zero point 0; weights per output channel; activations per tensor",
        "calibration": {**asdict(cc), "cache_key": key, "ranges": "int8.ranges.json"},
        "quantized_nodes": [o.node for o in ops], "excluded_groups": list(cc.exclude),
        "smoothing": {"alpha": ec.smooth_alpha, "scaled_activations": scaled}, "elsewhere": "fp16"}}


def _onnxruntime_int8(tmp: Path, calib: list[dict[str, np.ndarray]], ec: ExportConfig, parity: ParitySet, verify,
                      trt_smoothed: tuple[onnx.ModelProto, int]) -> None:
    """Both CPU INT8 candidates, timed on one parity batch; the chosen one is ort.int8.onnx. The
    dynamic one starts from the fused graph, smoothed here; the Q/DQ one from ``trt_smoothed``
    (the TensorRT graph, smoothed once for both INT8 targets)."""
    paths = {"dynamic": tmp / "ort.int8.dynamic.onnx", "qdq": tmp / "ort.int8.qdq.onnx"}
    sources = {"dynamic": tmp / "ort.fp32.onnx", "qdq": tmp / "trt.fp32.onnx"}
    exclude, scaled = ec.calibration.exclude, dict.fromkeys(paths, 0)
    if ec.smooth_alpha:
        smoothed = {"dynamic": _smooth(onnx.load(str(sources["dynamic"])), calib, ec), "qdq": trt_smoothed}
        for kind, (graph, n) in smoothed.items():
            scaled[kind], sources[kind] = n, tmp / f"ort.int8.{kind}.smoothed.onnx"
            onnx.save(graph, str(sources[kind]))
    kept = {"dynamic": cpu_int8.quantize_dynamic_int8(sources["dynamic"], paths["dynamic"], exclude),
            "qdq": cpu_int8.quantize_qdq_u8s8(sources["qdq"], paths["qdq"], calib, ec.calibration.method, exclude)}
    candidates = {}
    for kind, path in paths.items():
        entry = verify(f"ort.int8.{kind}", path, "onnxruntime", "int8", record=False)
        candidates[kind] = {"parity": entry["parity"], "latency_ms": cpu_int8.median_latency_ms(path, parity.batches[0]),
                            "batch": int(parity.batches[0]["input_ids"].shape[0]), "float_nodes": kept[kind]}
    chosen = cpu_int8.choose(candidates, ec.cpu_int8)
    fp32_ms = cpu_int8.median_latency_ms(tmp / "ort.fp32.onnx", parity.batches[0])
    shutil.move(paths[chosen], tmp / "ort.int8.onnx")
    entry = verify("ort.int8", tmp / "ort.int8.onnx", "onnxruntime", "int8", method=chosen, candidates=candidates,
                   fp32_latency_ms=fp32_ms, excluded_groups=list(exclude),
                   smoothing={"alpha": ec.smooth_alpha, "scaled_activations": scaled[chosen]},
                   scheme="int8 weights per output channel; uint8 activations per tensor"
                          + (", outlier channels moved into the weights (SmoothQuant)" if scaled[chosen] else ""))
    entry["choice"] = f"{chosen}: faster at equal drift" if ec.cpu_int8 == "auto" else f"{chosen}: --cpu-int8"
    for path in [*paths.values(), *(sources.values() if ec.smooth_alpha else ())]:
        path.unlink(missing_ok=True)
