"""The start the timing benchmarks share: a model argument with --batch, --rounds and --json,
torch's threads, the model resolved (its bundle made beside it when missing), and the bench's
timing batch (``fbinfer.bench.run.timing_feeds``: real test pairs over the caption lengths)."""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from fbinfer.bench.models import ModelBench, resolve
from fbinfer.bench.run import timing_feeds
from fbinfer.data.features import FeatureStore
from fbinfer.evaluation.evaluate import eval_pairs
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
