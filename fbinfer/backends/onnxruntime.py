"""ONNX Runtime: the bundle's fused FP32 graph, its CPU INT8 graph, and the TensorRT FP16 graph
(on the CPU, ONNX Runtime upcasts FP16 kernels, so that is a numerics check; with onnxruntime-gpu
and device 'cuda' it runs FP16). Any other graph file can be run by path (the bench's plain
export, the TensorRT INT8 graph)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from fbinfer.backends.base import Runner
from fbinfer.bundle.io_spec import OUTPUT_NAMES, TensorSpec
from fbinfer.errors import FbinferError, first_line

PRECISIONS = ("fp32", "fp16", "int8")
GRAPHS = {"fp32": ("onnxruntime", "fp32"), "fp16": ("tensorrt", "fp16"), "int8": ("onnxruntime", "int8")}
RUNS = "bundle"
LENGTH_GROUPS = 4  # sub-batches by caption length (fbinfer.backends.length_groups): 4 measured 1.21-1.45x on the bench's mixed batch of 64, 2 1.14-1.29x (docs/results/length_groups.md)


INSTALL = "pip install -e '.[cpu]' (or '.[gpu]' on a CUDA machine; one of the two, never both: they install the same module)"


def unavailable() -> str | None:
    import importlib.util

    return None if importlib.util.find_spec("onnxruntime") else f"ONNX Runtime is not installed: {INSTALL}"


class OnnxRuntimeRunner(Runner):
    """An ONNX graph in ONNX Runtime (CPU unless other providers are given). ``outputs``: the
    matcher's logit, or the extractor graph's patches; ``inputs``: the declared inputs (None: the
    graph's own, with float16 read as float32, which the runner converts)."""

    def __init__(self, path: Path, providers: tuple[str, ...] = ("CPUExecutionProvider",), threads: int | None = None,
                 outputs: tuple[str, ...] = OUTPUT_NAMES, inputs: tuple[TensorSpec, ...] | None = None):
        super().__init__(f"onnxruntime:{Path(path).name}", inputs)
        self.path, self.providers, self.threads, self.outputs = Path(path), providers, threads, outputs

    def activate_impl(self) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if self.threads:
            opts.intra_op_num_threads = self.threads
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(self.path), opts, providers=list(self.providers))
        except Exception as e:  # noqa: BLE001 - ORT raises its own Fail/InvalidGraph types
            raise FbinferError(f"{self.path}: ONNX Runtime cannot load it ({first_line(e)})") from None
        self.types = {i.name: i.type for i in self.session.get_inputs()}
        if self.inputs is None:
            self.inputs = tuple(TensorSpec(i.name, ORT_TYPES.get(i.type, i.type), tuple(map(str, i.shape)))
                                for i in self.session.get_inputs())

    def infer_impl(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        typed = {n: feeds[n].astype(np.float16 if t == "tensor(float16)" else feeds[n].dtype, copy=False)
                 for n, t in self.types.items()}
        return {n: v.astype(np.float32, copy=False) for n, v in zip(self.outputs, self.session.run(list(self.outputs), typed))}

    def deactivate_impl(self) -> None:
        del self.session

    def describe(self) -> dict[str, str]:
        return {"graph": self.path.name, "providers": ",".join(self.providers)}


ORT_TYPES = {"tensor(float)": "float32", "tensor(float16)": "float32", "tensor(int64)": "int64", "tensor(int32)": "int32"}


def providers(device: str | None) -> tuple[str, ...]:
    if device is None or device == "cpu":
        return ("CPUExecutionProvider",)
    if not device.startswith("cuda"):
        raise FbinferError(f"device {device!r}: ONNX Runtime runs on 'cpu' or 'cuda'")
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        raise FbinferError("device 'cuda' for ONNX Runtime needs onnxruntime-gpu in place of onnxruntime "
                           "(pip uninstall -y onnxruntime && pip install -e '.[gpu]')")
    return ("CUDAExecutionProvider", "CPUExecutionProvider")


def runner(bundle, precision: str, device: str | None = None, graph: Path | None = None) -> OnnxRuntimeRunner:
    """The bundle's graph for ``precision``, or ``graph`` (a file) when given."""
    return OnnxRuntimeRunner(graph or bundle.graph(*GRAPHS[precision]), providers(device), inputs=bundle.inputs)


def graph_runner(path: Path, outputs: tuple[str, ...], device: str | None = None) -> OnnxRuntimeRunner:
    """Any ONNX file (an extractor, an embedding tower) in FP32, its inputs read from the graph."""
    return OnnxRuntimeRunner(path, providers(device), outputs=outputs)
