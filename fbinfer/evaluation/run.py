"""Evaluate a checkpoint and present the result (rich table, JSON)."""
from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from fbinfer.data.candidates import DIRECTIONS, SHORT
from fbinfer.data.features import FeatureStore
from fbinfer.data.source import DataSource
from fbinfer.evaluation.ceiling import rank1_ceiling
from fbinfer.evaluation.evaluate import evaluate, torch_scorer
from fbinfer.fileio import write_json
from fbinfer.model.checkpoint import load_checkpoint
from fbinfer.output_paths import check_writable
from fbinfer.threads import torch_threads


def rank_table(title: str, rows: dict[str, dict]) -> Table:
    """One row per model/backend: Rank@1/5/10 both directions, accuracy, AUC."""
    t = Table(title=title)
    t.add_column("model")
    for d in DIRECTIONS:
        for k in ("rank1", "rank5", "rank10"):
            t.add_column(f"{'i2t' if d == 'image_to_text' else 't2i'} R@{k[4:]}", justify="right")
    t.add_column("acc", justify="right")
    t.add_column("AUC", justify="right")
    for name, r in rows.items():
        t.add_row(name, *[f"{r[d][k]:.2f}" for d in DIRECTIONS for k in ("rank1", "rank5", "rank10")], f"{r['accuracy']:.2f}", f"{r['auc']:.4f}")
    return t


def run_eval(model_path: Path, data: DataSource, console: Console, json_out: Path | None = None,
             queries: int | None = None, batch_size: int = 64) -> dict:
    """Evaluate a checkpoint, print the table and write ``json_out`` (checked writable first)."""
    if json_out:
        check_writable(json_out, "--json")
    torch_threads()
    ck = load_checkpoint(model_path)
    store = FeatureStore(data, ck.config).ensure(data.test)
    result, _ = evaluate(torch_scorer(ck.model, ck.tokenizer(), store), data, queries, batch_size, name=str(model_path))
    result["model"] = str(model_path)
    result["data"] = str(data.path)
    console.print(rank_table(f"Rank@K ({result['image_to_text']['queries']} queries per direction, "
                             f"{result['image_to_text']['candidates']} candidates each)", {model_path.name: result}))
    console.print("Rank@1 misses by the best wrong candidate (same sub-category / same category / other category): "
                  + "; ".join(f"{SHORT[d]} " + " / ".join(str(n) for n in result[d]["misses"].values()) for d in DIRECTIONS))
    ceiling = rank1_ceiling(data, queries)
    if ceiling:
        result["rank1_ceiling"] = ceiling
        console.print(f"Rank@1 ceiling of this synthetic set (captions leave properties out): "
                      f"i2t {ceiling['image_to_text']:.2f}, t2i {ceiling['text_to_image']:.2f}")
    if json_out:
        write_json(json_out, result)
        console.print(f"wrote {json_out}")
    return result
