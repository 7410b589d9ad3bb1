"""The graphs a user makes without fbinfer, for the bench's peer rows: the model exported as it is
(``FashionBert.forward`` traced), and that export quantized the way each runtime's own
documentation shows. Each is made once into ``BUNDLE/bench/`` and reused; ``PEER_GRAPHS`` maps a
``Variant.graph`` name to the function that makes it."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from fbinfer.bench.config import PLAIN, PLAIN_DYNAMIC_INT8, PLAIN_NNCF_INT8
from fbinfer.bench.models import ModelBench
from fbinfer.errors import BackendUnavailable
from fbinfer.fileio import atomic_path


def _made_once(mb: ModelBench, name: str, make: Callable[[Path], None]) -> Path:
    path = mb.bundle.folder / "bench" / name
    if not path.is_file():
        (mb.bundle.folder / "bench").mkdir(exist_ok=True)
        make(path)
    return path


def plain_graph(mb: ModelBench) -> Path:
    """The naive export (bench/plain.fp32.onnx)."""
    from fbinfer.export.graphs import export_plain

    return _made_once(mb, f"{PLAIN}.fp32.onnx", lambda p: export_plain(mb.ck.model, p, mb.bundle.max_batch))


def plain_dynamic_int8(mb: ModelBench) -> Path:
    """ONNX Runtime's dynamic quantization of the naive export: int8 weights of every MatMul,
    activations quantized per call (``quantize_dynamic``, its documented path for transformers)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from fbinfer.export.graphs import ROOT, quiet

    def make(path: Path) -> None:
        with atomic_path(path) as tmp, quiet(ROOT):  # its "consider pre-processing" advice is part of what a user gets
            quantize_dynamic(plain_graph(mb), tmp, weight_type=QuantType.QInt8)

    return _made_once(mb, f"{PLAIN}.ort-dynamic-int8.onnx", make)


def plain_nncf_int8(mb: ModelBench) -> Path:
    """NNCF's post-training INT8 of the naive export for OpenVINO, as its documentation shows for
    a transformer: ``nncf.quantize(model, dataset, model_type=TRANSFORMER)`` on real pairs (as many
    as the bundle's export calibrated on), every other setting NNCF's default. Saved as OpenVINO IR."""
    try:
        import nncf
        import openvino as ov
    except ImportError:
        raise BackendUnavailable("NNCF is not installed: pip install 'fbinfer[openvino]' (nncf>=3.4)") from None
    from fbinfer.data.features import FeatureStore
    from fbinfer.export.config import CalibrationConfig
    from fbinfer.export.exporter import calibration_feeds

    def make(path: Path) -> None:
        store = FeatureStore(mb.data, mb.ck.config).ensure(mb.data.train)
        calib = mb.bundle.manifest["export_config"]["calibration"]
        feeds = calibration_feeds(mb.ck, mb.data, store, CalibrationConfig(batches=calib["batches"], batch_size=calib["batch_size"]))
        quantized = nncf.quantize(ov.Core().read_model(str(plain_graph(mb))), nncf.Dataset(feeds),
                                  model_type=nncf.ModelType.TRANSFORMER)
        with atomic_path(path.parent) as tmp:  # the IR's .xml and .bin appear together
            tmp.mkdir()
            ov.save_model(quantized, str(tmp / path.name), compress_to_fp16=False)

    return _made_once(mb, f"{PLAIN}.nncf-int8/{PLAIN}.nncf-int8.xml", make)


PEER_GRAPHS: dict[str, Callable[[ModelBench], Path]] = {
    PLAIN: plain_graph, PLAIN_DYNAMIC_INT8: plain_dynamic_int8, PLAIN_NNCF_INT8: plain_nncf_int8}
