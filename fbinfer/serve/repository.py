"""Triton model repositories for a bundle.

``write_python_repository``: what ``fbinfer serve`` runs here, on the Python backend that the
``nvidia-pytriton`` wheel's ``tritonserver`` carries. Two models run fbinfer's runtime
(``fbinfer.serve.triton_model``), dynamically batched:

    fashionbert        TEXT [1] STRING, IMAGE [1] STRING (encoded) | PATCHES [P, D] FP32 -> LOGIT [1]
    image_features     IMAGE [1] STRING -> PATCHES [P, D]: a catalogue's features, computed once

and two rank through them (``fbinfer.serve.catalog_model``, Business Logic Scripting):

    rerank             QUERY_TEXT | QUERY_IMAGE | QUERY_PATCHES | QUERY_ID, CANDIDATE_TEXTS |
                       CANDIDATE_IMAGES | CANDIDATE_PATCHES | CANDIDATE_IDS, K -> INDICES, SCORES
    search             (with an index) TEXT, IMAGE, K, DEPTH -> ROWS, SCORES, RERANK, ITEMS, COUNT

``write_gpu_repository``: the production form for NVIDIA's Triton container on a GPU, which
cannot run here: an ensemble of preprocessing (Python backend, numpy and PIL), the image
extractor and the matcher as ``onnxruntime_onnx`` graphs or a ``tensorrt_plan`` engine.

Every config is built as a dict in Triton's JSON form and parsed into Triton's own
``ModelConfig`` protobuf (tritonclient ships it) before it is written as config.pbtxt, so a
misspelled field fails here and not in the server.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from fbinfer.bundle import Bundle
from fbinfer.bundle.io_spec import ATTENTION_MASK, INPUT_IDS, LOGIT, PATCHES, PIXELS
from fbinfer.data.preprocess import bundle_preprocess
from fbinfer.errors import FbinferError
from fbinfer.fileio import atomic_path
from fbinfer.serve.config import CatalogOptions

PLATFORMS = {"onnxruntime": "onnxruntime_onnx", "tensorrt": "tensorrt_plan"}
MODEL_PY = {module: f"from fbinfer.serve.{module} import TritonPythonModel  # noqa: F401  (fbinfer's runtime)\n"
            for module in ("triton_model", "catalog_model")}
RANKING = ("rerank", "search")  # the models of catalog_model


def model_config_pb2():
    try:
        from tritonclient.grpc import model_config_pb2
    except ImportError:
        raise FbinferError("writing Triton configs needs tritonclient: pip install -e '.[serve]'") from None
    return model_config_pb2


def to_pbtxt(config: dict[str, Any]) -> str:
    """A config dict (Triton's JSON form) as config.pbtxt, checked against Triton's ModelConfig."""
    from google.protobuf import json_format, text_format

    try:
        message = json_format.ParseDict(config, model_config_pb2().ModelConfig())
    except json_format.ParseError as e:
        raise FbinferError(f"model {config.get('name')!r}: not a valid Triton config ({e})") from None
    return text_format.MessageToString(message)


def parse_pbtxt(path: Path):
    """A config.pbtxt parsed into Triton's ModelConfig (what the server does on load)."""
    from google.protobuf import text_format

    return text_format.Parse(path.read_text(), model_config_pb2().ModelConfig())


def tensor(name: str, dtype: str, dims: list[int], optional: bool = False) -> dict[str, Any]:
    return {"name": name, "data_type": f"TYPE_{dtype}", "dims": dims, **({"optional": True} if optional else {})}


def python_configs(bundle: Bundle, backend: str, precision: str | None, max_batch: int, queue_delay_us: int,
                   instances: int, catalog: CatalogOptions | None = None) -> dict[str, dict[str, Any]]:
    """The Python-backend models' configs (``search`` only with an index)."""
    catalog = catalog or CatalogOptions()
    p, d = bundle.config.num_patches, bundle.config.patch_feature_dim
    params = {"bundle": str(bundle.folder.resolve()), "backend": backend, "precision": precision or "", "batch_size": str(max_batch),
              "max_candidates": str(catalog.max_candidates), "depth": str(catalog.depth), "ranking_instances": str(catalog.instances),
              "index": str(catalog.index.resolve()) if catalog.index else ""}
    batching = {"max_batch_size": max_batch, "dynamic_batching": {"max_queue_delay_microseconds": queue_delay_us}}

    def model(name: str, inputs: list, outputs: list, batched: bool) -> dict[str, Any]:
        count = catalog.instances if name in RANKING else instances
        return {"name": name, "backend": "python", **(batching if batched else {"max_batch_size": 0}),
                "input": inputs, "output": outputs, "instance_group": [{"count": count, "kind": "KIND_CPU"}],
                "parameters": {k: {"string_value": v} for k, v in {**params, "kind": name}.items()}}

    configs = {
        "fashionbert": model("fashionbert", [tensor("TEXT", "STRING", [1]), tensor("IMAGE", "STRING", [1], True),
                                             tensor("PATCHES", "FP32", [p, d], True)], [tensor("LOGIT", "FP32", [1])], True),
        "image_features": model("image_features", [tensor("IMAGE", "STRING", [1])], [tensor("PATCHES", "FP32", [p, d])], True),
        "rerank": model("rerank", [
            tensor("QUERY_TEXT", "STRING", [1], True), tensor("QUERY_IMAGE", "STRING", [1], True),
            tensor("QUERY_PATCHES", "FP32", [p, d], True), tensor("QUERY_ID", "INT64", [1], True),
            tensor("CANDIDATE_TEXTS", "STRING", [-1], True), tensor("CANDIDATE_IMAGES", "STRING", [-1], True),
            tensor("CANDIDATE_PATCHES", "FP32", [-1, p, d], True), tensor("CANDIDATE_IDS", "INT64", [-1], True),
            tensor("K", "INT32", [1], True)], [tensor("INDICES", "INT64", [-1]), tensor("SCORES", "FP32", [-1])], False),
    }
    if catalog.index:
        configs["search"] = model("search", [
            tensor("TEXT", "STRING", [1], True), tensor("IMAGE", "STRING", [1], True), tensor("K", "INT32", [1], True),
            tensor("DEPTH", "INT32", [1], True)],
            [tensor("ROWS", "INT64", [-1]), tensor("SCORES", "FP32", [-1]), tensor("RERANK", "FP32", [-1]),
             tensor("ITEMS", "STRING", [-1]), tensor("COUNT", "INT64", [1])], False)
    return configs


def write_python_repository(bundle: Bundle, out: Path, backend: str, precision: str | None, max_batch: int = 64,
                            queue_delay_us: int = 500, instances: int = 1, catalog: CatalogOptions | None = None) -> Path:
    """The repository ``fbinfer serve`` runs; written whole under a temporary name, then renamed."""
    configs = python_configs(bundle, backend, precision, max_batch, queue_delay_us, instances, catalog)
    _write(out, {name: {"config.pbtxt": to_pbtxt(c), "1/model.py": MODEL_PY["catalog_model" if name in RANKING else "triton_model"]}
                 for name, c in configs.items()})
    return out


def gpu_configs(bundle: Bundle, platform: str, precision: str, max_batch: int, queue_delay_us: int) -> dict[str, dict[str, Any]]:
    """Ensemble ``fashionbert`` = preprocess (Python) -> extractor and matcher (ONNX Runtime or TensorRT, on the GPU)."""
    cfg = bundle.config
    p, d, size, t = cfg.num_patches, cfg.patch_feature_dim, cfg.image_size, cfg.max_text_len
    batching = {"max_batch_size": max_batch, "dynamic_batching": {"max_queue_delay_microseconds": queue_delay_us}}
    gpu = [{"count": 1, "kind": "KIND_GPU"}]
    trt_accel = {"optimization": {"execution_accelerators": {"gpu_execution_accelerator": [
        {"name": "tensorrt", "parameters": {"precision_mode": "FP16" if precision == "fp16" else "FP32", "max_workspace_size_bytes": str(4 << 30)}}]}}}
    onnx_accel = trt_accel if precision == "fp16" else {}
    matcher_platform = PLATFORMS[platform]
    return {
        "preprocess": {"name": "preprocess", "backend": "python", **batching,
                       "input": [tensor("TEXT", "STRING", [1]), tensor("IMAGE", "STRING", [1])],
                       "output": [tensor(INPUT_IDS, "INT64", [t]), tensor(ATTENTION_MASK, "INT64", [t]),
                                  tensor(PIXELS, "FP32", [3, size, size])],
                       "instance_group": [{"count": 2, "kind": "KIND_CPU"}]},
        "extractor": {"name": "extractor", "platform": "onnxruntime_onnx", **batching, **(trt_accel if platform == "tensorrt" else onnx_accel),
                      "input": [tensor(PIXELS, "FP32", [3, size, size])], "output": [tensor(PATCHES, "FP32", [p, d])],
                      "instance_group": gpu},
        "matcher": {"name": "matcher", "platform": matcher_platform, **batching, **(onnx_accel if platform == "onnxruntime" else {}),
                    "input": [tensor(INPUT_IDS, "INT64", [-1]), tensor(ATTENTION_MASK, "INT64", [-1]), tensor(PATCHES, "FP32", [p, d])],
                    "output": [{**tensor(LOGIT, "FP32", [1]), "reshape": {"shape": []}}], "instance_group": gpu},  # (batch,) out
        "fashionbert": {"name": "fashionbert", "platform": "ensemble", "max_batch_size": max_batch,
                        "input": [tensor("TEXT", "STRING", [1]), tensor("IMAGE", "STRING", [1])], "output": [tensor("LOGIT", "FP32", [1])],
                        "ensemble_scheduling": {"step": [
                            {"model_name": "preprocess", "model_version": -1,
                             "input_map": {"TEXT": "TEXT", "IMAGE": "IMAGE"},
                             "output_map": {INPUT_IDS: "ids", ATTENTION_MASK: "mask", PIXELS: PIXELS}},
                            {"model_name": "extractor", "model_version": -1, "input_map": {PIXELS: PIXELS}, "output_map": {PATCHES: PATCHES}},
                            {"model_name": "matcher", "model_version": -1,
                             "input_map": {INPUT_IDS: "ids", ATTENTION_MASK: "mask", PATCHES: PATCHES}, "output_map": {LOGIT: "LOGIT"}}]}},
    }


def write_gpu_repository(bundle: Bundle, out: Path, platform: str, precision: str = "fp16", max_batch: int | None = None,
                         queue_delay_us: int = 500) -> Path:
    """The GPU repository. ``platform`` onnxruntime: the FP32 graphs, with TensorRT as ONNX Runtime's
    accelerator at fp16. tensorrt: the matcher's engine built by ``fbinfer build`` on the target
    GPU (engines are tied to a GPU and a TensorRT version), the extractor compiled by the same
    accelerator at load."""
    if platform not in PLATFORMS:
        raise FbinferError(f"--platform must be one of {', '.join(PLATFORMS)}, not {platform!r}")
    if precision not in ("fp32", "fp16", "int8") or (platform == "onnxruntime" and precision == "int8"):
        raise FbinferError(f"--precision {precision!r} with --platform {platform}: choose fp32 or fp16" +
                           (" (or int8 with --platform tensorrt)" if platform == "onnxruntime" else ""))
    extractor = bundle.extractor_graph("fp32")
    if extractor is None:
        raise FbinferError(f"{bundle.folder}: no image extractor graph in this bundle; re-export it with this fbinfer")
    max_batch = max_batch or bundle.max_batch
    if platform == "tensorrt":
        matcher_file, _ = bundle.engine(precision)  # one line with the build command when absent
        matcher = ("1/model.plan", matcher_file)
    else:
        matcher = ("1/model.onnx", bundle.graph("tensorrt", "fp32"))
    configs = {n: to_pbtxt(c) for n, c in gpu_configs(bundle, platform, precision, max_batch, queue_delay_us).items()}
    files: dict[str, dict[str, str | Path]] = {
        "preprocess": {"config.pbtxt": configs["preprocess"], "1/model.py": PREPROCESS_PY, "1/vocab.txt": bundle.file(bundle.manifest["tokenizer"]["vocab"]),
                       "1/preprocess.json": json.dumps({"max_text_len": bundle.config.max_text_len, **bundle_preprocess(bundle).to_dict()})},
        "extractor": {"config.pbtxt": configs["extractor"], "1/model.onnx": extractor},
        "matcher": {"config.pbtxt": configs["matcher"], matcher[0]: matcher[1]},
        "fashionbert": {"config.pbtxt": configs["fashionbert"], "1/.keep": ""},
    }
    _write(out, files)
    return out


PREPROCESS_PY = '''"""Tokenize captions; decode, resize and normalise images, as the bundle's manifest says
(vocab.txt and preprocess.json beside this file; fbinfer's numpy and PIL code, no torch)."""
import json
from pathlib import Path

import triton_python_backend_utils as pb

from fbinfer.bundle.io_spec import ATTENTION_MASK, INPUT_IDS, PIXELS
from fbinfer.data.decode import decode_image
from fbinfer.data.preprocess import ImagePreprocess
from fbinfer.model.tokenizer import TextTokenizer

HERE = Path(__file__).parent


class TritonPythonModel:
    def initialize(self, args):
        spec = json.loads((HERE / "preprocess.json").read_text())
        self.width = spec.pop("max_text_len")
        self.tokenizer = TextTokenizer((HERE / "vocab.txt").read_text(encoding="utf-8").splitlines(), self.width)
        self.preprocess = ImagePreprocess.from_dict(spec)

    def execute(self, requests):
        out = []
        for r in requests:
            try:
                texts = [b.decode("utf-8") for b in pb.get_input_tensor_by_name(r, "TEXT").as_numpy().ravel()]
                blobs = pb.get_input_tensor_by_name(r, "IMAGE").as_numpy().ravel()
                tok = self.tokenizer(texts, pad_to=self.width)
                pixels = self.preprocess([decode_image(bytes(b), f"IMAGE[{i}]") for i, b in enumerate(blobs)])
                out.append(pb.InferenceResponse([pb.Tensor(INPUT_IDS, tok.input_ids), pb.Tensor(ATTENTION_MASK, tok.attention_mask),
                                                 pb.Tensor(PIXELS, pixels)]))
            except Exception as e:  # noqa: BLE001 - one request's error, sent back to its client
                out.append(pb.InferenceResponse(output_tensors=[], error=pb.TritonError(str(e))))
        return out
'''


def _write(out: Path, models: dict[str, dict[str, str | Path]]) -> None:
    """Each model's files (text, or a file to copy) under ``out``, written whole then renamed."""
    with atomic_path(out) as tmp:
        for model, files in models.items():
            for rel, content in files.items():
                path = tmp / model / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                if isinstance(content, Path):
                    shutil.copyfile(content, path)
                else:
                    path.write_text(content)
