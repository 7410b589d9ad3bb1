"""Teacher vs students: Rank@K on the ``fbinfer eval`` candidate lists, size and pairs/s here."""
from __future__ import annotations

from contextlib import ExitStack
from functools import partial
from pathlib import Path

import torch
from rich.table import Table

from fbinfer.backends.pytorch import TorchRunner
from fbinfer.bundle.io_spec import make_feeds
from fbinfer.data.candidates import DIRECTIONS
from fbinfer.data.features import FeatureStore
from fbinfer.data.source import DataSource
from fbinfer.evaluation.evaluate import evaluate, torch_scorer
from fbinfer.evaluation.timing import times_in_turns, timing
from fbinfer.fileio import read_json, sha256, write_json
from fbinfer.model.checkpoint import load_checkpoint


def ranking(path: Path, data: DataSource, queries: int | None = None, report: dict | None = None) -> dict:
    """Rank@K, accuracy, AUC and size of one checkpoint, cached beside the data keyed by the
    checkpoint's bytes, the data and the query count (they are deterministic; a teacher compared
    with several students is evaluated once). ``report``: its ``fbinfer eval`` result on the same
    data, used instead of evaluating again."""
    cache = data.cache_dir / "compare" / f"{sha256(path)[:16]}-{data.fingerprint()}-q{queries}.json"
    if cache.is_file():
        return {**read_json(cache), "model": str(path)}
    ck = load_checkpoint(path)
    if report is None:
        report, _ = evaluate(torch_scorer(ck.model, ck.tokenizer(), FeatureStore(data, ck.config).ensure(data.test)), data, queries)
    cfg = ck.config
    result = {"model": str(path), "layers": cfg.num_layers, "hidden": cfg.hidden_size, "heads": cfg.num_heads,
              "parameters": ck.model.num_parameters(), "rank": {d: report[d] for d in DIRECTIONS},
              "accuracy": report["accuracy"], "auc": report["auc"]}
    write_json(cache, result)
    return result


def measure(models: dict[str, Path], data: DataSource, queries: int | None = None, batch: int = 64, rounds: int = 30,
            reports: dict[str, dict] | None = None) -> dict[str, dict]:
    """Rank@K (``ranking``) and torch fp32 pairs/s at ``batch`` of each named checkpoint. Speeds are
    never cached: every model is timed here, the models taking turns in each of ``rounds`` rounds
    (``times_in_turns``), so a speed-up divides two figures from one machine state.

    Example:
        >>> r = measure({"teacher": Path("teacher.pt"), "student": Path("student.pt")}, load_data(DATA))
        >>> r["student"]["pairs_per_s"] / r["teacher"]["pairs_per_s"]
    """
    results = {name: ranking(path, data, queries, (reports or {}).get(name)) for name, path in models.items()}
    items = [data.test[i % len(data.test)] for i in range(batch)]
    with ExitStack() as stack:
        calls = []
        for path in models.values():
            ck = load_checkpoint(path)
            feeds = make_feeds(ck.tokenizer(), FeatureStore(data, ck.config).ensure(data.test).get(items).numpy(),
                               [it.text for it in items])
            calls.append(partial(stack.enter_context(TorchRunner(ck.model)).infer, feeds))
        times = times_in_turns(calls, rounds, "timing the models, in turns")
    threads = torch.get_num_threads()
    for (name, result), ms in zip(results.items(), times):
        speed = timing(ms, batch)
        result.update(pairs_per_s=round(speed.pairs_per_s, 1), latency_ms=speed.latency(), batch=batch, threads=threads,
                      timed=f"in turns with {', '.join(n for n in models if n != name) or 'nothing'}, {rounds} rounds")
    return results


def share_kept(r: dict, teacher: dict, direction: str) -> float:
    """A model's Rank@1 in one direction as a percent of the teacher's (the distillation goal's measure)."""
    return 100 * r["rank"][direction]["rank1"] / max(teacher["rank"][direction]["rank1"], 1e-9)


def compare_table(teacher: dict, students: dict[str, dict]) -> Table:
    """Rank@1/5/10 both directions, R@1 kept (percent of the teacher's), parameters, speed-up."""
    t = Table(title=f"teacher vs students (torch fp32, batch {teacher['batch']}, {teacher['threads']} threads)")
    for col in ("model", "shape", "i2t R@1/5/10", "t2i R@1/5/10", "R@1 kept i2t/t2i", "params (M)", "pairs/s", "speed-up"):
        t.add_column(col, justify="left" if col in ("model", "shape") else "right")
    for name, r in {"teacher": teacher, **students}.items():
        ranks = [f"{r['rank'][d]['rank1']:.1f}/{r['rank'][d]['rank5']:.1f}/{r['rank'][d]['rank10']:.1f}" for d in DIRECTIONS]
        t.add_row(name, f"{r['layers']}x{r['hidden']}", *ranks, "/".join(f"{share_kept(r, teacher, d):.0f}%" for d in DIRECTIONS), f"{r['parameters'] / 1e6:.1f}", f"{r['pairs_per_s']:.0f}",
                  f"{r['pairs_per_s'] / teacher['pairs_per_s']:.2f}x")
    return t


def write_comparison(path: Path, teacher: dict, students: dict[str, dict]) -> None:
    write_json(path, {"teacher": teacher, "students": students})


__all__ = ["compare_table", "measure", "ranking", "write_comparison"]
