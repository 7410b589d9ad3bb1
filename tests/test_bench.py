"""fbinfer bench: FLOP count by hand, drift on hand-made score matrices, the JSON schema of a tiny
end-to-end run, the report files, and one-line errors."""
from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import pytest
from helpers import assert_one_line_error, run_cli

from fbinfer.bench.drift import drift, spearman
from fbinfer.bench.flops import flops_per_pair
from fbinfer.bench.run import BenchConfig, bench
from fbinfer.errors import FbinferError
from fbinfer.evaluation.metrics import rank_at_k
from fbinfer.evaluation.timing import median_ms_in_turns
from fbinfer.model.config import preset


def test_flops_against_a_hand_count():
    cfg = replace(preset("fashionbert-tiny"), num_layers=1)  # hidden 64, FFN 128, 64 patches of 320, [IMG] token
    seq = 10 + 65
    hand = (65 * 64 * 320  # averaging matmul
            + 65 * 320 * 64  # patch projection
            + 4 * seq * 64 * 64 + 2 * seq * seq * 64 + 2 * seq * 64 * 128  # Q, K, V, out; QK^T, PV; FFN
            + 64 * 64 + 64)  # pooler, TIA
    assert flops_per_pair(cfg, 10) == 2 * hand == 11_688_320
    assert flops_per_pair(replace(cfg, num_layers=2), 10) - flops_per_pair(cfg, 10) == 2 * (4 * seq * 64 * 64 + 2 * seq * seq * 64 + 2 * seq * 64 * 128)


def test_timing_in_turns_calls_each_contender_once_per_round_in_shuffled_order():
    calls: list[str] = []
    medians = median_ms_in_turns([lambda: calls.append("a"), lambda: (calls.append("b"), time.sleep(0.01))], rounds=40)
    rounds = [calls[i:i + 2] for i in range(0, len(calls), 2)]
    assert len(rounds) == 41 and all(sorted(r) == ["a", "b"] for r in rounds)  # one warm-up round, then 40 in turns
    assert 5 <= sum(r[0] == "b" for r in rounds[1:]) <= 35  # each goes first in some rounds (a spinning runtime's tail is shared)
    assert len(medians) == 2 and medians[1] >= 10 > medians[0]


def test_spearman_by_hand():
    assert spearman(np.array([1.0, 2, 3, 4]), np.array([10.0, 20, 30, 40])) == pytest.approx(1.0)
    assert spearman(np.array([1.0, 2, 3, 4]), np.array([4.0, 3, 2, 1])) == pytest.approx(-1.0)
    # ties take their average rank: ranks (0.5, 0.5, 2) vs (0, 1, 2)
    assert spearman(np.array([1.0, 1, 3]), np.array([1.0, 2, 3])) == pytest.approx(0.8660254, abs=1e-6)
    assert spearman(np.array([1.0, 2, 3]), np.full(3, 5.0)) == 0.0 and spearman(np.full(3, 2.0), np.full(3, 5.0)) == 1.0


def test_drift_on_hand_made_matrices():
    ref = {"image_to_text": np.array([[3.0, 1, 2], [5, 1, 0]]), "text_to_image": np.array([[1.0, 0, 0.5], [2, 1, 0]])}
    other = {"image_to_text": np.array([[3.0, 1, 2], [0.5, 1, 0]]), "text_to_image": np.array([[1.0, 0, 0.5], [2, 1, 0]])}
    rep = {d: rank_at_k(m) for d, m in ref.items()}
    rep_o = {d: rank_at_k(m) for d, m in other.items()}
    d = drift(rep, rep_o, ref, other)
    assert d["d_rank1_i2t"] == -50.0 and d["d_rank1_t2i"] == 0.0 and d["d_rank5_i2t"] == 0.0
    assert d["top1_agreement"] == 0.75  # 3 of 4 queries keep their top-1
    assert d["max_abs_dlogit"] == 4.5 and d["mean_abs_dlogit"] == pytest.approx(4.5 / 12)
    assert d["spearman"] == pytest.approx((1 + 0.5 + 1 + 1) / 4)  # query 2 of i2t: (2,1,0) vs (1,2,0) -> rho 0.5


@pytest.fixture(scope="module")
def tiny_bench(tiny_bundle, tiny_data):
    bc = BenchConfig(batches=(1, 4), backends=("ort-fused", "ort-int8", "ov-default", "ov-int8", "torch-int8-dynamic",
                                                "trt-fp16-graph", "tensorrt-fp16"), queries=3, min_seconds=0.05, min_iters=2)
    return bench([tiny_bundle], tiny_data, bc, progress=lambda m: None)


def test_bench_json_schema(tiny_bench):
    r = tiny_bench
    assert {"cpu_threads", "platform", "peak_flops", "versions"} <= set(r["machine"])
    keys = {(x["key"], x["batch"]) for x in r["results"]}
    timed = ("torch-fp32", "ort-fused", "ort-int8", "ov-default", "ov-int8", "torch-int8-dynamic")
    assert keys == {(k, b) for k in timed for b in (1, 4)} | {("trt-fp16-graph", None)}
    for x in r["results"]:
        assert {"model", "backend", "precision", "variant", "batch", "rank"} <= set(x)
        assert set(x["rank"]["image_to_text"]) >= {"rank1", "rank5", "rank10"}
        if x["batch"] is not None:
            assert x["pairs_per_s"] > 0 and set(x["latency_ms"]) == {"p50", "p95", "p99"} and x["pct_of_peak"] > 0
        if x["key"] == "torch-fp32":
            assert "drift" not in x
        else:
            assert {"d_rank1_i2t", "d_rank1_t2i", "d_rank5_i2t", "d_rank10_t2i", "top1_agreement", "spearman", "max_abs_dlogit",
                    "mean_abs_dlogit"} <= set(x["drift"])
    peers = {x["key"] for x in r["results"] if x["peer"]}
    assert peers == {"torch-fp32", "ov-default", "torch-int8-dynamic"}
    ov = {x["key"]: x for x in r["results"] if x["backend"] == "openvino"}
    assert ov["ov-default"]["settings"]["hints"] == "defaults" and ov["ov-default"]["settings"]["graph"] == "plain.fp32.onnx"
    assert ov["ov-default"]["precision"] in ("fp32", "bf16")  # what OpenVINO chose, read back
    assert ov["ov-int8"]["settings"]["graph"] == "ov.int8.onnx" and ov["ov-int8"]["precision"] == "int8"
    fused = next(x for x in r["results"] if x["key"] == "ort-fused")
    assert fused["drift"]["max_abs_dlogit"] < 1e-4 and fused["drift"]["top1_agreement"] == 1.0
    assert "TensorRT is not installed" in r["skipped"]["tiny/tensorrt-fp16"]


def test_summary_puts_the_fastest_path_within_the_drift_bar_beside_the_fastest_peer(tiny_bench):
    rows = [x for x in tiny_bench["results"] if x["batch"] == 4]
    for s in (s for s in tiny_bench["summary"] if s["batch"] == 4):
        ours = [x for x in rows if not x["peer"] and max(abs(x["drift"]["d_rank1_i2t"]), abs(x["drift"]["d_rank1_t2i"])) <= 1.0]
        assert s["best"] == max(ours, key=lambda x: x["pairs_per_s"])["key"]
        assert s["best_peer"] == max((x for x in rows if x["peer"]), key=lambda x: x["pairs_per_s"])["key"]
        assert s["ratio"] == pytest.approx(s["best_pairs_per_s"] / s["peer_pairs_per_s"], rel=1e-3)
    assert {s["batch"] for s in tiny_bench["summary"]} <= {1, 4}


def test_bench_reference_is_fbinfer_eval(tiny_bench, tiny_bundle, tiny_data):
    """The bench's torch-fp32 row ranks exactly as ``fbinfer eval`` does on the same queries."""
    from fbinfer.bundle import Bundle
    from fbinfer.data.features import FeatureStore
    from fbinfer.data.source import load_data
    from fbinfer.evaluation.evaluate import evaluate, torch_scorer

    ck, data = Bundle.open(tiny_bundle).load_source(), load_data(tiny_data)
    rep, _ = evaluate(torch_scorer(ck.model, ck.tokenizer(), FeatureStore(data, ck.config).ensure(data.test)), data, queries=3)
    ref = next(x for x in tiny_bench["results"] if x["key"] == "torch-fp32")
    assert ref["rank"] == rep


def test_report_files(tiny_bench, tmp_path):
    from fbinfer.bench.report import write_report

    paths = write_report(tiny_bench, tmp_path / "report")
    assert [p.name for p in paths] == ["throughput.png", "drift.png", "report.md"]
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and paths[1].read_bytes()[:4] == b"\x89PNG"
    assert "| tiny | onnxruntime | fp32 | fused |" in paths[2].read_text()


def test_bench_bad_input(tiny_bundle, tiny_data, tmp_path):
    with pytest.raises(FbinferError, match="above the bundle's max batch"):
        bench([tiny_bundle], tiny_data, BenchConfig(batches=(65,), backends=()), progress=lambda m: None)
    with pytest.raises(FbinferError, match="unknown backend"):
        BenchConfig(backends=("tpu",)).validate()
    with pytest.raises(FbinferError, match="must be >= 1"):
        BenchConfig(batches=(0,)).validate()
    r = run_cli("bench", "--batch", "0", str(tiny_bundle), env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert_one_line_error(r, "must be >= 1")
    r = run_cli("bench", env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert_one_line_error(r, "run `fbinfer demo` first")
