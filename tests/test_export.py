"""fbinfer export: every graph runs in ONNX Runtime at several batch sizes and matches PyTorch,
TensorRT graphs hold standard ops only, the ORT graph has fused attention, Q/DQ follow TensorRT's
rules, the FP16 graph is FP16 except its recorded islands, and bad input fails in one line."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from helpers import PARITY_BARS, assert_cli_errors, parity_misses
from onnx import numpy_helper

from fbinfer.backends.onnxruntime import OnnxRuntimeRunner
from fbinfer.backends.pytorch import TorchRunner
from fbinfer.bundle.io_spec import example_feeds
from fbinfer.errors import FbinferError
from fbinfer.export.config import CalibrationConfig
from fbinfer.export.exporter import ExportConfig, export_bundle
from fbinfer.export.fused_model import ExportGraph, patch_averaging_matrix
from fbinfer.export.graphs import as_torch, nonstandard_ops
from fbinfer.export.qdq import check_qdq, cls_only, qdq_matmuls, weight_ops
from fbinfer.model.checkpoint import load_checkpoint

FP32_TOLERANCE = 1e-4  # the contract on the logit; reduced precisions: helpers.PARITY_BARS


@pytest.fixture
def bundle(tiny_bundle) -> Path:
    return tiny_bundle


def manifest(bundle: Path) -> dict:
    return json.loads((bundle / "manifest.json").read_text())


def test_export_graph_is_the_model(tiny_model):
    """The fused export form computes FashionBert.forward (eval), for both attention kinds."""
    model = load_checkpoint(tiny_model).model
    feeds = as_torch(example_feeds(model.config, batch=5, text_len=11))
    with torch.no_grad():
        ref = model(*feeds).logit
        for kind in ("matmul", "onnx-attention"):
            assert torch.allclose(ExportGraph(model, kind)(*feeds), ref, atol=1e-5), kind


def test_patch_averaging_matrix():
    a = patch_averaging_matrix(4, True)
    p = torch.randn(4, 3)
    tokens = a @ p
    assert torch.allclose(tokens[0], p.mean(0)) and torch.allclose(tokens[1:], p + p.mean(0))
    assert torch.equal(patch_averaging_matrix(4, False), torch.eye(4))


def test_manifest_lists_every_graph_with_parity(bundle):
    m = manifest(bundle)
    assert set(m["graphs"]) == {"trt.fp32", "trt.fp16", "trt.int8", "ort.fp32", "ort.int8", "ov.int8"}
    rows = {(r["graph"], r["backend"], r["precision"]): r for r in m["parity"]}
    for name, g in m["graphs"].items():
        assert (bundle / g["file"]).is_file(), name
        row = rows[(name, "onnxruntime", g["precision"])]
        assert set(row) >= {"max_abs_logit_diff", "mean_abs_logit_diff", "logit_spread", "rank1_agreement", "top5_agreement"}
    for (name, backend, precision), row in rows.items():
        assert parity_misses(row, precision) == [], (name, backend, row)
        if precision == "fp32":
            assert row["max_abs_logit_diff"] <= FP32_TOLERANCE, (name, backend)
    assert ("ov.int8", "openvino", "int8") in rows
    assert [i["name"] for i in m["inputs"]] == ["input_ids", "attention_mask", "patches"]
    assert m["inputs"][0]["axes"] == ["batch", "text_len"] and len(m["source"]["sha256"]) == 64
    assert (bundle / "vocab.txt").read_text().split("\n")[:1] == ["[PAD]"]
    assert not [p for p in bundle.parent.iterdir() if p.name.startswith(".")], "temporary folder left behind"


@pytest.mark.parametrize("batch", [1, 7, 64])
def test_every_graph_runs_and_matches_pytorch(bundle, tiny_model, batch):
    model = load_checkpoint(tiny_model).model
    feeds = example_feeds(model.config, batch=batch, text_len=min(5 + batch, 64), seed=batch)
    ref = TorchRunner(model).activate().infer(feeds)["logit"]
    # random feeds lie outside INT8's calibration: reduced precisions get twice their held-out bar
    # here (real pairs are held to it in test_parity.py and the manifest test)
    spread = manifest(bundle)["parity"][0]["logit_spread"]
    for name, g in manifest(bundle)["graphs"].items():
        with OnnxRuntimeRunner(bundle / g["file"]) as runner:
            got = runner.infer(feeds)["logit"]
        assert got.shape == (batch,)
        bar = FP32_TOLERANCE if g["precision"] == "fp32" else 2 * PARITY_BARS[g["precision"]]["max_rel_logit_diff"] * spread
        assert np.abs(got - ref).max() <= bar, (name, np.abs(got - ref).max())


def test_tensorrt_graphs_use_standard_ops_only(bundle):
    for name, g in manifest(bundle)["graphs"].items():
        if g["target"] == "tensorrt":
            assert nonstandard_ops(onnx.load(str(bundle / g["file"]))) == [], name


def test_tensorrt_fp32_patch_embedding_is_fused(bundle):
    """One MatMul over all patches (after the constant averaging MatMul), no Gather/Concat on patches."""
    graph = onnx.load(str(bundle / "trt.fp32.onnx")).graph
    consumers = [n for n in graph.node if "patches" in n.input]
    assert [n.op_type for n in consumers] == ["MatMul"]
    ops = [n.op_type for n in graph.node]
    assert ops.count("LayerNormalization") == 2 + 2 * 2  # text, patches, and two per layer
    assert "Softmax" in ops  # MatMul-Softmax-MatMul attention (the default)


def test_onnxruntime_graph_has_fused_attention(bundle):
    g = manifest(bundle)["graphs"]["ort.fp32"]
    ops = {n.op_type: n.domain for n in onnx.load(str(bundle / g["file"])).graph.node}
    assert ops.get("MultiHeadAttention") == "com.microsoft" or ops.get("Attention") == "com.microsoft"
    assert g["fused_ops"].get("MultiHeadAttention", 0) + g["fused_ops"].get("Attention", 0) == 2  # one per layer


def test_int8_qdq_follows_tensorrt_rules(bundle):
    """Model Optimizer's graph, checked against TensorRT's Q/DQ rules by fbinfer's own checker, and
    that checker shown to catch each kind of break."""
    m = manifest(bundle)["graphs"]["trt.int8"]
    q = m["quantization"]
    assert q["quantizer"]["name"] == "nvidia-modelopt" and q["quantizer"]["version"]
    model = onnx.load(str(bundle / m["file"]))
    assert check_qdq(model) == []
    assert qdq_matmuls(model) == q["matmuls"] and q["matmuls"]["int8"]
    inits = {i.name: i for i in model.graph.initializer}
    weight_dq = next(n for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits)
    act_q = next(n for n in model.graph.node if n.op_type == "QuantizeLinear")
    for init, change, problem in ((inits[weight_dq.input[2]], lambda a: a + 1, "zero point"),
                                  (inits[weight_dq.input[1]], lambda a: -a, "scale is not a positive"),
                                  (inits[weight_dq.input[0]], lambda a: a.astype(np.float16), "not stored int8"),
                                  (inits[act_q.input[1]], lambda a: np.stack([a, a]), "not per-tensor")):
        broken = onnx.ModelProto()
        broken.CopyFrom(model)
        target = next(i for i in broken.graph.initializer if i.name == init.name)
        target.CopyFrom(numpy_helper.from_array(change(numpy_helper.to_array(init)), init.name))
        assert any(problem in p for p in check_qdq(broken)), problem


def test_int8_quantizes_exactly_the_matmuls_outside_the_excluded_parts(bundle):
    """Found by what they compute (a MatMul/Gemm with a constant weight) and where they sit (the
    exporter's module scope), not by node names: with embeddings, head and layer 0 excluded, the
    tiny model's 2 layers leave layer 1's keys and values (its query, output and feed-forward see
    [CLS] alone and stay float: ``qdq.cls_only``); each weight is the (smoothed) FP32 weight
    rounded per output channel."""
    fp32 = onnx.load(str(bundle / "trt.fp32.onnx"))
    ops = weight_ops(fp32)
    by_group = {g: [o for o in ops if o.group == g] for g in {o.group for o in ops}}
    assert {g: len(v) for g, v in by_group.items()} == {"embeddings": 1, "layer:0": 6, "layer:1": 6, "head": 2}
    cls = cls_only(fp32)
    layer1 = {o.node for o in by_group["layer:1"]} - cls
    assert len(layer1) == 2 and len(cls & {o.node for o in by_group["layer:1"]}) == 4  # K, V; Q, out, FFN in, FFN out
    weights = {i.name: numpy_helper.to_array(i) for i in fp32.graph.initializer}
    for key in ("trt.int8", "ov.int8"):
        m = manifest(bundle)["graphs"][key]
        assert set(m["quantization"]["matmuls"]["int8"]) == layer1, key
        model = onnx.load(str(bundle / m["file"]))
        q = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
        nodes = {n.name: n for n in model.graph.node}
        dq = {n.output[0]: n for n in model.graph.node if n.op_type == "DequantizeLinear"}
        for op in ops:
            w_in = nodes[op.node].input[1]
            if op.node not in layer1:  # kept float
                assert w_in not in dq and q[w_in].dtype != np.int8, (key, op)
                continue
            node = dq[w_in]
            w, qw = weights[op.weight], q[node.input[0]]
            scale = q[node.input[1]].astype(np.float32)
            assert qw.dtype == np.int8 and qw.shape == w.shape and scale.shape == (w.shape[1],), (key, op)  # [in, out]
            assert qw.min() >= -127 and (np.abs(qw).max(axis=0) == 127).all(), (key, op)  # symmetric, amax / 127
            # SmoothQuant scales each input row by one factor: the dequantized weight is that rescaled
            # original, rounded to the nearest step (a shuffled or foreign weight misses by ~|w|, 50x a step)
            deq = qw.astype(np.float32) * scale
            row = (deq * w).sum(1) / np.maximum((w * w).sum(1), 1e-30)
            assert (row > 0).all() and (np.abs(deq - row[:, None] * w) <= 0.75 * scale).all(), (key, op)


def test_int8_attention_adds_the_attention_products_of_the_quantized_layers(tiny_model, tiny_data, tmp_path):
    """``--int8-attention``: Model Optimizer's Q/DQ on both inputs of layer 0's Q.K^T and P.V too
    (TensorRT's INT8 attention) when layer 0 is not excluded; none in layer 1's, which see [CLS] alone."""
    from fbinfer.data.source import load_data

    out = tmp_path / "attn.bundle"
    m = export_bundle(tiny_model, load_data(tiny_data), out,
                      ExportConfig(precisions=("fp32", "int8"), targets=("tensorrt",), int8_attention=True, parity_queries=2,
                                   calibration=CalibrationConfig(batches=2, batch_size=16, exclude=("embeddings", "head"))))
    q = m["graphs"]["trt.int8"]["quantization"]
    fp32 = onnx.load(str(out / "trt.fp32.onnx"))
    weights = {o.node for o in weight_ops(fp32)}
    products = [n for n in fp32.graph.node if n.op_type == "MatMul" and n.name not in weights and n.input[0] != "average"]
    assert len(products) == 4 and q["attention_products"] == "int8"  # Q.K^T and P.V of each layer
    layers = {o.node for o in weight_ops(fp32) if o.group.startswith("layer:")} - cls_only(fp32)
    assert len(layers) == 8 and {n.name for n in products[2:]} <= cls_only(fp32)
    assert set(q["matmuls"]["int8"]) == layers | {n.name for n in products[:2]}  # layer 1's products see [CLS] alone
    assert check_qdq(onnx.load(str(out / "trt.int8.onnx"))) == []


def test_a_quantized_weight_scale_off_by_10x_fails_parity(bundle, tiny_model, tiny_data):
    """The export's parity check is what guards a quantizer's output: one weight's scale made 10x
    too large (what a wrong axis or a lost smoothing factor does) fails the INT8 bars that every
    shipped INT8 graph passes."""
    from fbinfer.data.features import FeatureStore
    from fbinfer.data.source import load_data
    from fbinfer.export.parity import ParitySet, compare

    ck, data = load_checkpoint(tiny_model), load_data(tiny_data)
    store = FeatureStore(data, ck.config).ensure(data.test)
    parity = ParitySet.from_data(data, store, ck.tokenizer(), 4)
    reference = parity.logits(TorchRunner(ck.model), "torch")
    for key in ("trt.int8", "ov.int8"):
        path = bundle / manifest(bundle)["graphs"][key]["file"]
        model = onnx.load(str(path))
        good = compare(reference, parity.logits(OnnxRuntimeRunner(path), key), parity.queries)
        assert parity_misses(good, "int8") == [], key
        inits = {i.name: i for i in model.graph.initializer}
        weights = {n.input[1] for n in model.graph.node if n.op_type == "MatMul"}
        dq = next(n for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits and n.output[0] in weights)
        scale = inits[dq.input[1]]
        scale.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(scale) * 10, scale.name))
        onnx.save(model, str(bundle.parent / f"broken.{key}.onnx"))
        bad = compare(reference, parity.logits(OnnxRuntimeRunner(bundle.parent / f"broken.{key}.onnx"), key), parity.queries)
        (bundle.parent / f"broken.{key}.onnx").unlink()
        assert parity_misses(bad, "int8"), (key, bad)


def test_cpu_int8_keeps_excluded_parts_float_and_quantizes_weights_per_channel(bundle):
    g = manifest(bundle)["graphs"]["ort.int8"]
    keep = g["candidates"][g["method"]]["float_nodes"]
    assert g["excluded_groups"] == ["embeddings", "head", "layer:0"] and keep
    model = onnx.load(str(bundle / g["file"]))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    nodes = {n.name: n for n in model.graph.node}
    assert len(keep) == 1 + 6 + 4 + 2  # patch projection, layer 0 (Q, K, V, attention out, FFN in, out), layer 1's
    # [CLS]-only Q, attention out, FFN in and out, pooler + TIA
    for name in keep:
        assert inits[nodes[name].input[1]].dtype == np.float32, name
    weights = {n: a for n, a in inits.items() if a.dtype == np.int8 and a.ndim == 2}
    assert len(weights) == 2  # layer 1's K and V
    for name, w in weights.items():
        scale = inits[name.removesuffix("_quantized") + "_scale"]
        assert scale.shape == (w.shape[1],), name  # one scale per output channel


def test_patch_average_matmul_is_always_excluded_from_cpu_int8(bundle):
    """The patch-averaging MatMul (``average @ patches``, a fixed matrix, no weight) is excluded even
    with no group excluded, so the static Q/DQ quantizer cannot round it (it did when ``auto``
    picked Q/DQ)."""
    from fbinfer.export.onnxruntime_int8 import excluded_nodes

    graph = bundle / "trt.fp32.onnx"
    average = [n.name for n in onnx.load(str(graph)).graph.node if n.op_type == "MatMul" and n.input[0] == "average"]
    assert len(average) == 1 and set(excluded_nodes(graph, ())) == set(average) | cls_only(onnx.load(str(graph)))


def test_int8_graphs_are_smoothed(bundle):
    """fbinfer's SmoothQuant before Model Optimizer and ONNX Runtime's quantizers (neither smooths);
    NNCF's own for OpenVINO's graph."""
    graphs = manifest(bundle)["graphs"]
    # layer 1's K and V (the only quantized ones): their shared input
    smoothing = {"alpha": 0.75, "scaled_activations": 1}
    assert graphs["ort.int8"]["smoothing"] == smoothing and "SmoothQuant" in graphs["ort.int8"]["scheme"]
    assert graphs["trt.int8"]["quantization"]["smoothing"] == {"by": "fbinfer", **smoothing}
    assert graphs["ov.int8"]["quantization"]["smoothing"] == {"by": "nncf"}
    for name in ("ort.int8", "trt.int8"):
        nodes = onnx.load(str(bundle / graphs[name]["file"])).graph.node
        smoothed = {n.output[0] for n in nodes if n.name.endswith("_smooth") and n.op_type == "Mul"}
        assert len(smoothed) == 1, name
    # in the TensorRT graph, each smoothed activation is what a QuantizeLinear reads
    assert smoothed <= {n.input[0] for n in nodes if n.op_type == "QuantizeLinear"}


def _two_matmuls(channels: int, seed: int = 0) -> onnx.ModelProto:
    """Y1 = X @ W1 and Y2 = X @ W2 (as Q and K share their input), random weights."""
    from onnx import TensorProto, helper

    g = np.random.default_rng(seed)
    w1, w2 = (g.standard_normal((channels, 8)).astype(np.float32) for _ in range(2))
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w1"], ["y1"], name="q"), helper.make_node("MatMul", ["x", "w2"], ["y2"], name="k")],
        "two", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, channels])],
        [helper.make_tensor_value_info(y, TensorProto.FLOAT, [None, 8]) for y in ("y1", "y2")],
        [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])


def test_smoothing_keeps_the_float_product_and_cuts_int8_error(tmp_path):
    """One outlier channel (x60) ruins X's per-tensor INT8 scale; smoothing moves it into the weights:
    the float graph computes the same, one Mul feeds both MatMuls, and dynamic INT8 error drops."""
    import onnxruntime as ort

    from fbinfer.export.onnxruntime_int8 import quantize_dynamic_int8, smooth

    x_scale = np.ones(32, np.float32)
    x_scale[5] = 60.0
    g = np.random.default_rng(1)
    feeds = [{"x": (g.standard_normal((64, 32)) * x_scale).astype(np.float32)} for _ in range(4)]
    test = {"x": (g.standard_normal((256, 32)) * x_scale).astype(np.float32)}
    model = _two_matmuls(x_scale.size)
    smoothed, n = smooth(model, feeds, exclude=(), alpha=0.75)
    assert n == 1 and sum(x.op_type == "Mul" for x in smoothed.graph.node) == 1

    def run(m: onnx.ModelProto | Path) -> list[np.ndarray]:
        src = str(m) if isinstance(m, Path) else m.SerializeToString()
        return ort.InferenceSession(src, providers=["CPUExecutionProvider"]).run(None, test)

    ref = run(model)
    for a, b in zip(ref, run(smoothed)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    errors = []
    for name, m in (("plain", model), ("smoothed", smoothed)):
        onnx.save(m, str(tmp_path / f"{name}.onnx"))
        quantize_dynamic_int8(tmp_path / f"{name}.onnx", tmp_path / f"{name}.int8.onnx", exclude=())
        errors.append(np.mean([np.abs(a - b).mean() for a, b in zip(ref, run(tmp_path / f"{name}.int8.onnx"))]))
    assert errors[1] < errors[0] / 3, errors


def test_fp16_graph_is_fp16_except_its_islands(bundle):
    g = manifest(bundle)["graphs"]["trt.fp16"]
    model = onnx.load(str(bundle / g["file"]))
    islands = set(g["fp32_islands"])
    nodes = {n.name: n for n in model.graph.node}
    island_inputs = {i for n in model.graph.node if n.name in islands for i in n.input}
    island_inputs |= {n.input[0] for n in model.graph.node if n.op_type == "Cast" and n.output[0] in island_inputs}
    big = [i for i in model.graph.initializer if np.prod(i.dims) >= 1024 and i.name not in island_inputs]
    assert big and all(i.data_type == onnx.TensorProto.FLOAT16 for i in big)
    assert islands <= set(nodes)
    assert {n.name for n in model.graph.node if n.op_type == "LayerNormalization"} <= islands
    # every island is fed FP32: its float inputs come from Casts to FP32 or FP32 initializers/graph inputs
    fp32_inits = {i.name for i in model.graph.initializer if i.data_type == onnx.TensorProto.FLOAT}
    cast_to_fp32 = {n.output[0] for n in model.graph.node if n.op_type == "Cast" and n.attribute[0].i == onnx.TensorProto.FLOAT}
    for name in islands:
        if nodes[name].op_type == "LayerNormalization":
            assert nodes[name].input[0] in cast_to_fp32 and set(nodes[name].input[1:]) <= fp32_inits | cast_to_fp32


def test_onnx_attention_variant_exports_one_attention_op_per_layer(tiny_model, tiny_data, tmp_path):
    from fbinfer.data.source import load_data

    out = tmp_path / "attn.bundle"
    m = export_bundle(tiny_model, load_data(tiny_data), out,
                      ExportConfig(precisions=("fp32",), targets=("tensorrt",), attention="onnx-attention", parity_queries=2))
    ops = [n.op_type for n in onnx.load(str(out / "trt.fp32.onnx")).graph.node]
    assert ops.count("Attention") == 2 and "Softmax" not in ops
    assert m["opset"] == 23 and m["parity"][0]["graph"] == "trt.fp32" and m["parity"][0]["max_abs_logit_diff"] < 1e-4


def test_export_errors_are_one_line(tmp_path, tiny_model, tiny_data, bundle):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    cases = [
        (["export", str(junk), "--data", str(tiny_data), "-o", str(tmp_path / "a")], "not a readable FashionBERT checkpoint"),
        (["export", str(tiny_model), "--data", str(tiny_data), "-o", str(bundle)], "not empty (use --force"),
        (["export", str(tiny_model), "--data", str(tiny_data), "-o", str(tmp_path / "b"), "--calib-batches", "500"],
         "calibration data too small"),
        (["export", str(tiny_model), "--data", str(tiny_data), "-o", str(tmp_path / "c"), "--precision", "fp8"], "unknown precision"),
        (["export", str(tiny_model), "--data", str(tiny_data), "-o", str(tmp_path / "d"), "--int8-exclude", "layers"], "unknown group"),
        (["export", str(tiny_model), "--data", str(tiny_data), "-o", str(tmp_path / "e"), "--int8-smooth", "1.5"], "--int8-smooth must be in [0, 1]"),
    ]
    assert_cli_errors(cases)
    assert not (tmp_path / "b").exists()  # nothing half-written


def test_export_without_onnxruntime_names_the_install(tiny_model, tiny_data, tmp_path, monkeypatch):
    import sys

    from fbinfer.data.source import load_data

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if neither onnxruntime nor onnxruntime-gpu were installed
    with pytest.raises(FbinferError, match=r"ONNX Runtime is not installed: pip install -e '\.\[cpu\]'"):
        export_bundle(tiny_model, load_data(tiny_data), tmp_path / "b", ExportConfig())
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize(("package", "extra"), [("nvidia-modelopt", "quantize"), ("nncf", "openvino")])
def test_export_without_a_quantizer_names_the_install(tiny_model, tiny_data, tmp_path, monkeypatch, package, extra):
    import importlib.metadata

    from fbinfer.data.source import load_data

    real = importlib.metadata.version

    def version(name: str) -> str:
        if name == package:
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(importlib.metadata, "version", version)
    with pytest.raises(FbinferError, match=rf"pip install 'fbinfer\[{extra}\]'.*leave \w+ out of --targets"):
        export_bundle(tiny_model, load_data(tiny_data), tmp_path / "b", ExportConfig())
    assert not (tmp_path / "b").exists()


def test_wrong_feature_size_is_refused(tiny_model, tiny_data):
    from dataclasses import replace

    from fbinfer.data.features import FeatureStore
    from fbinfer.data.source import load_data
    from fbinfer.errors import FbinferError

    ck = load_checkpoint(tiny_model)
    data = load_data(tiny_data)
    other = FeatureStore(data, replace(ck.config, patch_input="pixels", patch_feature_dim=3 * 32 * 32)).ensure(data.train[:1])
    with pytest.raises(FbinferError, match="patch features are"):
        other.check(ck.config)


def test_fp32_graph_off_by_more_than_the_tolerance_fails_the_export(tiny_model, tiny_data, tmp_path):
    from fbinfer.data.source import load_data
    from fbinfer.errors import FbinferError

    out = tmp_path / "strict.bundle"
    with pytest.raises(FbinferError, match="differs from PyTorch"):
        export_bundle(tiny_model, load_data(tiny_data), out,
                      ExportConfig(precisions=("fp32",), targets=("tensorrt",), parity_queries=1, fp32_tolerance=0.0))
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
