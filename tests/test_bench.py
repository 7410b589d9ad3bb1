"""fbinfer bench: FLOP count by hand, drift on hand-made score matrices, the JSON schema of a tiny
end-to-end run, the report files, and one-line errors."""
from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import pytest
from helpers import assert_one_line_error, lazy, planted_pairs, run_cli, run_cli_here

from fbinfer.bench.config import BenchConfig, DriftSetConfig
from fbinfer.bench.drift import drift, spearman
from fbinfer.bench.flops import flops_per_pair
from fbinfer.bench.run import bench
from fbinfer.errors import FbinferError
from fbinfer.evaluation.timing import median_ms_in_turns
from fbinfer.model.checkpoint import load_checkpoint
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
    # the export graph's last layer on [CLS] alone: keys and values of every token, the rest for one row
    cls = 2 * seq * 64 * 64 + 2 * 64 * 64 + 2 * seq * 64 + 2 * 64 * 128
    assert flops_per_pair(cfg, 10, cls_only=True) == 2 * (hand - (4 * seq * 64 * 64 + 2 * seq * seq * 64 + 2 * seq * 64 * 128) + cls)


def test_timing_in_turns_calls_each_contender_once_per_round_in_shuffled_order():
    calls: list[str] = []
    medians = median_ms_in_turns([lambda: calls.append("a"), lambda: (calls.append("b"), time.sleep(0.01))], rounds=40)
    rounds = [calls[i:i + 2] for i in range(0, len(calls), 2)]
    assert len(rounds) == 41 and all(sorted(r) == ["a", "b"] for r in rounds)  # one warm-up round, then 40 in turns
    assert 5 <= sum(r[0] == "b" for r in rounds[1:]) <= 35  # each goes first in some rounds (a spinning runtime's tail is shared)
    assert len(medians) == 2 and medians[1] >= 10 > medians[0]


def test_time_rows_counts_pauses_in_its_seconds_and_warms_each_row_once(monkeypatch):
    """Rounds fill ``min_seconds`` with the slowest row's calls and the pauses before them (here
    calls of no time, so the pauses: 0.1 s / 10 ms = 10 rounds), at least ``min_iters``; the one
    untimed call that finds the slowest row is each row's only warm-up."""
    from fbinfer.bench import run
    from fbinfer.evaluation import timing as timing_module

    class Counting:
        def __init__(self):
            self.calls = 0

        def infer(self, feeds):
            self.calls += 1

    monkeypatch.setattr(timing_module.time, "sleep", lambda s: None)
    rows = {"a": Counting(), "b": Counting()}
    feeds = {"input_ids": np.zeros((4, 3), dtype=np.int64)}
    out = run.time_rows(rows, feeds, BenchConfig(min_seconds=0.1, min_iters=3), "test", pause_s=0.01)
    assert {k: t.iterations for k, t in out.items()} == {"a": 10, "b": 10}
    assert all(r.calls == 11 for r in rows.values())
    out = run.time_rows(rows, feeds, BenchConfig(min_seconds=0.1, min_iters=30), "test", pause_s=0.01)
    assert out["a"].iterations == 30


def test_spearman_by_hand():
    assert spearman(np.array([1.0, 2, 3, 4]), np.array([10.0, 20, 30, 40])) == pytest.approx(1.0)
    assert spearman(np.array([1.0, 2, 3, 4]), np.array([4.0, 3, 2, 1])) == pytest.approx(-1.0)
    # ties take their average rank: ranks (0.5, 0.5, 2) vs (0, 1, 2)
    assert spearman(np.array([1.0, 1, 3]), np.array([1.0, 2, 3])) == pytest.approx(0.8660254, abs=1e-6)
    assert spearman(np.array([1.0, 2, 3]), np.full(3, 5.0)) == 0.0 and spearman(np.full(3, 2.0), np.full(3, 5.0)) == 1.0


def test_drift_on_hand_made_matrices():
    ref = {"image_to_text": np.array([[3.0, 1, 2], [5, 1, 0]]), "text_to_image": np.array([[1.0, 0, 0.5], [2, 1, 0]])}
    other = {"image_to_text": np.array([[3.0, 1, 2], [0.5, 1, 0]]), "text_to_image": np.array([[1.0, 0, 0.5], [2, 1, 0]])}
    d = drift(ref, other, bar=1.0)
    assert d.directions["image_to_text"].delta == -50.0 and d.directions["text_to_image"].delta == 0.0
    assert d.to_dict()["top1_agreement"] == 0.75  # 3 of 4 queries keep their top-1
    assert d.max_abs_dlogit == 4.5 and d.mean_abs_dlogit == pytest.approx(4.5 / 12)
    assert d.spearman == pytest.approx((1 + 0.5 + 1 + 1) / 4)  # query 2 of i2t: (2,1,0) vs (1,2,0) -> rho 0.5
    assert d.verdict == "undecided"  # two queries cannot tell


TINY_DRIFT_SET = DriftSetConfig(queries=60, candidates=6, looks=(0.5, 1.0))


@pytest.fixture(scope="module")
def tiny_bench(tiny_bundle, tiny_data):
    bc = BenchConfig(batches=(1, 4), backends=("ort-fused", "ort-int8", "ov-default", "ov-int8", "torch-int8-dynamic",
                                                "ort-plain-dynamic-int8", "ov-plain-nncf-int8", "trt-fp16-graph", "tensorrt-fp16"),
                     drift_set=TINY_DRIFT_SET,
                     min_seconds=0.05, min_iters=2)
    return bench([tiny_bundle], tiny_data, bc, progress=lambda m: None)


def test_bench_json_schema(tiny_bench):
    r = tiny_bench
    assert {"cpu_threads", "platform", "peak_flops", "versions", "cpu"} <= set(r["machine"])
    assert r["drift_sets"]["tiny"]["queries_per_direction"] == 60 and r["drift_sets"]["tiny"]["candidates"] == 6
    assert len(r["models"]["tiny"]["checkpoint_sha256"]) == 64
    keys = {(x["key"], x["batch"]) for x in r["results"]}
    timed = ("torch-fp32", "ort-fused", "ort-int8", "ov-default", "ov-int8", "torch-int8-dynamic", "ort-plain-dynamic-int8",
             "ov-plain-nncf-int8")
    assert keys == {(k, b) for k in timed for b in (1, 4)} | {("trt-fp16-graph", None)}
    for x in r["results"]:
        assert {"model", "backend", "precision", "variant", "batch", "rank"} <= set(x)
        assert set(x["rank"]["image_to_text"]) >= {"rank1", "rank5", "queries"}
        if x["batch"] is not None:
            assert x["pairs_per_s"] > 0 and set(x["latency_ms"]) == {"p50", "p95", "p99"} and x["pct_of_peak"] > 0
        if x["key"] == "torch-fp32":
            assert "drift" not in x
        else:
            assert {"verdict", "queries", "i2t", "t2i", "top1_agreement", "spearman", "max_abs_dlogit", "mean_abs_dlogit"} <= set(x["drift"])
            assert {"delta", "low", "high", "half_width", "top1_agreement", "truth_ties_reference"} <= set(x["drift"]["i2t"])
            assert x["drift"]["queries"] in (30, 60)
    peers = {x["key"] for x in r["results"] if x["peer"]}
    assert peers == {"torch-fp32", "ov-default", "torch-int8-dynamic", "ort-plain-dynamic-int8", "ov-plain-nncf-int8"}
    ov = {x["key"]: x for x in r["results"] if x["backend"] == "openvino"}
    assert ov["ov-default"]["settings"]["hints"] == "defaults" and ov["ov-default"]["settings"]["graph"] == "plain.fp32.onnx"
    assert ov["ov-default"]["precision"] in ("fp32", "bf16")  # what OpenVINO chose, read back
    assert ov["ov-int8"]["settings"]["graph"] == "ov.int8.onnx" and ov["ov-int8"]["precision"] == "int8"
    last = {x["key"]: x["last_layer"] for x in r["results"]}  # what each row's % of peak counts
    assert {k for k, v in last.items() if v == "[CLS] only"} == {"ort-fused", "ort-int8", "ov-int8", "trt-fp16-graph"}
    fused = next(x for x in r["results"] if x["key"] == "ort-fused")
    assert fused["drift"]["max_abs_dlogit"] < 1e-4 and fused["drift"]["top1_agreement"] == 1.0
    assert fused["drift"]["verdict"] == "undecided" and fused["drift"]["queries"] == 60  # 60 queries cannot say "within 1 point"
    assert "TensorRT is not installed" in r["skipped"]["tiny/tensorrt-fp16"]


def test_the_quantized_peers_are_the_runtimes_own_int8(tiny_bench, tiny_bundle):
    """The peers a user would quantize without fbinfer really are quantized: NNCF's IR carries
    FakeQuantize ops, ONNX Runtime's dynamic graph integer matmuls; both made from the plain export."""
    import onnx
    import openvino as ov

    rows = {x["key"]: x for x in tiny_bench["results"] if x["batch"] == 4}
    assert rows["ov-plain-nncf-int8"]["settings"]["graph"] == "plain.nncf-int8.xml"
    assert rows["ort-plain-dynamic-int8"]["settings"]["graph"] == "plain.ort-dynamic-int8.onnx"
    folder = tiny_bundle / "bench"
    ops = {op.get_type_name() for op in ov.Core().read_model(str(folder / "plain.nncf-int8" / "plain.nncf-int8.xml")).get_ops()}
    assert "FakeQuantize" in ops
    nodes = {n.op_type for n in onnx.load(str(folder / "plain.ort-dynamic-int8.onnx")).graph.node}
    assert {"DynamicQuantizeLinear", "MatMulInteger"} <= nodes
    assert not {"DynamicQuantizeLinear", "MatMulInteger"} & {n.op_type for n in onnx.load(str(folder / "plain.fp32.onnx")).graph.node}


def test_summary_puts_the_fastest_path_within_the_drift_bar_beside_the_fastest_peer(tiny_bench):
    from fbinfer.bench.run import summary

    rows = [dict(x) for x in tiny_bench["results"]]
    for x in rows:  # the tiny run's rows are undecided at 60 queries; plant verdicts to check the choice
        if x.get("drift"):
            x["drift"] = {**x["drift"], "verdict": "within" if x["key"] in ("ort-fused", "ov-int8") else "beyond"}
    s = next(s for s in summary(rows, 1.0) if s["batch"] == 4)
    at4 = [x for x in rows if x["batch"] == 4]
    assert s["best"] == max((x for x in at4 if x["key"] in ("ort-fused", "ov-int8")), key=lambda x: x["pairs_per_s"])["key"]
    assert s["best_peer"] == max((x for x in at4 if x["peer"]), key=lambda x: x["pairs_per_s"])["key"]
    assert s["ratio"] == pytest.approx(s["best_pairs_per_s"] / s["peer_pairs_per_s"], rel=1e-3)
    assert {f["key"] for f in s["faster_not_within"]} == {x["key"] for x in at4 if x["key"] == "ort-int8"
                                                          and x["pairs_per_s"] > s["best_pairs_per_s"]}
    assert not any(x["verdict"] == "within" for x in s["faster_not_within"])
    assert summary([x for x in rows if not (x.get("drift") and x["drift"]["verdict"] == "within")], 1.0) == []


def test_bench_reference_ranks_the_drift_set_as_torch_does(tiny_bench, tiny_bundle, tiny_data):
    """The bench's torch-fp32 Rank@1 equals one computed here another way: each gallery's caption x
    image scores from the eval scorer, hits read off its rows and columns. And the drift set is a
    held-out catalogue, not the model's data."""
    from fbinfer.bench.driftset import drift_data, galleries
    from fbinfer.bundle import Bundle
    from fbinfer.data.features import FeatureStore
    from fbinfer.data.source import load_data
    from fbinfer.evaluation.evaluate import torch_scorer

    ck, data = Bundle.open(tiny_bundle).load_source(), load_data(tiny_data)
    dset = drift_data(data, TINY_DRIFT_SET)
    assert len(dset.test) == 60 and dset.path != data.path
    assert not {dset.image_hash(it) for it in dset.test} & {data.image_hash(it) for it in data.train + data.test}
    scorer = torch_scorer(ck.model, ck.tokenizer(), FeatureStore(dset, ck.config).ensure(dset.test))
    t2i, i2t = [], []
    for g in galleries(dset.test, 6, 60, TINY_DRIFT_SET.seed):
        s = scorer([dset.test[t] for t in g for _ in g], [dset.test[i] for _ in g for i in g]).reshape(6, 6)  # [caption, image]
        t2i += [s[a, a] > np.delete(s[a], a).max() for a in range(6)]
        i2t += [s[b, b] > np.delete(s[:, b], b).max() for b in range(6)]
    ref = next(x for x in tiny_bench["results"] if x["key"] == "torch-fp32")
    assert ref["rank"]["text_to_image"]["rank1"] == pytest.approx(100 * np.mean(t2i), abs=1e-3)
    assert ref["rank"]["image_to_text"]["rank1"] == pytest.approx(100 * np.mean(i2t), abs=1e-3)
    assert ref["rank"]["text_to_image"]["queries"] == 60 and 0 < np.mean(t2i) < 1


def test_report_files(tiny_bench, tmp_path):
    from fbinfer.bench.report import write_report

    paths = write_report(tiny_bench, tmp_path / "report")
    assert [p.name for p in paths] == ["throughput.png", "drift.png", "report.md"]
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and paths[1].read_bytes()[:4] == b"\x89PNG"
    text = paths[2].read_text()
    assert "| tiny | onnxruntime | fp32 | fused |" in text and "queries per direction x 6 candidates" in text


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
    for bad, message in ((DriftSetConfig(queries=1), "--drift-queries: must be at least 2"),
                         (DriftSetConfig(candidates=1), "--drift-candidates: must be at least 2"),
                         (DriftSetConfig(looks=(0.5, 0.9)), "must rise from above 0 to 1.0")):
        with pytest.raises(FbinferError, match=message):
            BenchConfig(drift_set=bad).validate()
    with pytest.raises(FbinferError, match="--max-drift: must be positive"):
        BenchConfig(max_drift=0).validate()
    with pytest.raises(FbinferError, match="--length-groups: must be at least 1, got 0"):
        BenchConfig(length_groups=0).validate()
    assert_one_line_error(run_cli_here("bench", str(tiny_bundle), "--drift-candidates", "1"), "--drift-candidates: must be at least 2")


def test_sequential_drift_stops_when_the_verdict_is_clear_and_not_before():
    """An identical row stops at the first look that can say "within"; a row with its scores
    reversed stops "beyond" at the first look; a row that loses 3 % of its text->image hits is
    beyond; one that loses 1 % is scored to the end; a constant row is beyond (its ties are broken
    at random, not counted as hits)."""
    from fbinfer.bench.drift import sequential_drift

    pairs, flat, cfg = planted_pairs()
    total = len(flat)
    ref = lazy(pairs, flat, "reference")
    same = lazy(pairs, flat.copy())
    d = sequential_drift(ref, same, 1.0, cfg)
    assert d.verdict == "within" and d.queries == pairs.looks[0] < pairs.looks[-1] and same.pairs_scored < total / 2
    rev = lazy(pairs, -flat)
    d = sequential_drift(ref, rev, 1.0, cfg)
    assert d.verdict == "beyond" and d.queries == pairs.looks[0] and d.directions["text_to_image"].delta < -50
    lists = pairs.matrices(np.arange(total), total)["text_to_image"]
    hits = [row for row in lists if flat[row[0]] > flat[row[1:]].max()]

    def losing(n: int) -> np.ndarray:
        out = flat.copy()
        for row in hits[:: len(hits) // n][:n]:  # the truth just below its best negative: the hit lost
            out[row[0]] = flat[row[1:]].max() - 0.01
        return out

    d = sequential_drift(ref, lazy(pairs, losing(48)), 1.0, cfg)
    assert d.verdict == "beyond" and d.directions["text_to_image"].delta < -2  # about -3 at whichever look decided
    d = sequential_drift(ref, lazy(pairs, losing(16)), 1.0, cfg)
    assert d.queries == pairs.looks[-1] and d.directions["text_to_image"].delta == pytest.approx(-1.0)
    assert sequential_drift(ref, lazy(pairs, np.zeros(total)), 1.0, cfg).verdict == "beyond"


def test_only_a_backend_that_cannot_run_here_skips_a_row(monkeypatch, tiny_model):
    """A row whose backend is unavailable is skipped with the reason; any other failure (a broken
    graph, a bad option) fails the bench loudly instead of hiding as a skipped row."""
    from types import SimpleNamespace

    from fbinfer.bench import run
    from fbinfer.bench.config import VARIANTS
    from fbinfer.errors import BackendUnavailable

    row = next(v for v in VARIANTS if v.key == "torch-bf16")
    mb = SimpleNamespace(ck=load_checkpoint(tiny_model), bundle=None)

    def refuse(error):
        def open_runner(*args, **kwargs):
            raise error
        return open_runner

    monkeypatch.setattr(run, "open_runner", refuse(BackendUnavailable("no bf16 here")))
    assert run.runner_for(row, mb) == (None, "no bf16 here")
    monkeypatch.setattr(run, "open_runner", refuse(FbinferError("graph.onnx: ONNX Runtime cannot load it")))
    with pytest.raises(FbinferError, match="cannot load it"):
        run.runner_for(row, mb)


def test_every_default_row_opens_or_is_skipped_with_its_reason(tiny_bundle, tiny_data):
    """The card's command (no --backends) opens every row: one that cannot run on this machine
    (torch fp16 without CUDA, TensorRT without its wheel, a tuned row without a plan) is skipped
    with the reason, never stops the bench; the numerics-only rows wait to be named."""
    import torch

    from fbinfer.bench.config import KEYS, VARIANTS
    from fbinfer.bench.models import resolve
    from fbinfer.bench.run import NUMERICS_ONLY, open_rows

    skipped: dict[str, str] = {}
    opened = open_rows(resolve(tiny_bundle, tiny_data), BenchConfig(), skipped)
    try:
        got = {v.key for v, _ in opened} | {k.split("/", 1)[1] for k in skipped}
        assert got == set(KEYS) and all(skipped.values())
        assert {"torch-fp32", "torch-bf16", "torch-compile", "ort-fused", "ov-int8-bf16", "ov-plain-nncf-int8"} <= {v.key for v, _ in opened}
        assert {k for k, why in skipped.items() if why == NUMERICS_ONLY} == {f"tiny/{v.key}" for v in VARIANTS if not v.timed}
        if not torch.cuda.is_available():
            assert "CUDA" in skipped["tiny/torch-fp16"]
        settings = {v.key: r.describe() for v, r in opened}  # fbinfer's rows by caption length, the peers whole
        assert settings["ort-fused"]["length_groups"] == "4" and settings["torch-bf16"]["length_groups"] == "4"
        assert not any("length_groups" in settings[v.key] for v, _ in opened if v.peer)
    finally:
        for _, runner in opened:
            runner.deactivate()


def _row(key: str, peer: bool, pairs: float, verdict: str | None, h2h: float | None = None) -> dict:
    d = {"verdict": verdict, **{k: {"delta": 0.1, "low": -0.5, "high": 0.7} for k in ("i2t", "t2i")}} if verdict else None
    return {"model": "m", "batch": 64, "key": key, "peer": peer, "pairs_per_s": pairs, "latency_ms": {"p50": 640 / pairs},
            "drift": d, "head_to_head": {"pairs_per_s": h2h, "latency_ms": {"p50": 640 / h2h}} if h2h else None}


def test_the_summary_takes_its_ratio_from_the_head_to_head_of_the_contenders():
    """Fast rows timed among all rows move by up to 40 % with the row before them, so the summary
    chooses and divides by the contenders' head-to-head figures, never mixing them with the
    all-rows figures; without a head-to-head it falls back to the all-rows turns."""
    from types import SimpleNamespace

    from fbinfer.bench.run import contenders, summary

    rows = [_row("a", False, 100, "within", 90), _row("b", False, 95, "within", 120), _row("c", False, 300, "beyond"),
            _row("p", True, 110, "within", 100), _row("q", True, 60, "undecided")]
    s = summary(rows, 1.0)[0]
    assert (s["best"], s["best_peer"], s["ratio"], s["timing"]) == ("b", "p", 1.2, "head to head")
    assert s["best_latency_p50_ms"] == pytest.approx(640 / 120)
    assert [f["key"] for f in s["faster_not_within"]] == ["c"]  # beside the all-rows figures it was chosen on
    plain = summary([{**r, "head_to_head": None} for r in rows], 1.0)[0]
    assert (plain["best"], plain["best_peer"], plain["ratio"], plain["timing"]) == ("a", "p", round(100 / 110, 3), "all rows in turns")

    def meta(peer, verdict):
        return SimpleNamespace(peer=peer, drift=SimpleNamespace(verdict=verdict) if verdict else None)

    speeds = {"a": 100, "b": 70, "c": 200, "p": 110, "q": 90, "ref": 50}
    by_key = {"a": meta(False, "within"), "b": meta(False, "within"), "c": meta(False, "beyond"), "p": meta(True, "beyond"),
              "q": meta(True, "within"), "ref": meta(True, None)}
    assert contenders(speeds, by_key, 0.75) == ["a", "p", "q"]  # b is under 75 % of a; c is not within; ref too slow
    assert contenders(speeds, {**by_key, "a": meta(False, "undecided"), "b": meta(False, "beyond")}, 0.75) == []


def test_time_model_times_the_contenders_again_head_to_head_with_pauses(monkeypatch, tiny_bundle, tiny_data):
    """The all-rows turns run without pauses; then the summary's contenders (here the one row
    planted within and the peers near the fastest) run again in turns, each call after an
    untimed pause, and only they carry head-to-head figures."""
    from fbinfer.bench import run
    from fbinfer.bench.drift import RowDrift
    from fbinfer.evaluation import timing as timing_module
    from fbinfer.evaluation.paired import PairedDelta

    mb = run.resolve(tiny_bundle, tiny_data)
    bc = BenchConfig(batches=(4,), backends=("ort-fused", "ov-default"), min_seconds=0.05, min_iters=3, pause_s=0.002)
    opened = run.open_rows(mb, bc, {})
    pauses: list[float] = []
    monkeypatch.setattr(timing_module.time, "sleep", pauses.append)
    try:
        zero = PairedDelta(0.0, -0.5, 0.5, 800, 0, 0, 1.0, 0, 0)
        rows = [run.Row("tiny", v.key, v.backend, v.precision, v.variant, v.peer, {}, {},
                        None if v.key == "torch-fp32" else RowDrift("within", 1.0, 800, {"i2t": zero, "t2i": zero}, 1.0, 0.0, 0.0))
                for v, _ in opened]
        out = run.time_model(mb, rows, {v.key: r for v, r in opened}, bc, {"peak_flops": {"fp32": 1e11}}, lambda m: None)
    finally:
        for _, r in opened:
            r.deactivate()
    speeds = {row.key: sp for row, sp in out}
    h2h = [k for k, sp in speeds.items() if sp.head_to_head]
    assert "ort-fused" in h2h and set(h2h) == set(run.contenders({k: sp.pairs_per_s for k, sp in speeds.items()},
                                                                 {row.key: row for row, _ in out}, bc.contender_share))
    assert all(speeds[k].head_to_head["pause_ms"] == 2.0 for k in h2h)
    rounds = speeds[h2h[0]].head_to_head["iterations"]
    assert len(pauses) == rounds * len(h2h) and set(pauses) == {0.002}  # every head-to-head call, no all-rows call
