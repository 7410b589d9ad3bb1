"""The backend registry and the OpenVINO backend: every backend listed with its precisions and why
it cannot run here, one-line errors, OpenVINO parity against ONNX Runtime and PyTorch, its
precision made a choice, and its batch split over streams."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fbinfer
from fbinfer.backends import REGISTRY, describe, open_runner
from fbinfer.bundle import Bundle
from fbinfer.bundle.io_spec import LOGIT, make_feeds
from fbinfer.data.features import FeatureStore
from fbinfer.data.source import load_data
from fbinfer.errors import FbinferError
from fbinfer.model.checkpoint import load_checkpoint

openvino = pytest.importorskip("openvino", reason="OpenVINO is not installed (pip install -e '.[openvino]'; CI installs it)")


@pytest.fixture(scope="module")
def feeds(tiny_bundle, tiny_data):
    """Real test pairs: every caption against every image of the first 8 test items (64 pairs)."""
    data = load_data(tiny_data)
    b = Bundle.open(tiny_bundle)
    items = data.test[:8]
    store = FeatureStore(data, b.config).ensure(items)
    texts = [t.text for t in items for _ in items]
    return make_feeds(b.tokenizer(), store.get(items * len(items)).numpy(), texts)


def test_every_backend_is_listed_with_its_precisions():
    d = describe()
    assert list(d) == list(REGISTRY) == ["torch", "onnxruntime", "openvino", "tensorrt"]
    assert d["openvino"]["precisions"] == ["fp32", "bf16", "int8"] and d["openvino"]["unavailable"] is None
    assert d["torch"]["runs"] == "checkpoint" and d["onnxruntime"]["runs"] == "bundle"
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        assert d["tensorrt"]["unavailable"].startswith("TensorRT is not installed: install TensorRT on a CUDA machine")


def test_registry_errors_list_what_there_is(tiny_bundle, tiny_model):
    b = Bundle.open(tiny_bundle)
    with pytest.raises(FbinferError, match=r"backend 'tpu' is unknown; choose from torch, onnxruntime, openvino, tensorrt") as e:
        open_runner("tpu", b, "fp32")
    if "TensorRT is not installed" in (describe()["tensorrt"]["unavailable"] or ""):
        assert "tensorrt (not here: TensorRT is not installed" in str(e.value)
    with pytest.raises(FbinferError, match=r"precision 'fp8' on openvino: choose from fp32, bf16, int8"):
        open_runner("openvino", b, "fp8")
    with pytest.raises(FbinferError, match=r"a checkpoint runs on the torch backend; export it"):
        fbinfer.load(tiny_model, backend="openvino")
    with pytest.raises(FbinferError, match=r"device 'cuda': fbinfer runs OpenVINO on the CPU only"):
        fbinfer.load(tiny_bundle, backend="openvino", device="cuda")


def test_missing_openvino_names_the_install_command(tiny_bundle):
    """In a fresh interpreter where ``import openvino`` fails."""
    code = ("import sys; sys.modules['openvino'] = None\n"
            "import fbinfer\nfrom fbinfer.errors import FbinferError\n"
            f"try:\n    fbinfer.load({str(tiny_bundle)!r}, backend='openvino')\n"
            "except FbinferError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "backend 'openvino' is not available here: OpenVINO is not installed: pip install -e '.[openvino]' (or: pip install openvino)"


def test_openvino_fp32_equals_onnxruntime_and_pytorch(tiny_bundle, tiny_model, feeds):
    """fp32 is exact to float rounding: within a thousandth of the logits' spread of PyTorch (a
    constant or reordered output is off by about the spread)."""
    ref = open_runner("torch", Bundle.open(tiny_bundle), "fp32").activate().infer(feeds)[LOGIT]
    ort = open_runner("onnxruntime", Bundle.open(tiny_bundle), "fp32").activate().infer(feeds)[LOGIT]
    with open_runner("openvino", Bundle.open(tiny_bundle), "fp32") as ov:
        got = ov.infer(feeds)[LOGIT]
        assert ov.describe()["effective INFERENCE_PRECISION_HINT"] == "f32"
    spread = ref.max() - ref.min()
    assert spread > 0 and np.abs(got - ref).max() <= 1e-3 * spread and np.abs(got - ort).max() <= 1e-3 * spread
    assert list(np.argsort(got)) == list(np.argsort(ref))


def test_openvino_precision_is_a_choice_not_a_default(tiny_bundle):
    from fbinfer.backends.openvino import supports_bf16

    b = Bundle.open(tiny_bundle)
    with open_runner("openvino", b, "int8") as r:
        settings = r.describe()
        assert settings["graph"] == "ov.int8.onnx" and settings["hints"].startswith("INFERENCE_PRECISION_HINT=")
    if supports_bf16():
        with open_runner("openvino", b, "bf16") as r:
            assert r.describe()["effective INFERENCE_PRECISION_HINT"] == "bf16"
    with open_runner("openvino", b, "fp32", hints={}, streams=1) as r:  # the peer: OpenVINO's own defaults
        assert r.describe()["hints"] == "defaults"


def test_openvino_int8_graph_is_quantized_and_runs(tiny_bundle, feeds):
    import onnx

    b = Bundle.open(tiny_bundle)
    graph = onnx.load(str(b.graph("openvino", "int8")))
    ops = [n.op_type for n in graph.graph.node]
    quantization = b.manifest["graphs"]["ov.int8"]["quantization"]
    assert quantization["quantizer"]["name"] == "nncf" and len(quantization["matmuls"]["int8"]) == 2  # layer 1's keys and values (the rest of it sees [CLS] alone)
    assert ops.count("QuantizeLinear") > 0 and ops.count("DequantizeLinear") > ops.count("QuantizeLinear")  # weights: DQ only
    assert not any(i.data_type == onnx.TensorProto.FLOAT16 for i in graph.graph.initializer)  # FP32 elsewhere
    with open_runner("openvino", b, "int8") as r:
        got = r.infer(feeds)[LOGIT]
    assert got.shape == (64,) and np.isfinite(got).all()
    row = b.parity("ov.int8", "openvino")
    assert row["precision"] == "int8" and row["pairs"] > 0


def test_batch_split_over_streams_keeps_every_row_in_place(tiny_bundle, feeds):
    """Two requests take halves of the batch at once; the result is the one-request result, row by row."""
    b = Bundle.open(tiny_bundle)
    one = open_runner("openvino", b, "fp32", streams=1).activate().infer(feeds)[LOGIT]
    for streams in (2, 3):
        got = open_runner("openvino", b, "fp32", streams=streams).activate().infer(feeds)[LOGIT]
        np.testing.assert_allclose(got, one, rtol=0, atol=1e-6 * (one.max() - one.min()))
    single = {k: v[5:6] for k, v in feeds.items()}
    np.testing.assert_allclose(open_runner("openvino", b, "fp32", streams=2).activate().infer(single)[LOGIT], one[5:6], atol=1e-6)


def test_a_graph_openvino_cannot_compile_is_one_line(tmp_path):
    from fbinfer.backends.openvino import OpenVINORunner

    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"\x08\x07garbage that is no ONNX graph")
    with pytest.raises(FbinferError, match=r"broken.onnx: OpenVINO cannot compile it \(") as e:
        OpenVINORunner(bad, {}).activate()
    assert "\n" not in str(e.value)


def test_load_scores_equal_the_runner_on_the_same_feeds(tiny_bundle, tiny_data):
    """``fbinfer.load`` adds tokenizing, featurizing and sorting by length: the scores are the backend's own
    (one batch, so dynamic INT8 sees the same rows)."""
    data = load_data(tiny_data)
    items = data.test[:6]
    texts, paths = [it.text for it in items], [str(Path(tiny_data) / it.image) for it in items]
    b = Bundle.open(tiny_bundle)
    for backend, precision in (("onnxruntime", "fp32"), ("onnxruntime", "int8"), ("openvino", "fp32"), ("openvino", "int8")):
        m = fbinfer.load(tiny_bundle, backend=backend, precision=precision, batch_size=len(items))
        feeds = make_feeds(b.tokenizer(), m.patch_features(paths), texts)  # the bundle's extractor, on that backend
        direct = open_runner(backend, b, precision).activate().infer(feeds)[LOGIT]
        got = m.score(texts, paths)
        np.testing.assert_allclose(got, direct, rtol=0, atol=1e-5 * (np.ptp(direct) + 1e-9), err_msg=f"{backend} {precision}")


def test_load_passes_backend_options_and_refuses_unknown_ones(tiny_bundle):
    """The student's fastest path (INT8, bf16 elsewhere) is one ``fbinfer.load`` call."""
    from fbinfer.backends.openvino import supports_bf16

    if supports_bf16():
        m = fbinfer.load(tiny_bundle, backend="openvino", precision="int8", hints={"INFERENCE_PRECISION_HINT": "bf16"})
        settings = m.runner.describe()
        assert settings["graph"] == "ov.int8.onnx" and settings["effective INFERENCE_PRECISION_HINT"] == "bf16"
    with pytest.raises(FbinferError, match="option 'hint' on openvino: choose from graph, hints, streams"):
        fbinfer.load(tiny_bundle, backend="openvino", hint={})
    with pytest.raises(FbinferError, match="option 'streams' on onnxruntime: choose from"):
        fbinfer.load(tiny_bundle, backend="onnxruntime", streams=2)


@pytest.mark.parametrize("backend, source", [("torch", "checkpoint"), ("onnxruntime", "bundle"), ("openvino", "bundle")])
def test_the_base_runner_owns_the_lifecycle_and_checks_inputs(tiny_bundle, tiny_model, feeds, backend, source):
    """Every backend: infer before activate is an error, activate loads once, describe() loads
    nothing, and a feed of the wrong name, dtype or rank is one line naming the input."""
    b = Bundle.open(tiny_bundle)
    runner = open_runner(backend, load_checkpoint(tiny_model) if source == "checkpoint" else b, "fp32", device="cpu")
    runner.describe()
    assert not runner.is_active
    with pytest.raises(FbinferError, match="infer\\(\\) on an inactive runner; activate it first"):
        runner.infer(feeds)
    with runner:
        loaded = {k: v for k, v in vars(runner).items() if k in ("session", "compiled", "model")}
        assert runner.activate() is runner and all(vars(runner)[k] is v for k, v in loaded.items())  # loaded once
        assert runner.infer(feeds)[LOGIT].shape == (64,)
        cases = [({**feeds, "input_ids": feeds["input_ids"].astype(np.float32)}, "input 'input_ids' is float32 of rank 2, expected int64"),
                 ({**feeds, "patches": feeds["patches"][0]}, "input 'patches' is float32 of rank 2, expected float32 of rank 3"),
                 ({k: v for k, v in feeds.items() if k != "attention_mask"}, "input 'attention_mask' is missing"),
                 ({**feeds, "pixels": feeds["patches"]}, "unknown input 'pixels'")]
        for bad, message in cases:
            with pytest.raises(FbinferError, match=message):
                runner.infer(bad)
    assert not runner.is_active


def test_length_groups_cut_sorted_rows_and_keep_one_width_whole():
    from fbinfer.backends.length_groups import length_groups

    lengths = np.array([9, 3, 7, 3, 12, 5, 8, 4, 6, 11, 3, 10, 5, 7, 9, 6])
    mask = (np.arange(12)[None, :] < lengths[:, None]).astype(np.int64)
    parts = length_groups(mask, 2, min_rows=8)
    assert [w for _, w in parts] == [6, 12]
    assert sorted(np.concatenate([r for r, _ in parts]).tolist()) == list(range(16))
    assert max(lengths[parts[0][0]]) <= min(lengths[parts[1][0]])
    assert len(length_groups(mask, 4, min_rows=8)) == 2  # no part under min_rows
    assert len(length_groups(np.ones((32, 5), dtype=np.int64), 4)) == 1  # one caption length: nothing to save


def test_length_groups_runner_scores_like_the_whole_batch_with_fewer_tokens(tiny_bundle, feeds):
    """Same logits in the caller's order (a lost reordering fails it), from narrower sub-batches."""
    b = Bundle.open(tiny_bundle)
    one = open_runner("onnxruntime", b, "fp32", length_groups=1).activate()
    assert "length_groups" not in one.describe()  # 1: the backend's runner itself
    whole = one.infer(feeds)[LOGIT]
    split = open_runner("onnxruntime", b, "fp32").activate()  # ONNX Runtime's default: 4
    widths = []
    inner_infer = split.inner.infer_impl
    split.inner.infer_impl = lambda f: widths.append(f["attention_mask"].shape) or inner_infer(f)
    out = split.infer(feeds)[LOGIT]
    assert np.abs(out - whole).max() < 1e-4 and np.std(whole) > 0.1
    assert len(widths) > 1 and sum(n * w for n, w in widths) < feeds["attention_mask"].size
    assert split.describe()["length_groups"] == "4"
    with pytest.raises(FbinferError, match="length_groups: must be a positive integer, not 0"):
        open_runner("onnxruntime", b, "fp32", length_groups=0)
