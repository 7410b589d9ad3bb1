"""The parity bars can fail: every graph of the tiny bundle meets them against PyTorch, and the same
graph made to answer a constant, or its batch reversed, misses them."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from helpers import parity_misses
from onnx import TensorProto, helper, numpy_helper

from fbinfer.backends.onnxruntime import OnnxRuntimeRunner
from fbinfer.backends.pytorch import TorchRunner
from fbinfer.bundle.io_spec import LOGIT
from fbinfer.data.features import FeatureStore
from fbinfer.data.source import load_data
from fbinfer.export.parity import ParitySet, compare
from fbinfer.model.checkpoint import load_checkpoint


@pytest.fixture(scope="module")
def held_out(tiny_model, tiny_data) -> tuple[ParitySet, np.ndarray]:
    """Every test query of the tiny set with its candidates, and PyTorch's logits for them."""
    ck, data = load_checkpoint(tiny_model), load_data(tiny_data)
    store = FeatureStore(data, ck.config).ensure(data.test)
    pairs = ParitySet.from_data(data, store, ck.tokenizer(), queries=len(data.test))
    return pairs, pairs.logits(TorchRunner(ck.model), "pytorch")


def graphs(bundle: Path) -> dict[str, dict]:
    return json.loads((bundle / "manifest.json").read_text())["graphs"]


def mutant(model: onnx.ModelProto, how: str) -> onnx.ModelProto:
    """``model`` with its logit output replaced: ``constant`` (logit x 0 + 0.5) or ``reversed``
    (the batch in reverse order, so every score lands on another pair)."""
    out = next(o for o in model.graph.output if o.name == LOGIT)
    producer = next(n for n in model.graph.node if LOGIT in n.output)
    producer.output[list(producer.output).index(LOGIT)] = "true_logit"
    dtype = helper.tensor_dtype_to_np_dtype(out.type.tensor_type.elem_type)
    if how == "constant":
        consts = {"zero": np.zeros((), dtype), "half": np.full((), 0.5, dtype)}
        nodes = [helper.make_node("Mul", ["true_logit", "zero"], ["zeroed"]), helper.make_node("Add", ["zeroed", "half"], [LOGIT])]
    else:
        consts = {"starts": np.array([-1]), "ends": np.array([np.iinfo(np.int64).min]), "axes": np.array([0]), "steps": np.array([-1])}
        nodes = [helper.make_node("Slice", ["true_logit", "starts", "ends", "axes", "steps"], [LOGIT])]
    model.graph.initializer.extend(numpy_helper.from_array(v, k) for k, v in consts.items())
    model.graph.node.extend(nodes)
    assert out.type.tensor_type.elem_type in (TensorProto.FLOAT, TensorProto.FLOAT16)
    return model


def onnxruntime_row(path: Path, held_out) -> dict:
    pairs, reference = held_out
    return compare(reference, pairs.logits(OnnxRuntimeRunner(path), path.name), pairs.queries)


def test_the_fixture_model_spreads_its_scores(held_out):
    """The premise of every bar: one query's candidates differ by far more than rounding."""
    pairs, reference = held_out
    spreads = [reference[s].std() for s in pairs.queries]
    assert min(spreads) > 0.05 and np.mean(spreads) > 0.2, spreads
    gaps = [np.diff(np.sort(reference[s])[-2:])[0] for s in pairs.queries]
    assert np.median(gaps) > 0.01, gaps


@pytest.mark.parametrize("name", ["trt.fp32", "trt.fp16", "trt.int8", "ort.fp32", "ort.int8", "ov.int8"])
def test_every_graph_meets_its_bars(tiny_bundle, held_out, name):
    g = graphs(tiny_bundle)[name]
    row = onnxruntime_row(tiny_bundle / g["file"], held_out)
    assert parity_misses(row, g["precision"]) == [], (name, row)
    if g["precision"] == "fp32":
        assert row["max_abs_logit_diff"] <= 1e-4


@pytest.mark.parametrize("how", ["constant", "reversed"])
@pytest.mark.parametrize("name", ["trt.fp16", "trt.int8", "ort.int8", "ov.int8"])
def test_a_wrong_graph_misses_the_bars(tiny_bundle, held_out, tmp_path, name, how):
    g = graphs(tiny_bundle)[name]
    path = tmp_path / f"{name}.{how}.onnx"
    onnx.save(mutant(onnx.load(str(tiny_bundle / g["file"])), how), str(path))
    row = onnxruntime_row(path, held_out)
    assert parity_misses(row, g["precision"]), (name, how, row)
