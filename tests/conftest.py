"""Shared fixtures: a tiny synthetic catalogue and a tiny trained model, made once per session."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")


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
    train(load_data(tiny_data), preset("fashionbert-tiny"), TrainConfig(steps=6, batch_size=8, checkpoint_every=4), out)
    return out
