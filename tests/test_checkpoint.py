"""Checkpoints, embedding models and resume states are verified before torch deserialises them:
one test per kind of damage per file type (truncate, shorten an array, flip bytes in place,
replace with another valid file of the same kind), each a one-line error naming the file."""
from __future__ import annotations

import shutil

import pytest
import torch
from helpers import assert_one_line_error, run_cli_here

from fbinfer import checkpoint
from fbinfer.errors import FbinferError
from fbinfer.model.checkpoint import FASHIONBERT
from fbinfer.search.checkpoint import EMBED
from fbinfer.training.loop import resume_path

KINDS = {"fashionbert": FASHIONBERT, "embed": EMBED}


@pytest.fixture(params=["fashionbert", "embed", "resume"])
def stored(request, tiny_model, embed_model, tmp_path):
    """(a copy of a file of each type, its kind)."""
    if request.param == "resume":
        src, kind = resume_path(tiny_model), FASHIONBERT
    else:
        src, kind = (tiny_model if request.param == "fashionbert" else embed_model), KINDS[request.param]
    path = tmp_path / src.name
    shutil.copy(src, path)
    return path, kind


def test_a_truncated_file_is_refused(stored):
    path, kind = stored
    path.write_bytes(path.read_bytes()[:-1000])
    with pytest.raises(FbinferError, match=rf"{path}: \d+ bytes of weights, its header records \d+ \(truncated or grown\)"):
        checkpoint.load(path, kind)


def test_a_shortened_array_is_refused(stored):
    """One weight matrix loses its last row; its header either stays (the size and hash differ) or
    is rewritten to match (the shape check against the config catches it)."""
    path, kind = stored
    blob = checkpoint.read_blob(path, kind)
    name = next(k for k, v in blob["state_dict"].items() if v.ndim == 2)
    blob["state_dict"][name] = blob["state_dict"][name][:-1].clone()
    header = path.read_bytes().split(b"\n", 1)[0]
    checkpoint.write_blob(blob, path, kind)
    with pytest.raises(FbinferError, match=rf"{path}: weights do not match its config \({name} is"):
        checkpoint.load(path, kind)
    path.write_bytes(header + b"\n" + path.read_bytes().split(b"\n", 1)[1])
    with pytest.raises(FbinferError, match=rf"{path}: (\d+ bytes of weights|sha256 .* changed in place)"):
        checkpoint.load(path, kind)


def test_bytes_flipped_in_place_are_refused(stored):
    """Flipped bytes inside a tensor's data still deserialise: only the hash can tell."""
    path, kind = stored
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 8] = bytes(b ^ 0xFF for b in data[middle:middle + 8])
    path.write_bytes(bytes(data))
    with pytest.raises(FbinferError, match=rf"{path}: sha256 \w+\.\.\. of its weights, its header records \w+\.\.\. \(changed in place\)"):
        checkpoint.load(path, kind)


def test_a_file_of_the_other_kind_is_refused(tiny_model, embed_model):
    with pytest.raises(FbinferError, match=rf"{embed_model}: not a FashionBERT checkpoint \(its format is 'fbinfer.embed'"):
        checkpoint.load(embed_model, FASHIONBERT)
    with pytest.raises(FbinferError, match=rf"{tiny_model}: not an fbinfer embedding model \(its format is 'fbinfer.fashionbert'"):
        checkpoint.load(tiny_model, EMBED)


def test_a_resume_state_from_another_run_is_refused(tiny_model, tiny_data, tmp_path):
    """A valid resume state swapped in from a run on other data: --resume says so and writes nothing."""
    from fbinfer.data.synth import SynthConfig, synthesize

    other = tmp_path / "other"
    synthesize(other, SynthConfig(products=48, views=2, test_fraction=0.25, seed=4))
    out = tmp_path / "m.pt"
    shutil.copy(resume_path(tiny_model), resume_path(out))
    r = run_cli_here("train", "--data", str(other), "-o", str(out), "--config", "fashionbert-tiny", "--steps", "8", "--resume")
    assert_one_line_error(r, f"--resume: {resume_path(out)} was trained on other data ({tiny_data}), not {other}")
    assert not out.exists()


def test_a_bundle_refuses_a_replaced_source_checkpoint(tiny_bundle, tiny_model, tmp_path):
    """Another valid checkpoint in the source's place: the bundle's record of its sha256 tells."""
    from fbinfer.bundle import Bundle

    folder = tmp_path / "b.bundle"
    shutil.copytree(tiny_bundle, folder)
    fake = tmp_path / "fake.pt"
    ck = checkpoint.load(tiny_model, FASHIONBERT)
    with torch.no_grad():
        next(ck.model.parameters()).add_(1.0)
    checkpoint.save(ck, fake, FASHIONBERT)
    bundle = Bundle.open(folder)
    bundle.manifest["source"]["checkpoint"] = str(fake)
    with pytest.raises(FbinferError, match=rf"{fake}: changed since {folder} was exported from it \(sha256 differs\)"):
        bundle.load_source()
