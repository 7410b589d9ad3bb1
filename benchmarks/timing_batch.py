"""What the timing benchmarks share: their start (a model argument with --batch, --rounds and
--json, torch's threads, the model resolved with its bundle made beside it when missing, and the
bench's timing batch, ``fbinfer.bench.run.timing_feeds``: real test pairs over the caption
lengths), the median pairs/s of calls timed in turns, and what each result JSON says it ran on."""
from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import numpy as np
import torch

from fbinfer.bench.models import ModelBench, resolve
from fbinfer.bench.run import timing_feeds
from fbinfer.data.features import FeatureStore
from fbinfer.evaluation.evaluate import eval_pairs
from fbinfer.fileio import sha256
from fbinfer.machine import cpu_flags
from fbinfer.threads import torch_threads


def model_and_batch(doc: str, rounds: int) -> tuple[argparse.Namespace, ModelBench, dict[str, np.ndarray]]:
    """The parsed arguments (``doc``'s first line is the description), the model, and its timing batch."""
    ap = argparse.ArgumentParser(description=doc.split("\n")[0])
    ap.add_argument("model", type=Path, help="a checkpoint (its bundle is made beside it when missing)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=rounds)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    torch_threads()
    mb = resolve(args.model, None)
    return args, mb, timing_feeds(mb, FeatureStore(mb.data, mb.ck.config).ensure(mb.data.test), eval_pairs(mb.data), args.batch)


def pairs_per_s(names, times: list[list[float]], batch: int) -> dict[str, float]:
    """Median pairs/s of each name's calls (milliseconds per call of ``batch`` pairs, ``times_in_turns``)."""
    return {name: round(batch / (statistics.median(t) / 1e3), 1) for name, t in zip(names, times)}


def provenance(args: argparse.Namespace, mb: ModelBench) -> dict:
    """The model (path, sha256, config), the batch and rounds, the 50 ms pauses, the CPU's flags and threads."""
    return {"model": str(args.model), "checkpoint_sha256": sha256(args.model), "config": mb.ck.config.name, "batch": args.batch,
            "rounds": args.rounds, "pause_ms": 50, "cpu": cpu_flags(), "threads": torch.get_num_threads()}
