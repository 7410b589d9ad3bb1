"""Recipes: a chain of runs in one command, resumable, refusing options it would ignore."""
from __future__ import annotations

from pathlib import Path

import pytest
from helpers import assert_cli_errors
from rich.console import Console

from fbinfer.errors import FbinferError
from fbinfer.model.checkpoint import load_checkpoint
from fbinfer.recipes import RECIPES, Recipe, Run, distill_recipe, find_recipe, train_recipe

SMALL = {"batch_size": 8, "tia_warmup_steps": 2, "align_steps": 2}
TINY = Recipe("train", (Run((3, 5), SMALL), Run((2,), {**SMALL, "lr": 5e-5, "hard_ratio": 0.5})),
              {"config": "fashionbert-tiny"}, "-")


def steps_and_mtime(path: Path) -> tuple[int, int]:
    return load_checkpoint(path).meta["steps"], path.stat().st_mtime_ns


def test_a_training_recipe_chains_its_runs_and_resumes_without_redoing_them(tiny_data, tmp_path):
    from fbinfer.data.source import load_data

    data, out = load_data(tiny_data), tmp_path / "teacher.pt"
    train_recipe(TINY, data, out, Console(quiet=True))
    first, last = load_checkpoint(tmp_path / "teacher.run1.pt").meta, load_checkpoint(out).meta
    assert first["steps"] == 5 and first["train"]["steps"] == 5 and first["train"]["start"] is None  # 3, then resumed to 5
    assert first["train"]["hard_ratio"] == 0.5 and last["train"]["lr"] == 5e-5
    assert last["steps"] == 2 and last["train"]["start"] == str(tmp_path / "teacher.run1.pt")  # fine-tunes run 1's model
    before = {p: steps_and_mtime(p) for p in (tmp_path / "teacher.run1.pt", out)}
    train_recipe(TINY, data, out, Console(quiet=True), resume=True)  # everything done: nothing is trained again
    assert {p: steps_and_mtime(p) for p in before} == before
    with pytest.raises(FbinferError, match="exists"):  # without --resume or --force, nothing is replaced
        train_recipe(TINY, data, out, Console(quiet=True))


def test_a_distillation_recipe_extends_its_run(tiny_model, tiny_data, tmp_path):
    from fbinfer.data.source import load_data

    r = Recipe("distill", (Run((2, 3), {"batch_size": 8, "lists": 0}),), {"layers": 1}, "-")
    out = tmp_path / "student.pt"
    distill_recipe(r, tiny_model, load_data(tiny_data), out, Console(quiet=True))
    meta = load_checkpoint(out).meta
    assert meta["steps"] == 3 and meta["resumed"][0]["at_step"] == 2 and meta["student"]["layers"] == 1


def test_a_later_distillation_run_goes_on_from_the_student_before_it(tiny_model, tiny_data, tmp_path):
    """student-int8's shape: a plain run, then QAD from its result (``--from``), not from the teacher's layers."""
    from fbinfer.data.source import load_data
    from fbinfer.fileio import sha256

    r = Recipe("distill", (Run((2,), {"batch_size": 8, "lr": 1e-2, "warmup": 0.0}), Run((2,), {"batch_size": 8, "lr": 5e-5, "quantize": "int8"})),
               {"layers": 1}, "-")
    out = tmp_path / "student.pt"
    distill_recipe(r, tiny_model, load_data(tiny_data), out, Console(quiet=True))
    first, last = load_checkpoint(tmp_path / "student.run1.pt"), load_checkpoint(out)
    assert last.meta["from"]["path"] == str(tmp_path / "student.run1.pt") and last.meta["quantized"]["precision"] == "int8"
    assert last.meta["init_layers"] == first.meta["init_layers"] and last.meta["steps"] == 2
    assert last.meta["from"]["sha256"] == sha256(tmp_path / "student.run1.pt")
    # run 1 moved its weights about 2e-2 (two Adam steps at lr 1e-2); run 2's two steps at 5e-5 stay near them
    gap = max((v - last.model.state_dict()[k]).abs().max().item() for k, v in first.model.state_dict().items() if v.is_floating_point())
    assert 0 < gap < 1e-3, gap


def test_named_recipes_are_the_documented_chains():
    teacher = find_recipe("teacher", "train")
    assert [r.steps for r in teacher.runs] == [(1200, 1800, 3000), (600,)]
    assert teacher.runs[0].options["hard_ratio"] == 1.0 and teacher.runs[1].options == {
        "hard_ratio": 0.5, "lr": 5e-5, "head_lr": 5e-5, "precision": "bf16"}
    assert find_recipe("student", "distill").runs[0].steps == (3000, 4500)
    qad = find_recipe("student-int8", "distill")
    assert qad.runs[0] == find_recipe("student", "distill").runs[0] and qad.runs[1].options["quantize"] == "int8"
    assert find_recipe("teacher-short", "train").describe("teacher-short") == (
        "recipe teacher-short: 1200 steps (hard_ratio=1.0); then from it, 600 steps (hard_ratio=0.5, lr=5e-05, head_lr=5e-05); "
        "its documented run: docs/results/training.md")
    assert {r.command for r in RECIPES.values()} == {"train", "distill"}
    with pytest.raises(FbinferError, match="unknown distill recipe 'teacher'; choose from student, student-int8"):
        find_recipe("teacher", "distill")


def test_recipe_errors_are_one_line(tiny_data, tiny_model, tmp_path):
    out = str(tmp_path / "m.pt")
    assert_cli_errors([
        (["train", "--data", str(tiny_data), "-o", out, "--recipe", "nope"], "--recipe: unknown train recipe 'nope'; choose from teacher, teacher-short"),
        (["train", "--data", str(tiny_data), "-o", out, "--recipe", "teacher", "--steps", "5", "--lr", "1"],
         "--recipe teacher: sets its own options; drop --steps, --lr"),
        (["distill", str(tiny_model), "-o", out, "--recipe", "student", "--layers", "1"], "--recipe student: sets its own options; drop --layers"),
    ])
    assert not Path(out).exists()


def test_a_recipe_run_ends_with_what_it_measured_on_the_model_it_made(tiny_data, tmp_path, monkeypatch):
    """The last line names the Rank@1 of the checkpoint just written, as ``fbinfer eval`` measures
    it, and the wall time of this run; a recipe holds no figures of its own to print."""
    import json
    import re
    from dataclasses import replace

    from helpers import run_cli_here

    from fbinfer import recipes

    monkeypatch.setitem(recipes.RECIPES, "tiny", replace(TINY, doc="docs/results/tiny.md"))
    out = tmp_path / "t.pt"
    r = run_cli_here("train", "--recipe", "tiny", "--data", str(tiny_data), "-o", str(out))
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    said = " ".join(r.stdout.split())
    assert run_cli_here("eval", str(out), "--data", str(tiny_data), "--json", str(tmp_path / "e.json")).returncode == 0
    e = json.loads((tmp_path / "e.json").read_text())
    i2t, t2i = e["image_to_text"]["rank1"], e["text_to_image"]["rank1"]
    assert "its documented run: docs/results/tiny.md" in said
    m = re.search(rf"recipe tiny: {re.escape(str(out))} made in [\d.]+ min, measured Rank@1 ([\d.]+) / ([\d.]+) ", said)
    assert m and (float(m[1]), float(m[2])) == (round(i2t, 1), round(t2i, 1)), said[-600:]
