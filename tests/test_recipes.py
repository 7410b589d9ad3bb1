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
              {"config": "fashionbert-tiny"}, "-", 0, "-")


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

    r = Recipe("distill", (Run((2, 3), {"batch_size": 8, "lists": 0}),), {"layers": 1}, "-", 0, "-")
    out = tmp_path / "student.pt"
    distill_recipe(r, tiny_model, load_data(tiny_data), out, Console(quiet=True))
    meta = load_checkpoint(out).meta
    assert meta["steps"] == 3 and meta["resumed"][0]["at_step"] == 2 and meta["student"]["layers"] == 1


def test_named_recipes_are_the_documented_chains():
    teacher = find_recipe("teacher", "train")
    assert [r.steps for r in teacher.runs] == [(1200, 1800, 3000), (600,)]
    assert teacher.runs[0].options["hard_ratio"] == 1.0 and teacher.runs[1].options == {
        "hard_ratio": 0.5, "lr": 5e-5, "head_lr": 5e-5, "precision": "bf16"}
    assert find_recipe("student", "distill").runs[0].steps == (3000, 4500)
    assert find_recipe("teacher-short", "train").describe("teacher-short").startswith(
        "recipe teacher-short: about 60 min on 2 cores (fp32, one command")
    assert {r.command for r in RECIPES.values()} == {"train", "distill"}
    with pytest.raises(FbinferError, match="unknown distill recipe 'teacher'; choose from student"):
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
