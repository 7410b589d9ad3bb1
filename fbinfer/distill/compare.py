"""Teacher vs students: Rank@K on the ``fbinfer eval`` candidate lists, size and pairs/s here."""
from __future__ import annotations

from pathlib import Path

import torch
from rich.table import Table

from fbinfer.backends.pytorch import TorchRunner
from fbinfer.bundle.io_spec import make_feeds
from fbinfer.data.candidates import DIRECTIONS
from fbinfer.data.features import FeatureStore
from fbinfer.data.source import DataSource
from fbinfer.evaluation.evaluate import evaluate, torch_scorer
from fbinfer.evaluation.timing import time_runner
from fbinfer.fileio import read_json, sha256, write_json
from fbinfer.model.checkpoint import load_checkpoint


def measure(path: Path, data: DataSource, queries: int | None = None, batch: int = 64, seconds: float = 3.0,
            report: dict | None = None) -> dict:
    """Rank@K and torch fp32 pairs/s at ``batch`` of one checkpoint. The result is cached beside
    the data, keyed by the checkpoint's bytes, the data, the query count and the threads (a
    teacher compared with several students is evaluated once). ``report``: this checkpoint's
    ``fbinfer eval`` result on the same data, used instead of evaluating again."""
    ck = load_checkpoint(path)
    threads = torch.get_num_threads()
    key = f"{sha256(path)[:16]}-{data.fingerprint()}-q{queries}-b{batch}-t{threads}"
    cache = data.cache_dir / "compare" / f"{key}.json"
    if cache.is_file():
        return {**read_json(cache), "model": str(path)}
    store = FeatureStore(data, ck.config).ensure(data.test)
    if report is None:
        report, _ = evaluate(torch_scorer(ck.model, ck.tokenizer(), store), data, queries)
    items = [data.test[i % len(data.test)] for i in range(batch)]
    feeds = make_feeds(ck.tokenizer(), store.get(items).numpy(), [it.text for it in items])
    with TorchRunner(ck.model) as runner:
        speed = time_runner(runner, feeds, min_seconds=seconds)
    cfg = ck.config
    result = {"model": str(path), "layers": cfg.num_layers, "hidden": cfg.hidden_size, "heads": cfg.num_heads,
              "parameters": ck.model.num_parameters(), "rank": {d: report[d] for d in DIRECTIONS},
              "accuracy": report["accuracy"], "auc": report["auc"], "pairs_per_s": round(speed.pairs_per_s, 1),
              "latency_ms": speed.latency(), "batch": batch, "threads": threads}
    write_json(cache, result)
    return result


def kept(r: dict, teacher: dict, direction: str) -> float:
    """A model's Rank@1 in one direction as a percent of the teacher's (the distillation goal's measure)."""
    return 100 * r["rank"][direction]["rank1"] / max(teacher["rank"][direction]["rank1"], 1e-9)


def compare_table(teacher: dict, students: dict[str, dict]) -> Table:
    """Rank@1/5/10 both directions, R@1 kept (percent of the teacher's), parameters, speed-up."""
    t = Table(title=f"teacher vs students (torch fp32, batch {teacher['batch']}, {teacher['threads']} threads)")
    for col in ("model", "shape", "i2t R@1/5/10", "t2i R@1/5/10", "R@1 kept i2t/t2i", "params (M)", "pairs/s", "speed-up"):
        t.add_column(col, justify="left" if col in ("model", "shape") else "right")
    for name, r in {"teacher": teacher, **students}.items():
        ranks = [f"{r['rank'][d]['rank1']:.1f}/{r['rank'][d]['rank5']:.1f}/{r['rank'][d]['rank10']:.1f}" for d in DIRECTIONS]
        t.add_row(name, f"{r['layers']}x{r['hidden']}", *ranks, "/".join(f"{kept(r, teacher, d):.0f}%" for d in DIRECTIONS), f"{r['parameters'] / 1e6:.1f}", f"{r['pairs_per_s']:.0f}",
                  f"{r['pairs_per_s'] / teacher['pairs_per_s']:.2f}x")
    return t


def write_comparison(path: Path, teacher: dict, students: dict[str, dict]) -> None:
    write_json(path, {"teacher": teacher, "students": students})


__all__ = ["compare_table", "measure", "write_comparison"]
