"""``fbinfer.load``: a checkpoint, a bundle folder or a TensorRT engine -> a Matcher.

    matcher = fbinfer.load("model.bundle")                 # ONNX Runtime FP32 (TensorRT if an engine and a GPU exist)
    matcher = fbinfer.load("model.pt", device="cuda", precision="fp16")
    matcher.rank("red striped midi dress", ["a.jpg", "b.jpg", ...], k=5)
"""
from __future__ import annotations

from pathlib import Path

from fbinfer.errors import FbinferError
from fbinfer.fileio import read_json
from fbinfer.model.config import FashionBertConfig
from fbinfer.model.tokenizer import TextTokenizer
from fbinfer.runtime.matcher import Matcher
from fbinfer.runtime.runners import OnnxRuntimeRunner, TorchRunner

BACKENDS = ("torch", "onnxruntime", "tensorrt")
TENSORRT_BUCKETS = (16, 32, 48, 64)  # text lengths an engine sees: few shapes around its tuned profile
MANIFEST = "manifest.json"


def load(path: str | Path, backend: str | None = None, device: str | None = None, precision: str | None = None,
         batch_size: int = 64) -> Matcher:
    """``backend``: torch (checkpoints), onnxruntime or tensorrt (bundles/engines); ``device``: cpu or
    cuda; ``precision``: fp32, fp16, bf16 (torch) or int8 (bundles)."""
    p = Path(path)
    if backend is not None and backend not in BACKENDS:
        raise FbinferError(f"backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    if p.is_file() and p.suffix == ".plan":
        return _bundle(p.parent, "tensorrt", device, _engine_precision(p), batch_size)
    if p.is_dir():
        return _bundle(p, backend, device, precision, batch_size)
    if p.is_file():
        if backend not in (None, "torch"):
            raise FbinferError(f"{p}: a checkpoint runs on the torch backend; export it (fbinfer export {p}) for {backend}")
        return _checkpoint(p, device, precision or "fp32", batch_size)
    raise FbinferError(f"{p}: no such checkpoint, bundle folder or engine")


def _checkpoint(p: Path, device: str | None, precision: str, batch_size: int) -> Matcher:
    import torch

    from fbinfer.model.checkpoint import load_checkpoint

    dtypes = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    if precision not in dtypes:
        raise FbinferError(f"precision {precision!r}: the torch backend runs fp32, fp16 or bf16")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise FbinferError("device 'cuda': this torch has no CUDA device (install a CUDA build of torch on a GPU machine)")
    if precision == "fp16" and device == "cpu":
        raise FbinferError("precision fp16 needs device 'cuda' (CPU fp16 matmuls are slow and not a serving target); use bf16 or fp32")
    ck = load_checkpoint(p)
    runner = TorchRunner(ck.model, device=device, dtype=dtypes[precision], name=f"torch-{precision}-{device}")
    return Matcher(runner, ck.tokenizer(), ck.config, batch_size)


def _bundle(folder: Path, backend: str | None, device: str | None, precision: str | None, batch_size: int) -> Matcher:
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        raise FbinferError(f"{folder}: not an fbinfer bundle (no {MANIFEST}; make one with fbinfer export MODEL.pt)")
    manifest = read_json(manifest_path)
    if manifest.get("format") != "fbinfer.bundle":
        raise FbinferError(f"{manifest_path}: not an fbinfer bundle manifest (format {manifest.get('format')!r})")
    cfg = FashionBertConfig.from_dict(manifest["config"])
    vocab_file = folder / manifest["tokenizer"]["vocab"]
    if not vocab_file.is_file():
        raise FbinferError(f"{folder}: bundle is missing its vocab ({vocab_file.name})")
    tokenizer = TextTokenizer(vocab_file.read_text(encoding="utf-8").splitlines(), cfg.max_text_len)
    engines = manifest.get("engines", {})
    if backend is None:
        backend = "tensorrt" if engines and _tensorrt_usable() else "onnxruntime"
    precision = precision or "fp32"
    if backend == "tensorrt":
        from fbinfer.engines.tensorrt import TensorRTRunner

        record = engines.get(precision)
        if record is None:
            raise FbinferError(f"{folder}: no TensorRT {precision} engine; build it with: fbinfer build {folder} --precision {precision}")
        runner = TensorRTRunner(folder / record["file"], record, folder)
    elif backend == "onnxruntime":
        name = f"ort.{precision}"
        if name not in manifest["graphs"]:
            have = sorted(g for g in manifest["graphs"] if g.startswith("ort."))
            raise FbinferError(f"{folder}: no ONNX Runtime {precision} graph (has {', '.join(have) or 'none'})")
        runner = OnnxRuntimeRunner(folder / manifest["graphs"][name]["file"], providers=_ort_providers(device))
    else:
        raise FbinferError(f"{folder}: a bundle runs on onnxruntime or tensorrt, not {backend}; load the checkpoint for torch")
    buckets = TENSORRT_BUCKETS if backend == "tensorrt" else None
    return Matcher(runner, tokenizer, cfg, batch_size, buckets)


def _ort_providers(device: str | None) -> tuple[str, ...]:
    if device is None or device == "cpu":
        return ("CPUExecutionProvider",)
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        raise FbinferError("device 'cuda' for ONNX Runtime needs onnxruntime-gpu (pip install onnxruntime-gpu)")
    return ("CUDAExecutionProvider", "CPUExecutionProvider")


def _engine_precision(plan: Path) -> str:
    """engine.<precision>.plan, as fbinfer build names it."""
    parts = plan.name.split(".")
    if len(parts) != 3 or parts[0] != "engine":
        raise FbinferError(f"{plan}: not an fbinfer engine name (engine.<precision>.plan inside a bundle)")
    return parts[1]


def _tensorrt_usable() -> bool:
    try:
        import tensorrt  # noqa: F401
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()
