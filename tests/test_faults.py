"""The fault suite: real ``kill -9`` in the middle of each command that writes, then a rerun. Nothing
partial is accepted, the rerun equals an uninterrupted run, and the dead run's temporaries are
gone afterwards (issue 23)."""
from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
import torch
from helpers import kill_when, run_cli

from fbinfer.bundle import Bundle
from fbinfer.data.features import FeatureStore
from fbinfer.data.source import load_data
from fbinfer.errors import FbinferError
from fbinfer.model.checkpoint import load_checkpoint
from fbinfer.model.config import preset


def temporaries(folder: Path, name: str) -> list[Path]:
    return list(folder.glob(f".{name}.*.tmp"))


def tree_digest(folder: Path, skip: tuple[str, ...] = ()) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and not any(s in p.parts for s in skip)}


def test_synth_killed_then_rerun(tmp_path):
    out = tmp_path / "data"
    args = ["data", "synth", "-o", str(out), "--products", "60"]
    kill_when(args, lambda: any(t.joinpath("images").is_dir() and len(list(t.joinpath("images").iterdir())) > 20
                                for t in temporaries(tmp_path, "data")))
    assert not out.exists() and temporaries(tmp_path, "data")  # nothing looks complete; the dead run's work is left
    assert run_cli(*args).returncode == 0
    assert not temporaries(tmp_path, "data")  # ... and removed by the rerun
    clean = tmp_path / "clean"
    assert run_cli("data", "synth", "-o", str(clean), "--products", "60").returncode == 0
    assert tree_digest(out) == tree_digest(clean)


def test_feature_caching_killed_then_rerun(tmp_path, tiny_data):
    data = tmp_path / "d"
    shutil.copytree(tiny_data, data, ignore=shutil.ignore_patterns(".fbinfer"))
    cache, key = data / ".fbinfer" / "features", preset("fashionbert-tiny").feature_key
    args = ["data", "features", "--data", str(data), "--config", "fashionbert-tiny"]
    kill_when(args, lambda: cache.is_dir() and any(temporaries(cache, key)))
    assert not (cache / key).exists()
    assert run_cli(*args).returncode == 0
    assert not temporaries(cache, key)
    items = load_data(data).train + load_data(data).test
    got = FeatureStore(load_data(data), preset("fashionbert-tiny")).ensure(items).get(items)
    want = FeatureStore(load_data(tiny_data), preset("fashionbert-tiny")).ensure(items).get(items)
    assert torch.equal(got, want)


def test_export_killed_then_rerun(tmp_path, tiny_model, tiny_data):
    def export(out: Path) -> list[str]:
        return ["export", str(tiny_model), "--data", str(tiny_data), "-o", str(out), "--precision", "fp32", "--parity-queries", "2"]

    out, clean = tmp_path / "m.bundle", tmp_path / "clean.bundle"
    kill_when(export(out), lambda: any((t / "trt.fp32.onnx").exists() for t in temporaries(tmp_path, "m.bundle")))
    with pytest.raises(FbinferError, match="not an fbinfer bundle"):
        Bundle.open(out)
    assert run_cli(*export(out)).returncode == 0
    assert not temporaries(tmp_path, "m.bundle")
    assert run_cli(*export(clean)).returncode == 0
    files = {k: v["sha256"] for k, v in Bundle.open(clean).manifest["files"].items() if k.endswith(".onnx")}
    assert files and files == {k: v["sha256"] for k, v in Bundle.open(out).manifest["files"].items() if k.endswith(".onnx")}


@pytest.mark.parametrize("command", ["train", "distill"])
def test_training_killed_then_resumed_equals_an_uninterrupted_run(tmp_path, tiny_model, tiny_data, command):
    common = ["--data", str(tiny_data), "--steps", "24", "--batch-size", "8", "--checkpoint-every", "4"]
    head = ["train", *common, "--config", "fashionbert-tiny", "--tia-warmup-steps", "2"] if command == "train" else \
        ["distill", str(tiny_model), *common, "--layers", "1", "--no-compare"]
    cut, full = tmp_path / "cut.pt", tmp_path / "full.pt"
    resume_state = tmp_path / "cut.pt.resume"
    kill_when([*head, "-o", str(cut)], resume_state.exists)
    stopped_at = load_checkpoint(resume_state).meta["steps"]  # cut.pt itself is saved just after: it may be absent
    assert stopped_at < 24
    assert run_cli(*head, "-o", str(cut), "--resume").returncode == 0
    assert not temporaries(tmp_path, "cut.pt") and not temporaries(tmp_path, "cut.pt.resume")
    assert run_cli(*head, "-o", str(full)).returncode == 0
    a, b = load_checkpoint(full).model.state_dict(), load_checkpoint(cut).model.state_dict()
    assert load_checkpoint(cut).meta["steps"] == 24
    worst = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert worst < 1e-5, (stopped_at, worst)
