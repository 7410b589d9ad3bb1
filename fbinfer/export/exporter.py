"""``fbinfer export``: a checkpoint -> a bundle folder that alone is enough to serve
(``fbinfer.bundle.folder`` lists its files).

Every graph is checked twice before the bundle is complete: by the ONNX project's own validator
(``onnx.checker`` with ``full_check``), and against PyTorch on held-out pairs by every backend
that runs it here (the manifest's parity table). The bundle is written under a temporary name
and renamed when complete.
"""
from __future__ import annotations

import importlib.metadata
import shutil
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np
import onnx
from tqdm import tqdm

from fbinfer.backends import openvino
from fbinfer.backends.base import Runner
from fbinfer.backends.onnxruntime import OnnxRuntimeRunner
from fbinfer.backends.onnxruntime import unavailable as ort_unavailable
from fbinfer.backends.pytorch import TorchRunner
from fbinfer.backends.registry import graph_runner
from fbinfer.bundle import Bundle, graph_key
from fbinfer.bundle.folder import MANIFEST
from fbinfer.bundle.io_spec import OUTPUTS, PATCHES, PIXELS, batch_size, input_specs, make_feeds
from fbinfer.data.features import FeatureStore
from fbinfer.data.preprocess import GraphExtractor, ImagePreprocess
from fbinfer.data.source import DataSource
from fbinfer.errors import BackendUnavailable, FbinferError, ParityError
from fbinfer.export import modelopt_int8, onnxruntime_int8, openvino_int8, qdq
from fbinfer.export.config import CalibrationConfig, ExportConfig
from fbinfer.export.extractor import export_extractor
from fbinfer.export.fused_model import CLS_ONLY
from fbinfer.export.graphs import OPSET, check_graph, export_fp32, fuse_for_onnxruntime, nonstandard_ops, op_counts, to_fp16
from fbinfer.export.parity import ParitySet, compare
from fbinfer.fileio import atomic_path, sha256
from fbinfer.model.checkpoint import Checkpoint, load_checkpoint
from fbinfer.output_paths import check_folder_output, output_lock
from fbinfer.training.pairs import PairSampler


def default_bundle_dir(checkpoint: Path) -> Path:
    return checkpoint.with_name(checkpoint.stem + ".bundle")


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


def versions() -> dict[str, str]:
    out = {}
    for pkg in ("torch", "onnx", "onnxruntime", "onnxruntime-gpu", "onnxscript", "openvino", "fbinfer"):
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


class _Export:
    """One export in progress: the bundle being written, the PyTorch reference logits of the parity
    pairs, and the check every graph passes."""

    def __init__(self, bundle: Bundle, parity: ParitySet, reference: np.ndarray, ec: ExportConfig):
        self.bundle, self.parity, self.reference, self.ec = bundle, parity, reference, ec

    def compare(self, runner: Runner, label: str) -> dict:
        return compare(self.reference, self.parity.logits(runner, f"parity: {label}"), self.parity.queries,
                       directions=self.parity.directions)

    def check(self, key: str, backend: str, precision: str, runner: Runner, **notes) -> dict:
        """One parity row; an FP32 run off by more than the tolerance fails the export."""
        row = self.compare(runner, f"{key} on {backend} {precision}")
        if precision == "fp32" and row["max_abs_logit_diff"] > self.ec.fp32_tolerance:
            raise ParityError(f"export failed: {key} on {backend} differs from PyTorch by {row['max_abs_logit_diff']:.2e} "
                               f"in the logit (> {self.ec.fp32_tolerance:g})")
        self.bundle.add_parity(key, backend, precision, row, **notes)
        return row

    def add(self, target: str, precision: str, graph: onnx.ModelProto | None = None, **info) -> dict:
        """Save ``graph`` (unless already written) at its bundle path, validate it with onnx.checker,
        record it, and check it in ONNX Runtime against PyTorch."""
        path = self.bundle.graph_path(target, precision)
        if graph is not None:
            onnx.save(graph, str(path))
        check_graph(path)
        entry = self.bundle.add_graph(target, precision, ops=op_counts(onnx.load(str(path), load_external_data=False)), **info)
        self.check(graph_key(target, precision), "onnxruntime", precision, OnnxRuntimeRunner(path))
        return entry


def check_tools(ec: ExportConfig) -> None:
    """Before any work: ONNX Runtime (the export quantizes with it and checks parity on it) and the
    INT8 graphs' quantizers, each missing one named with its install."""
    if missing := ort_unavailable():
        raise BackendUnavailable(f"export: {missing}")
    if "int8" in ec.precisions:
        for target, version in (("tensorrt", modelopt_int8.modelopt_version), ("openvino", openvino_int8.nncf_version)):
            if target in ec.targets:
                try:
                    version()
                except FbinferError as e:
                    raise BackendUnavailable(f"export: {e}; or leave {target} out of --targets or int8 out of --precision") from None


def export_bundle(checkpoint: Path, data: DataSource, out: Path, ec: ExportConfig, force: bool = False) -> dict:
    """Write the bundle; returns its manifest. FP32 graphs off by more than ``fp32_tolerance``
    in any logit, on any backend, fail the export (nothing is left behind)."""
    ec = ec.validate()
    check_tools(ec)
    check_folder_output(out, "-o", force, MANIFEST, inputs=(checkpoint, data.path))
    ck = load_checkpoint(checkpoint)
    cfg = ck.config
    store = FeatureStore(data, cfg).ensure(data.train + data.test)
    store.check(cfg)
    calib = calibration_feeds(ck, data, store, ec.calibration) if "int8" in ec.precisions else []
    parity = ParitySet.from_data(data, store, ck.tokenizer(), ec.parity_queries)
    reference = parity.logits(TorchRunner(ck.model), "parity: pytorch")
    header = {
        "model": "fashionbert",
        "source": {"checkpoint": str(checkpoint.resolve()), "sha256": sha256(checkpoint), "meta": ck.meta},
        "config": cfg.to_dict(),
        "tokenizer": {"vocab": VOCAB, "lowercase": True, "max_length": cfg.max_text_len},
        "features": {"key": cfg.feature_key, "patches": cfg.num_patches, "dim": cfg.patch_feature_dim},
        "inputs": [s.to_dict() for s in input_specs(cfg)], "outputs": [s.to_dict() for s in OUTPUTS],
        "max_batch": ec.max_batch, "opset": OPSET[ec.attention], "versions": versions(),
        "parity_data": {"data": str(data.path), "fingerprint": data.fingerprint(), "split": "test",
                        "queries_per_direction": ec.parity_queries},
        "export_config": {**asdict(ec), "calibration": asdict(ec.calibration)},
    }
    with output_lock(out), atomic_path(out) as tmp:
        tmp.mkdir()
        job = _Export(Bundle.create(tmp, header), parity, reference, ec)
        fp32 = export_fp32(ck.model, job.bundle.graph_path("tensorrt", "fp32"), ec.attention, ec.max_batch)
        if nonstandard_ops(fp32):
            raise FbinferError(f"export failed: TensorRT graph has non-standard ops {nonstandard_ops(fp32)}")
        entry = job.add("tensorrt", "fp32", opset=OPSET[ec.attention], attention=ec.attention, last_layer=CLS_ONLY)
        if "fp32" not in ec.precisions:
            entry["note"] = "always written: every other graph is derived from it"
        ov_here = "openvino" in ec.targets and openvino.unavailable() is None
        if ov_here:
            _openvino_float(job)
        if "tensorrt" in ec.targets and "fp16" in ec.precisions:
            g16, islands = to_fp16(fp32, ec.fp32_ops, ec.fp32_head)
            job.add("tensorrt", "fp16", g16, fp32_islands=islands, fp32_ops=list(ec.fp32_ops), fp32_head=ec.fp32_head,
                    parity_note=FP16_NOTE)
        smoothed = _smooth(fp32, calib, ec) if "int8" in ec.precisions else (fp32, 0)  # once, for every INT8 graph
        if "int8" in ec.precisions and {"tensorrt", "openvino"} & set(ec.targets):
            _qdq_int8(job, fp32, smoothed, calib, ov_here)
        if "onnxruntime" in ec.targets:
            fused = fuse_for_onnxruntime(job.bundle.graph_path("tensorrt", "fp32"), job.bundle.graph_path("onnxruntime", "fp32"))
            job.add("onnxruntime", "fp32", fused_ops=fused)
            if "int8" in ec.precisions:
                _onnxruntime_int8(job, calib, smoothed)
        _extractor(job, data, "tensorrt" in ec.targets and "fp16" in ec.precisions, ov_here)
        (tmp / VOCAB).write_text("\n".join(ck.vocab) + "\n", encoding="utf-8")
        job.bundle.add_file(VOCAB)
        job.bundle.save()
    return job.bundle.manifest


VOCAB = "vocab.txt"
FP16_NOTE = ("run in ONNX Runtime CPU, whose kernels upcast some FP16 ops to FP32 internally; "
             "GPU drift can be larger and is measured by the bench on a GPU")


def _extractor(job: _Export, data: DataSource, fp16: bool, openvino_here: bool, feature_images: int = 32) -> None:
    """The image extractor's graphs: features against PyTorch on the parity set's first
    ``feature_images`` images (every backend here), then the FP32 graph's features through the
    ONNX Runtime matcher on every parity pair, ranked against the PyTorch reference."""
    bundle = job.bundle
    unique = list({it.image: it for it in job.parity.images}.values())
    images = [data.open_image(it) for it in tqdm(unique, desc="parity images", unit="img", leave=False)]
    def on(backend: str) -> Callable[[Path, np.ndarray], np.ndarray]:
        return lambda path, px: graph_runner(backend, path, (PATCHES,)).activate().infer({PIXELS: px})[PATCHES]

    run = {backend: on(backend) for backend in ("onnxruntime", "openvino") if backend == "onnxruntime" or openvino_here}
    entry = export_extractor(bundle.config, bundle.folder, images[:feature_images], job.ec.max_batch, fp16, run)
    for g in entry.get("graphs", {}).values():
        bundle.add_file(g["file"])
    if "graphs" in entry:
        graph = GraphExtractor(OnnxRuntimeRunner(bundle.folder / entry["graphs"]["fp32"]["file"], outputs=(PATCHES,)),
                               ImagePreprocess.from_dict(entry["preprocess"]))  # what fbinfer.load runs
        feats = np.concatenate([graph(images[b:b + 32]) for b in range(0, len(images), 32)])
        matcher = bundle.graph_path("onnxruntime" if bundle.has_graph("onnxruntime", "fp32") else "tensorrt", "fp32")
        logits = job.parity.with_patches({it.image: f for it, f in zip(unique, feats)}).logits(OnnxRuntimeRunner(matcher),
                                                                                                "parity: extractor end to end")
        entry["end_to_end"] = {"matcher": matcher.name, **compare(job.reference, logits, job.parity.queries,
                                                                  directions=job.parity.directions)}
    bundle.manifest["extractor"] = entry


def _openvino_float(job: _Export) -> None:
    """OpenVINO parity of the standard FP32 graph: fp32 (the f32 hint), and bf16 where the CPU has it."""
    path = job.bundle.graph_path("tensorrt", "fp32")
    for precision in ("fp32", "bf16"):
        if precision == "bf16" and not openvino.supports_bf16():
            continue
        hints = openvino.hints_for(precision)
        job.check("trt.fp32", "openvino", precision, openvino.OpenVINORunner(path, hints), hints=hints)


def _smooth(graph: onnx.ModelProto, calib: list[dict[str, np.ndarray]], ec: ExportConfig) -> tuple[onnx.ModelProto, int]:
    """``graph`` smoothed with ``--int8-smooth`` (unchanged when it is 0), and the number of
    activations scaled."""
    return onnxruntime_int8.smooth(graph, calib, ec.calibration.exclude, ec.smooth_alpha) if ec.smooth_alpha else (graph, 0)


def _qdq_int8(job: _Export, fp32: onnx.ModelProto, smoothed: tuple[onnx.ModelProto, int], calib: list[dict[str, np.ndarray]],
              openvino_here: bool) -> None:
    """The explicit Q/DQ INT8 graphs. TensorRT's by NVIDIA Model Optimizer from ``smoothed`` (the
    FP32 graph after fbinfer's SmoothQuant, with the number of activations scaled: Model Optimizer's
    ONNX INT8 has none), FP16 elsewhere; OpenVINO's by NNCF from ``fp32`` (NNCF smooths for itself),
    FP32 elsewhere with OpenVINO's precision hint deciding."""
    ec, cc = job.ec, job.ec.calibration
    common = {"calibration": asdict(cc), "excluded_groups": list(cc.exclude)}
    if "tensorrt" in ec.targets:
        graph = modelopt_int8.quantize_tensorrt(smoothed[0], calib, cc, {"disable_mha_qdq": not ec.int8_attention})
        if problems := qdq.check_qdq(graph):
            raise FbinferError(f"export failed: Model Optimizer's Q/DQ breaks TensorRT's rules: {problems[0]}")
        g, islands = to_fp16(graph, ec.fp32_ops, ec.fp32_head)
        job.add("tensorrt", "int8", g, fp32_islands=islands, quantization={
            **common, "quantizer": {"name": "nvidia-modelopt", "version": modelopt_int8.modelopt_version()},
            "smoothing": {"by": "fbinfer", "alpha": ec.smooth_alpha, "scaled_activations": smoothed[1]},
            "scheme": "symmetric int8, zero point 0; weights per output channel; activations per tensor",
            "matmuls": qdq.qdq_matmuls(graph), "attention_products": "int8" if ec.int8_attention else "fp16", "elsewhere": "fp16"})
    if "openvino" in ec.targets:
        graph = openvino_int8.quantize_openvino(fp32, calib, cc)
        job.add("openvino", "int8", graph, quantization={
            **common, "quantizer": {"name": "nncf", "version": openvino_int8.nncf_version()},
            "scheme": openvino_int8.SCHEME, "matmuls": qdq.qdq_matmuls(graph), "smoothing": {"by": "nncf"},
            "elsewhere": "fp32 graph; OpenVINO's precision hint"})
        if openvino_here:
            hints = openvino.hints_for("int8")
            job.check("ov.int8", "openvino", "int8", openvino.OpenVINORunner(job.bundle.graph_path("openvino", "int8"), hints),
                      hints=hints)




def _onnxruntime_int8(job: _Export, calib: list[dict[str, np.ndarray]], trt_smoothed: tuple[onnx.ModelProto, int]) -> None:
    """Both CPU INT8 candidates, timed on one parity batch; the chosen one is ort.int8.onnx. The
    dynamic one starts from the fused graph, smoothed here; the Q/DQ one from ``trt_smoothed``
    (the TensorRT graph, smoothed)."""
    ec, tmp = job.ec, job.bundle.folder
    paths = {"dynamic": tmp / "ort.int8.dynamic.onnx", "qdq": tmp / "ort.int8.qdq.onnx"}
    sources = {"dynamic": job.bundle.graph_path("onnxruntime", "fp32"), "qdq": job.bundle.graph_path("tensorrt", "fp32")}
    exclude, scaled = ec.calibration.exclude, dict.fromkeys(paths, 0)
    if ec.smooth_alpha:
        smoothed = {"dynamic": _smooth(onnx.load(str(sources["dynamic"])), calib, ec), "qdq": trt_smoothed}
        for kind, (graph, n) in smoothed.items():
            scaled[kind], sources[kind] = n, tmp / f"ort.int8.{kind}.smoothed.onnx"
            onnx.save(graph, str(sources[kind]))
    kept = {"dynamic": onnxruntime_int8.quantize_dynamic_int8(sources["dynamic"], paths["dynamic"], exclude),
            "qdq": onnxruntime_int8.quantize_qdq_u8s8(sources["qdq"], paths["qdq"], calib, ec.calibration.method, exclude)}
    batch = job.parity.batches[0]
    candidates = {kind: {"parity": job.compare(OnnxRuntimeRunner(path), f"ort.int8 {kind} candidate"),
                         "latency_ms": onnxruntime_int8.median_latency_ms(path, batch), "batch": batch_size(batch),
                         "float_nodes": kept[kind]}
                  for kind, path in paths.items()}
    chosen = onnxruntime_int8.choose(candidates, ec.cpu_int8)
    fp32_ms = onnxruntime_int8.median_latency_ms(job.bundle.graph_path("onnxruntime", "fp32"), batch)
    shutil.move(paths[chosen], job.bundle.graph_path("onnxruntime", "int8"))
    for path in [*paths.values(), *(sources.values() if ec.smooth_alpha else ())]:
        path.unlink(missing_ok=True)
    job.add("onnxruntime", "int8", method=chosen, candidates=candidates, fp32_latency_ms=fp32_ms, excluded_groups=list(exclude),
            smoothing={"alpha": ec.smooth_alpha, "scaled_activations": scaled[chosen]},
            scheme="int8 weights per output channel; uint8 activations per tensor"
                   + (", outlier channels moved into the weights (SmoothQuant)" if scaled[chosen] else ""),
            choice=f"{chosen}: faster at equal drift" if ec.cpu_int8 == "auto" else f"{chosen}: --cpu-int8")
