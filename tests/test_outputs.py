"""Outputs: nothing fbinfer did not make is replaced, no run trains for nothing, no two runs
share an output, and a failed write keeps the last good file (issue 23's data-loss cases)."""
from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
from helpers import assert_one_line_error, run_cli, run_cli_here

from fbinfer.errors import FbinferError
from fbinfer.fileio import write_json
from fbinfer.output_paths import check_file_output, check_folder_output, output_lock


@pytest.fixture
def precious(tmp_path, monkeypatch) -> Path:
    """A working folder holding a file the user cares about; the tests run inside it."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "notes.txt").write_text("keep me")
    monkeypatch.chdir(work)
    return work / "notes.txt"


@pytest.mark.parametrize("out", [".", "..", "./"])
def test_force_never_replaces_the_current_folder_or_a_parent(precious, out):
    with pytest.raises(FbinferError, match="current folder or one of its parents"):
        check_folder_output(Path(out), "-o", True, "manifest.json")
    assert precious.read_text() == "keep me"


def test_synth_and_export_with_force_into_the_current_folder_keep_it(precious, tiny_model, tiny_data):
    """The reported case: ``-o . --force`` deleted the current folder and everything in it."""
    assert_one_line_error(run_cli_here("data", "synth", "-o", ".", "--force", "--products", "20"), "-o .: is the current folder")
    assert_one_line_error(run_cli_here("export", str(tiny_model), "--data", str(tiny_data), "-o", ".", "--force"),
                          "-o .: is the current folder")
    assert precious.read_text() == "keep me" and sorted(p.name for p in precious.parent.iterdir()) == ["notes.txt"]


def test_force_replaces_only_a_folder_fbinfer_made(precious):
    mine = precious.parent
    other = mine.parent / "other"
    other.mkdir()
    (other / "thesis.tex").write_text("years of work")
    with pytest.raises(FbinferError, match=r"not a folder fbinfer made \(no manifest.json\)"):
        check_folder_output(other, "-o", True, "manifest.json")
    (other / "manifest.json").write_text("{}")
    check_folder_output(other, "-o", True, "manifest.json")  # a bundle: --force may replace it
    with pytest.raises(FbinferError, match="use --force"):
        check_folder_output(other, "-o", False, "manifest.json")


def test_an_output_folder_holding_an_input_is_refused(tmp_path):
    bundle = tmp_path / "m.bundle"
    bundle.mkdir()
    (bundle / "manifest.json").write_text("{}")
    (bundle / "model.pt").write_text("weights")
    with pytest.raises(FbinferError, match="holds the input"):
        check_folder_output(bundle, "-o", True, "manifest.json", inputs=[bundle / "model.pt"])


def test_train_refuses_to_replace_a_checkpoint_without_force(tiny_data, tiny_model, tmp_path):
    out = tmp_path / "m.pt"
    shutil.copy(tiny_model, out)
    before = out.read_bytes()
    assert_one_line_error(run_cli_here("train", "--data", str(tiny_data), "-o", str(out), "--config", "fashionbert-tiny", "--steps", "1"),
                          "exists (use --force to replace it, or --resume to continue it)")
    assert_one_line_error(run_cli_here("distill", str(tiny_model), "-o", str(out), "--steps", "1"), "use --force")
    assert out.read_bytes() == before
    check_file_output(out, "-o", force=True)
    check_file_output(tmp_path / "new.pt", "-o", force=False)


def test_an_unwritable_output_fails_before_any_work(tiny_data, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    r = run_cli_here("train", "--data", str(tiny_data), "-o", str(blocker / "m.pt"), "--config", "fashionbert-tiny", "--steps", "1")
    assert_one_line_error(r, f"-o {blocker / 'm.pt'}: cannot write in {blocker}")
    assert_one_line_error(run_cli_here("eval", str(tmp_path / "x.pt"), "--data", str(tiny_data), "--json", str(tmp_path)), "is a folder")
    assert not list(tmp_path.glob("*.train.jsonl")) and not list(tmp_path.glob("*.resume"))


def test_a_second_writer_stops_at_once(tiny_data, tmp_path):
    out = tmp_path / "m.pt"
    with output_lock(out):
        with pytest.raises(FbinferError, match=f"another run is writing it \\(pid {os.getpid()}\\)"), output_lock(out):
            pass
        r = run_cli("train", "--data", str(tiny_data), "-o", str(out), "--config", "fashionbert-tiny", "--steps", "1")
        assert_one_line_error(r, "another run is writing it")
    with output_lock(out):  # released, and the lock file removed, when the first run ends
        pass
    assert not list(tmp_path.iterdir())


def test_a_killed_writers_temporaries_are_removed_by_the_next_write(tmp_path):
    gone = tmp_path / f".r.json.{_dead_pid()}.abc.tmp"
    gone.mkdir()
    live = tmp_path / f".r.json.{os.getpid()}.abc.tmp"
    live.write_text("another write in progress")
    write_json(tmp_path / "r.json", {"a": 1})
    assert not gone.exists() and live.exists() and (tmp_path / "r.json").read_text() == '{\n "a": 1\n}\n'


def _dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def _tmpfs(tmp_path, size: str):
    mnt = tmp_path / f"disk-{uuid.uuid4().hex[:6]}"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)], check=False, capture_output=True, text=True)
    if r.returncode:
        pytest.skip(f"cannot mount a tmpfs here to fill a disk ({r.stderr.strip() or 'mount failed'})")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.fixture
def small_disk(tmp_path):
    """A 12 MB tmpfs: room for one tiny checkpoint (9 MB) but not for a second beside it."""
    yield from _tmpfs(tmp_path, "12m")


@pytest.fixture
def disk_40m(tmp_path):
    """A 40 MB tmpfs: room for one tiny embedding model (its text tower keeps BERT's 30,522-token vocab)."""
    yield from _tmpfs(tmp_path, "40m")


def test_a_full_disk_keeps_the_last_good_checkpoint(small_disk, tiny_model):
    from fbinfer.model.checkpoint import load_checkpoint, save_checkpoint

    ck = load_checkpoint(tiny_model)
    out = small_disk / "m.pt"
    save_checkpoint(ck, out)
    good = out.read_bytes()
    ck.meta["steps"] = 999
    with pytest.raises(FbinferError, match=rf"{out}: cannot write it \(No space left on device\) \(the earlier one is kept\)"):
        save_checkpoint(ck, out)
    assert out.read_bytes() == good and [p.name for p in small_disk.iterdir()] == ["m.pt"]


def test_a_full_disk_keeps_the_last_good_embedding_model(disk_40m):
    """The embedding model has the checkpoint's discipline: a save that meets a full disk is one
    line, and the earlier file stays whole and loadable."""
    import torch

    from fbinfer.search.checkpoint import Checkpoint, load_embed, save_embed
    from fbinfer.search.config import EmbedConfig
    from fbinfer.search.model import DualEncoder

    torch.manual_seed(0)
    ck = Checkpoint(DualEncoder(EmbedConfig(tiny=True, init=None)), [f"t{i}" for i in range(30522)], {"steps": 1})
    out = disk_40m / "embed.pt"
    save_embed(ck, out)
    good = out.read_bytes()
    with (disk_40m / "filler").open("wb") as f:  # fill what is left
        try:
            while True:
                f.write(bytes(1 << 20))
        except OSError:
            pass
    ck.meta["steps"] = 2
    with pytest.raises(FbinferError, match=rf"{out}: cannot write it \(No space left on device\) \(the earlier one is kept\)"):
        save_embed(ck, out)
    assert out.read_bytes() == good and load_embed(out).meta == {"steps": 1}
    assert sorted(p.name for p in disk_40m.iterdir()) == ["embed.pt", "filler"]


def test_a_checkpoint_of_an_older_format_is_refused(tmp_path, tiny_model, tiny_data):
    """Version 1 files were plain torch.save zips without the sha256 header: refused, saying what to do."""
    import torch

    from fbinfer.search.checkpoint import load_embed

    old = tmp_path / "old.pt"
    torch.save({"format": "fbinfer.embed", "format_version": 1, "config": {}, "state_dict": {}, "vocab": []}, old)
    with pytest.raises(FbinferError, match=rf"{old}: not a readable fbinfer embedding model \(a torch file without fbinfer's "
                                           r"sha256 header: files of version 1 .* retrain with fbinfer embed train\)"):
        load_embed(old)
    header, payload = tiny_model.read_bytes().split(b"\n", 1)
    (tmp_path / "v3.pt").write_bytes(header.replace(b'"format_version": 2', b'"format_version": 3') + b"\n" + payload)
    assert_one_line_error(run_cli_here("eval", str(tmp_path / "v3.pt"), "--data", str(tiny_data)),
                          "v3.pt: FashionBERT checkpoint format version 3 is not supported (this fbinfer reads 2;")


@pytest.mark.parametrize("command", ["synth", "eval"])
def test_a_full_disk_is_one_line(small_disk, tiny_model, tiny_data, command):
    with (small_disk / "filler").open("wb") as f:  # fill the disk
        try:
            while True:
                f.write(bytes(1 << 20))
        except OSError:
            pass
    args = (["data", "synth", "-o", str(small_disk / "d"), "--products", "20"] if command == "synth" else
            ["eval", str(tiny_model), "--data", str(tiny_data), "--queries", "2", "--json", str(small_disk / "r.json")])
    assert_one_line_error(run_cli_here(*args), "No space left on device")
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler"]
