"""Seconds per optimizer step of `fbinfer train` and `fbinfer distill` with ``--precision fp32``
against ``bf16`` (autocast), on real batches of one checkpoint and catalogue.

Each round runs every (command, precision) pair for ``--steps`` steps through the library calls
the CLI makes, and takes the loop's own clock from the checkpoint (``train_seconds``: no model
loading or feature cache in it); the pairs take turns in every round so that a shared
machine's slow spells fall on all of them alike, and the medians over rounds are reported with
the bf16 speed-up. Training fine-tunes the checkpoint (``--from``: no projector alignment or
TIA warm-up, so every step is a full MLM + MPM + TIA step); distillation makes the default
2 x 384 student of it. The matmul rate of both dtypes (the ceiling autocast can reach) is
measured too.

Usage: python benchmarks/train_precision.py MODEL.pt --data DATA [--steps 10] [--rounds 3]
       [--out benchmarks/results/train_precision.json]
"""
from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
from pathlib import Path

import torch
from rich.table import Table

from fbinfer import terminal
from fbinfer.data.source import load_data
from fbinfer.distill.student import StudentSpec
from fbinfer.distill.trainer import DistillConfig, distill
from fbinfer.evaluation.timing import peak_flops
from fbinfer.fileio import write_json
from fbinfer.model.checkpoint import load_checkpoint
from fbinfer.threads import torch_threads
from fbinfer.training.loop import PRECISIONS
from fbinfer.training.trainer import TrainConfig, train


def cpu() -> dict:
    """The processor's name and the flags that decide bf16's speed (AMX, AVX-512 BF16), read once."""
    info = Path("/proc/cpuinfo")
    fields = dict(line.split(":", 1) for line in info.read_text().splitlines() if ":" in line) if info.is_file() else {}
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    flags = fields.get("flags", "").split()
    return {"cpu": fields.get("model name") or platform.processor(),
            "flags": sorted(f for f in flags if f.startswith("amx") or f in ("avx512f", "avx512_bf16"))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--steps", type=int, default=10, help="optimizer steps per timed run")
    ap.add_argument("--rounds", type=int, default=3, help="timed runs of every (command, precision) pair")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/train_precision.json"))
    args = ap.parse_args()
    torch_threads()
    data = load_data(args.data)
    runs = {
        "train": lambda p, out: train(data, load_checkpoint(args.model).config, TrainConfig(
            steps=args.steps, start=str(args.model), precision=p, checkpoint_every=10**9), out),
        "distill": lambda p, out: distill(args.model, data, StudentSpec(2), DistillConfig(
            steps=args.steps, precision=p, checkpoint_every=10**9), out),
    }
    seconds: dict[tuple[str, str], list[float]] = {(c, p): [] for c in runs for p in PRECISIONS}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for (command, precision), times in seconds.items():
                out = Path(tmp) / f"{command}-{precision}-{r}.pt"
                runs[command](precision, out)
                times.append(load_checkpoint(out).meta["train_seconds"] / args.steps)
    rates = {"fp32": peak_flops(torch.float32), "bf16": peak_flops(torch.bfloat16)}
    result = {
        "model": str(args.model), "data": str(args.data), "steps_per_run": args.steps, "rounds": args.rounds,
        "machine": {**cpu(), "threads": torch.get_num_threads(), "torch": torch.__version__},
        "matmul_gflops": {p: round(v / 1e9, 1) for p, v in rates.items()},
        "seconds_per_step": {c: {p: round(statistics.median(seconds[c, p]), 3) for p in PRECISIONS} for c in runs},
        "all_seconds_per_step": {f"{c} {p}": [round(s, 3) for s in v] for (c, p), v in seconds.items()},
    }
    result["bf16_speedup"] = {c: round(v["fp32"] / v["bf16"], 2) for c, v in result["seconds_per_step"].items()}
    write_json(args.out, result)
    table = Table(title=f"seconds per step, median of {args.rounds} runs of {args.steps} steps ({result['machine']['cpu']})")
    for col in ("command", "fp32", "bf16", "bf16 speed-up"):
        table.add_column(col)
    for c, v in result["seconds_per_step"].items():
        table.add_row(c, f"{v['fp32']:.2f}", f"{v['bf16']:.2f}", f"{result['bf16_speedup'][c]:.2f}x")
    table.add_row("matmul GFLOP/s", f"{result['matmul_gflops']['fp32']:.0f}", f"{result['matmul_gflops']['bf16']:.0f}",
                  f"{rates['bf16'] / rates['fp32']:.2f}x")
    terminal.console().print(table)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
