"""Shared fixtures: a tiny synthetic catalogue, a tiny model whose scores spread over units, its
bundle, and a tiny dual encoder with a catalogue index of the test split, made once per session."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from helpers import spread_scores

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="fbinfer-test-cache-")  # the verified-files cache: not the user's


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    from fbinfer.data.synth import SynthConfig, synthesize

    out = tmp_path_factory.mktemp("data") / "synth"
    synthesize(out, SynthConfig(products=48, views=2, test_fraction=0.25, seed=3))
    return out


@pytest.fixture(scope="session")
def tiny_model(tiny_data, tmp_path_factory) -> Path:
    from fbinfer.data.source import load_data
    from fbinfer.model.config import preset
    from fbinfer.training.trainer import TrainConfig, train

    out = tmp_path_factory.mktemp("model") / "tiny.pt"
    train(load_data(tiny_data), preset("fashionbert-tiny"), TrainConfig(steps=6, batch_size=8, checkpoint_every=4, tia_warmup_steps=2), out)
    spread_scores(out)
    return out


@pytest.fixture(scope="session")
def tiny_bundle(tiny_model, tiny_data, tmp_path_factory) -> Path:
    """Every graph of ``fbinfer export`` for the tiny model (small calibration and parity sets)."""
    from fbinfer.data.source import load_data
    from fbinfer.export.config import CalibrationConfig
    from fbinfer.export.exporter import ExportConfig, export_bundle

    out = tmp_path_factory.mktemp("export") / "tiny.bundle"
    calib = CalibrationConfig(batches=2, batch_size=16)
    export_bundle(tiny_model, load_data(tiny_data), out, ExportConfig(max_batch=64, calibration=calib, parity_queries=4))
    return out


@pytest.fixture(scope="session")
def embed_model(tiny_data, tmp_path_factory) -> Path:
    from fbinfer.data.source import load_data
    from fbinfer.search.config import EmbedConfig
    from fbinfer.search.train import EmbedTrainConfig, train_embed

    out = tmp_path_factory.mktemp("embed") / "embed.pt"
    train_embed(load_data(tiny_data), EmbedConfig(tiny=True, dropout=0.0), EmbedTrainConfig(steps=30, batch_size=16, head_lr=2e-3, lr=2e-3), out)
    return out


@pytest.fixture(scope="session")
def test_index(embed_model, tiny_data, tmp_path_factory) -> Path:
    """A flat index of the tiny catalogue's test split (the train split is left to add)."""
    from fbinfer.data.source import load_data
    from fbinfer.search.index import build_index

    out = tmp_path_factory.mktemp("index") / "catalog.index"
    build_index(embed_model, load_data(tiny_data), out, kind="flat", split="test")
    return out
