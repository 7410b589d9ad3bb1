"""``fbinfer.load``: a checkpoint, a bundle folder or a TensorRT engine -> a Matcher.

    matcher = fbinfer.load("model.bundle")                         # the plan fbinfer tune chose (else ONNX Runtime FP32)
    matcher = fbinfer.load("model.bundle", backend="openvino", precision="int8")
    matcher = fbinfer.load("model.pt", device="cuda", precision="fp16")
    matcher.rank("red striped midi dress", ["a.jpg", "b.jpg", ...], k=5)
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from fbinfer.backends.registry import backend as get_backend
from fbinfer.backends.registry import open_runner
from fbinfer.bundle import Bundle
from fbinfer.bundle.plan import fastest_tuned, tuned
from fbinfer.errors import FbinferError
from fbinfer.runtime.images import bundle_extractor, torch_extractor
from fbinfer.runtime.matcher import Matcher


def load(path: str | Path, backend: str | None = None, device: str | None = None, precision: str | None = None,
         batch_size: int = 64, verify: bool = True, **options: Any) -> Matcher:
    """A Matcher over ``path``.

    Args:
        path: a checkpoint (``model.pt``), a bundle folder, or a bundle's ``engine.<precision>.plan``.
        backend: torch, onnxruntime, openvino or tensorrt (``fbinfer.backends.describe()`` lists what
            runs here). Default: torch for a checkpoint; for a bundle, tensorrt where it has an engine
            and TensorRT runs, else the backend of the fastest plan ``fbinfer tune`` chose, else onnxruntime.
        device: cpu or cuda (default: the backend's).
        precision: fp32, fp16, bf16 or int8, as the backend offers. Default: the plan ``fbinfer tune``
            chose for the backend (its graph and hints), else fp32.
        batch_size: pairs per call into the backend.
        verify: check each bundle file's sha256 on first use (sizes are always checked).
        **options: ``length_groups``, the sub-batches by caption length each batch is scored as
            (default: the backend's, 4 on torch and ONNX Runtime, 1 on OpenVINO; 1 keeps batches whole),
            and the backend's own settings, e.g. OpenVINO's ``hints`` and ``streams``:
            ``precision="int8", hints={"INFERENCE_PRECISION_HINT": "bf16"}`` runs the INT8 graph
            with bf16 elsewhere (the bench's ``ov-int8-bf16``, the student's fastest path here).

    Returns:
        A Matcher: ``score`` aligned pairs, ``rank`` a query against candidates.

    Example:
        >>> m = fbinfer.load("model.bundle", backend="openvino", precision="int8")
        >>> m.rank("black leather ankle boots", ["a.jpg", "b.jpg"], k=1).indices
    """
    p = Path(path)
    if not isinstance(batch_size, int) or batch_size < 1:
        raise FbinferError(f"batch_size must be a positive integer, not {batch_size!r}")
    if backend is not None:
        get_backend(backend)  # an unknown name fails first, listing the others
    if p.is_file() and p.suffix == ".plan":
        bundle = Bundle.open(p.parent, verify)
        found = [prec for prec, record in bundle.engines().items() if record["file"] == p.name]
        if not found:
            raise FbinferError(f"{p}: not an engine recorded in {p.parent}'s manifest (build it with fbinfer build)")
        source, backend, precision = bundle, "tensorrt", found[0]
    elif p.is_dir():
        source = Bundle.open(p, verify)
        if backend is None:
            backend = ("tensorrt" if source.engines() and not get_backend("tensorrt").unavailable()
                       else fastest_tuned(source, lambda b: not get_backend(b).unavailable()) or "onnxruntime")
        if precision is None and device in (None, "cpu") and (found := tuned(source, backend)):
            precision, options = found[0].precision, {**found[1], **options}
    elif p.is_file():
        from fbinfer.model.checkpoint import load_checkpoint

        if backend not in (None, "torch"):
            raise FbinferError(f"{p}: a checkpoint runs on the torch backend; export it (fbinfer export {p}) for {backend}")
        source, backend = load_checkpoint(p), "torch"
    else:
        raise FbinferError(f"{p}: no such checkpoint, bundle folder or engine")
    runner = open_runner(backend, source, precision or "fp32", device, **options)
    extractor = bundle_extractor(source, backend, device) if isinstance(source, Bundle) else torch_extractor(source.config)
    return Matcher(runner, source.tokenizer(), source.config, extractor, batch_size, getattr(get_backend(backend).module, "BUCKETS", None))
