"""The Bundle: opening and validating a bundle folder, its one error wording, sha256 and size
checks, engine records, the source checkpoint, and graphs that pass the ONNX checker."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import onnx
import pytest

from fbinfer.bundle import FORMAT_VERSION, Bundle, engine_file, graph_key
from fbinfer.errors import FbinferError


@pytest.fixture
def copy(tiny_bundle, tmp_path) -> Path:
    out = tmp_path / "b"
    shutil.copytree(tiny_bundle, out)
    return out


def rewrite(bundle: Path, change) -> None:
    path = bundle / "manifest.json"
    m = json.loads(path.read_text())
    change(m)
    path.write_text(json.dumps(m))


def test_open_lists_graphs_by_target_and_precision(tiny_bundle):
    b = Bundle.open(tiny_bundle)
    assert set(b.graphs()) == {("tensorrt", "fp32"), ("tensorrt", "fp16"), ("tensorrt", "int8"), ("onnxruntime", "fp32"),
                               ("onnxruntime", "int8"), ("openvino", "int8")}
    assert b.graph("onnxruntime", "int8") == tiny_bundle / "ort.int8.onnx"
    assert graph_key("tensorrt", "fp16") == "trt.fp16" and engine_file("int8") == "engine.int8.plan"
    assert b.config.name == "fashionbert-tiny" and b.max_batch == 64 and len(b.vocab()) == b.config.vocab_size
    assert b.manifest["format_version"] == FORMAT_VERSION
    listed = set(b.manifest["files"])
    extractor = {g["file"] for g in b.manifest["extractor"]["graphs"].values()}
    assert extractor == {"extractor.fp32.onnx", "extractor.fp16.onnx"} and b.extractor_graph() == tiny_bundle / "extractor.fp32.onnx"
    assert {g["file"] for g in b.manifest["graphs"].values()} | {"vocab.txt"} | extractor == listed
    for name, record in b.manifest["files"].items():
        assert len(record["sha256"]) == 64 and record["bytes"] == (tiny_bundle / name).stat().st_size


def test_source_checkpoint_is_known_and_checked(copy, tiny_model, tmp_path):
    b = Bundle.open(copy)
    assert b.source_checkpoint == tiny_model.resolve() and b.load_source().config == b.config
    moved = tmp_path / "changed.pt"
    moved.write_bytes(tiny_model.read_bytes() + b"\0")
    rewrite(copy, lambda m: m["source"].update(checkpoint=str(moved)))
    with pytest.raises(FbinferError, match="changed since .* was exported"):
        Bundle.open(copy).load_source()


@pytest.mark.parametrize("damage, message", [
    (lambda b: (b / "manifest.json").unlink(), r"not an fbinfer bundle \(no manifest.json"),
    (lambda b: (b / "manifest.json").write_text("[1, 2]"), r"not an fbinfer bundle \(manifest.json has format 'list'"),
    (lambda b: rewrite(b, lambda m: m.update(format="other")), r"not an fbinfer bundle \(manifest.json has format 'other'"),
    (lambda b: rewrite(b, lambda m: m.update(format_version=1)), "bundle format version 1 is not supported"),
    (lambda b: rewrite(b, lambda m: m.update(graphs=None)), "field 'graphs' must be a dict, got NoneType"),
    (lambda b: rewrite(b, lambda m: m["config"].update(num_layers="two")), "config"),
    (lambda b: (b / "ort.int8.onnx").unlink(), "ort.int8.onnx: missing from the bundle"),
    (lambda b: (b / "trt.fp16.onnx").write_bytes(b"short"), "trt.fp16.onnx: 5 bytes, the manifest recorded"),
    (lambda b: rewrite(b, lambda m: m["tokenizer"].update(vocab="/etc/passwd")), "is not listed under 'files'"),
    (lambda b: rewrite(b, lambda m: m["files"].update({"../x": {"bytes": 1, "sha256": "0" * 64}})), "points outside the bundle"),
])
def test_damaged_bundles_are_refused_in_one_line(copy, damage, message):
    damage(copy)
    with pytest.raises(FbinferError, match=message) as e:
        Bundle.open(copy)
    assert "\n" not in str(e.value)


def test_a_changed_byte_is_caught_on_first_use_unless_verification_is_off(copy):
    path = copy / "ort.fp32.onnx"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size: only the hash can tell
    path.write_bytes(bytes(data))
    b = Bundle.open(copy)
    with pytest.raises(FbinferError, match="ort.fp32.onnx: sha256 does not match the manifest"):
        b.graph("onnxruntime", "fp32")
    assert Bundle.open(copy, verify=False).graph("onnxruntime", "fp32") == path
    b.graph("onnxruntime", "int8")  # the other files are fine


def test_missing_graph_and_engine_name_the_command(tiny_bundle):
    b = Bundle.open(tiny_bundle)
    with pytest.raises(FbinferError, match=r"no ov\.fp32 graph \(has .*ort\.fp32.*\); export it: fbinfer export .*tiny\.pt"):
        b.graph("openvino", "fp32")
    with pytest.raises(FbinferError, match=r"no TensorRT int8 engine; build it with: fbinfer build .* --precision int8"):
        b.engine("int8")


def test_recorded_engine_is_listed_hashed_and_found(copy):
    (copy / engine_file("fp16")).write_bytes(b"plan bytes")
    Bundle.open(copy).record_engine("fp16", {"tensorrt": "10.13.0", "gpu": "NVIDIA H100", "compute_capability": "9.0"})
    b = Bundle.open(copy)
    path, record = b.engine("fp16")
    assert path == copy / "engine.fp16.plan" and record["precision"] == "fp16" and record["gpu"] == "NVIDIA H100"
    assert b.manifest["files"]["engine.fp16.plan"]["bytes"] == len(b"plan bytes")
    (copy / engine_file("fp16")).write_bytes(b"plan bytez")
    with pytest.raises(FbinferError, match="engine.fp16.plan: sha256 does not match"):
        Bundle.open(copy).engine("fp16")


def test_every_graph_passes_the_onnx_checker(tiny_bundle):
    for g in Bundle.open(tiny_bundle).manifest["graphs"].values():
        onnx.checker.check_model(str(tiny_bundle / g["file"]), full_check=True)


def test_fp16_conversion_is_sorted_where_the_converter_leaves_it_unsorted(tiny_bundle):
    """ONNX Runtime's converter appends its Casts at the end of the graph (the checker refuses
    that); ``to_fp16`` sorts the graph, and a reversed graph sorts back to a valid one."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    from fbinfer.export.graphs import to_fp16, toposort

    fp32 = onnx.load(str(tiny_bundle / "trt.fp32.onnx"))
    raw = convert_float_to_float16(fp32, keep_io_types=True, op_block_list=["LayerNormalization"])
    with pytest.raises(onnx.checker.ValidationError, match="topologically sorted"):
        onnx.checker.check_model(raw)
    onnx.checker.check_model(to_fp16(fp32, ("LayerNormalization",), True)[0])
    reversed_graph = onnx.ModelProto()
    reversed_graph.CopyFrom(fp32)
    nodes = list(reversed_graph.graph.node)[::-1]
    del reversed_graph.graph.node[:]
    reversed_graph.graph.node.extend(nodes)
    with pytest.raises(onnx.checker.ValidationError):
        onnx.checker.check_model(reversed_graph)
    onnx.checker.check_model(toposort(reversed_graph))
