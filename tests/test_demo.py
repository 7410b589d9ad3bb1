"""``fbinfer demo`` end to end on a tiny configuration, and what it tells the user to look at."""
from __future__ import annotations

import re
import shutil
from dataclasses import replace
from pathlib import Path

from rich.console import Console

from fbinfer.bench.config import DriftSetConfig
from fbinfer.data.source import load_data
from fbinfer.demo import DemoConfig, _same_data, _same_run, demo_models, look_at, run_demo
from fbinfer.export.config import CalibrationConfig
from fbinfer.export.exporter import ExportConfig

# the shared fixtures' catalogue and model (tests/conftest.py): the demo finds them in its workdir and reuses them
TINY = DemoConfig(products=48, seed=3, teacher="fashionbert-tiny", steps=6, tia_warmup_steps=2, precision="fp32", batch_size=8,
                  export=ExportConfig(parity_queries=2, calibration=CalibrationConfig(batches=2, batch_size=16)),
                  student_layers=1, distill_steps=4, timing_rounds=3, bench_backends=("ort-fused",), bench_seconds=0.1,
                  bench_drift_set=DriftSetConfig(queries=36, candidates=6, looks=(1.0,)))


def test_demo_reuses_its_teacher_and_runs_every_later_stage(tmp_path, tiny_data, tiny_model):
    shutil.copytree(tiny_data, tmp_path / "data")
    shutil.copy(tiny_model, tmp_path / "teacher.pt")
    teacher = (tmp_path / "teacher.pt").read_bytes()
    console = Console(record=True, width=200)
    made = run_demo(tmp_path, TINY, console)
    for key in ("data", "teacher", "eval", "bundle", "student", "comparison", "report"):
        assert Path(made[key]).exists(), key
    assert made["bundle"] == str(tmp_path / "student.bundle")  # the demo exports and benches the model one deploys
    assert made["plots"] and all(Path(p.strip()).is_file() for p in made["plots"].split(","))
    assert demo_models(tmp_path) == [tmp_path / "teacher.pt", tmp_path / "student.pt"]
    out = console.export_text()
    for title in ("reusing data", "reusing teacher", "Rank@K", "teacher vs students", "vs PyTorch", "fbinfer's fastest path",
                  "what to look at"):
        assert title in out, title
    assert (tmp_path / "teacher.pt").read_bytes() == teacher


def test_the_demo_retrains_when_its_settings_change(tmp_path, tiny_data, tiny_model):
    shutil.copytree(tiny_data, tmp_path / "data")
    data = load_data(tmp_path / "data")
    assert _same_data(tmp_path / "data", TINY) and not _same_data(tmp_path / "data", replace(TINY, products=49))
    assert _same_run(tiny_model, data.fingerprint(), "fashionbert-tiny", 6)
    assert not _same_run(tiny_model, data.fingerprint(), "fashionbert-tiny", 7)
    assert not _same_run(tiny_model, data.fingerprint(), "fashionbert-demo", 6)
    assert not _same_run(tiny_model, "0" * 16, "fashionbert-tiny", 6)


def test_look_at_reports_each_models_rank1_chance_and_the_worst_parity():
    rank = {"image_to_text": {"rank1": 41.25, "candidates": 50}, "text_to_image": {"rank1": 38.0, "candidates": 50}}
    student = {"image_to_text": {"rank1": 35.0, "candidates": 50}, "text_to_image": {"rank1": 30.5, "candidates": 50}}
    manifest = {"parity": [{"graph": "ort.fp32", "backend": "onnxruntime", "rank1_agreement": 1.0},
                           {"graph": "trt.int8", "backend": "onnxruntime", "rank1_agreement": 0.875}]}
    console = Console(record=True, width=200)
    console.print(look_at({"teacher": {"rank": rank}, "student.pt": {"rank": student}}, "student.pt", manifest, 540))
    out = console.export_text()
    assert "9.0 min" in out
    assert "41.2 % / 38.0 %" in out and "35.0 % / 30.5 %" in out
    assert re.search(r"keeps of the teacher's Rank@1 +│? *85 % / 80 %", out)  # 35 / 41.25, 30.5 / 38
    assert re.search(r"chance Rank@1 +│? *2\.0 %", out)  # 1 of 50 candidates
    assert "trt.int8 on onnxruntime" in out and "88 %" in out
