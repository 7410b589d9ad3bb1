"""fbinfer tune: the choice rejects a planted path that drifts and takes the fastest that does not;
a real tuning run writes its plan into the bundle, and fbinfer.load and the bench run that plan."""
from __future__ import annotations

import shutil
import time
from dataclasses import replace

import numpy as np
import pytest
from helpers import assert_one_line_error, lazy, planted_pairs, run_cli_here

from fbinfer.backends.base import Runner
from fbinfer.bench.config import DriftSetConfig
from fbinfer.bundle import Bundle
from fbinfer.bundle.io_spec import LOGIT
from fbinfer.bundle.plan import Plan
from fbinfer.errors import FbinferError
from fbinfer.tune import tuner
from fbinfer.tune.config import TuneConfig

LISTS = DriftSetConfig(queries=64, candidates=16, looks=(1.0,), seed=3)


class Planted(Runner):
    """Hand-made scores of the planted drift set (``helpers.planted_pairs``), ``sleep`` seconds a call."""

    def __init__(self, flat: np.ndarray, sleep: float = 0.0):
        super().__init__("planted")
        self.flat, self.sleep = flat, sleep
        self.activate()

    def activate_impl(self) -> None:
        pass

    def infer_impl(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        time.sleep(self.sleep)
        k = int(feeds["k"][0])
        return {LOGIT: self.flat[k * 64:(k + 1) * 64]}


@pytest.fixture()
def bundle_copy(tiny_bundle, tmp_path):
    out = tmp_path / "tiny.bundle"
    shutil.copytree(tiny_bundle, out)
    return out


def test_the_tuner_rejects_a_planted_path_that_drifts_and_takes_the_fastest_that_does_not():
    """Three candidates on 1,600 planted queries per direction: the fastest reverses 3 % of the
    reference's hits (beyond the 1-point bar), the next keeps every ranking, the slowest adds
    noise far below the score gaps. The tuner takes the faithful fast one, and not a fourth, as
    fast as the first, that loses fewer hits: within by the letter, its interval past the bar."""
    pairs, flat, cfg = planted_pairs()
    lists = pairs.matrices(np.arange(len(flat)), len(flat))["text_to_image"]
    hits = [row for row in lists if flat[row[0]] > flat[row[1:]].max()]
    drifting = flat.copy()
    for row in hits[::len(hits) // 48][:48]:  # the truth just below its best negative: 48 hits lost
        drifting[row[0]] = flat[row[1:]].max() - 0.01
    loose = flat.copy()
    for row in hits[::len(hits) // 12][:12]:  # 12 hits lost: within by the letter, its interval reaching past -1
        loose[row[0]] = flat[row[1:]].max() - 0.01
    cands = [tuner.Candidate(Plan("onnxruntime", "int8", ()), "drifting", Planted(drifting)),
             tuner.Candidate(Plan("onnxruntime", "fp32"), "faithful", Planted(flat.copy(), sleep=0.002)),
             tuner.Candidate(Plan("onnxruntime", "int8", ("head",)), "slow", Planted(flat + 1e-9 * np.random.default_rng(1).normal(size=flat.size), sleep=0.01))]
    cands.append(tuner.Candidate(Plan("onnxruntime", "int8", ("embeddings",)), "loose", Planted(loose)))
    tc = TuneConfig(backends=("onnxruntime",), max_drift=1.0, lists=replace(cfg, seed=3))
    tuner.measure_drift(cands, lazy(pairs, flat, "reference"), tc, progress=lambda m: None)
    tuner.measure_speed(cands, pairs.batches[0], 0.2, "planted")
    loose_c = cands.pop()
    assert loose_c.drift.verdict == "within" and loose_c.drift.directions["text_to_image"].low < -1.0 and not loose_c.inside_bar
    assert loose_c.speed["pairs_per_s"] > cands[1].speed["pairs_per_s"]
    assert tuner.choose([*cands, loose_c], ("onnxruntime",))["onnxruntime"]["name"] == "ort fp32", "the loose plan is not taken"
    drifting_c, faithful, slow = cands
    assert drifting_c.drift.verdict == "beyond" and drifting_c.speed["pairs_per_s"] > faithful.speed["pairs_per_s"]
    assert faithful.drift.verdict == slow.drift.verdict == "within"
    assert slow.speed["pairs_per_s"] < faithful.speed["pairs_per_s"]
    assert tuner.choose(cands, ("onnxruntime",))["onnxruntime"]["name"] == "ort fp32"
    assert tuner.choose(cands[:1], ("onnxruntime",)) == {"onnxruntime": None}, "nothing within: no plan"


def test_a_tuning_run_writes_its_plan_and_load_and_bench_run_it(bundle_copy, tiny_data):
    import fbinfer
    from fbinfer.bench.config import BenchConfig
    from fbinfer.bench.run import bench

    # every candidate within a wide bar: the fastest wins, and its NNCF graph stays in the bundle
    tuning = tuner.tune(bundle_copy, tiny_data, TuneConfig(backends=("openvino",), max_drift=50.0, lists=LISTS, min_seconds=0.2),
                        progress=lambda m: None)
    plan = tuning["plans"]["openvino"]
    fastest = max((c for c in tuning["candidates"] if c["verdict"] == "within"), key=lambda c: c["pairs_per_s"])
    assert plan["name"] == fastest["name"] and len(tuning["candidates"]) >= 4
    assert set(tuning["machine"]["cpu"]) == {"model", "flags"} and tuning["lists"]["seed"] == 3
    bundle = Bundle.open(bundle_copy)  # verifies every listed file's sha256, the tuned graph's included
    assert plan["file"] in bundle.manifest["files"]
    on_disk = {p.name for p in bundle_copy.glob("ov.int8.x-*.onnx")}
    assert on_disk <= {plan["file"]}, "graphs of candidates not chosen are deleted"
    matcher = fbinfer.load(bundle_copy)
    assert matcher.runner.path.name == plan["file"] and matcher.runner.hints == {"INFERENCE_PRECISION_HINT": plan["rest"]}
    assert fbinfer.load(bundle_copy, backend="onnxruntime", precision="fp32").runner.path.name == "ort.fp32.onnx"
    r = bench([bundle_copy], tiny_data, BenchConfig(batches=(4,), backends=("ov-tuned", "ort-tuned"), min_seconds=0.05, min_iters=2,
                                                    drift_set=DriftSetConfig(queries=60, candidates=6, looks=(0.5, 1.0))),
              progress=lambda m: None)
    row = next(x for x in r["results"] if x["key"] == "ov-tuned")
    assert row["variant"] == f"fbinfer tune's plan: {plan['name']}" and row["settings"]["graph"] == plan["file"]
    assert "run fbinfer tune" in r["skipped"]["tiny/ort-tuned"]


def test_a_manifest_whose_plan_names_an_unlisted_file_is_refused(bundle_copy):
    from fbinfer.fileio import read_json, write_json

    m = read_json(bundle_copy / "manifest.json")
    m["tuning"] = {"plans": {"openvino": {"name": "ov int8", "backend": "openvino", "precision": "int8", "file": "../evil.onnx"}}}
    write_json(bundle_copy / "manifest.json", m)
    with pytest.raises(FbinferError, match="field 'tuning' must list plans whose files are under 'files'"):
        Bundle.open(bundle_copy)


def test_tune_bad_input(tiny_bundle):
    with pytest.raises(FbinferError, match="TensorRT does not run here"):
        TuneConfig(backends=("tensorrt",)).validate()
    with pytest.raises(FbinferError, match="that is the bench's drift set"):
        TuneConfig(lists=DriftSetConfig(seed=1)).validate()
    with pytest.raises(FbinferError, match="unknown group 'layers'"):
        TuneConfig(ladder=(("layers",),)).validate()
    assert_one_line_error(run_cli_here("tune", str(tiny_bundle), "--max-drift", "0"), "--max-drift: must be positive")
    assert_one_line_error(run_cli_here("tune", str(tiny_bundle), "--batch", "65"), "--batch 65: above the bundle's max batch 64")
