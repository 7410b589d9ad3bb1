"""Which EfficientNet-Lite0 layer feeds FashionBERT's patches: the 320-d last block or the 1280-d head?

Measures, on a synthetic catalogue made by `fbinfer data synth`, for each layer:
  speed   images/s of extraction (batch 32, this machine's threads), median of 3 runs;
  disk    bytes per image in the fp16 cache;
  quality held-out accuracy of linear probes (mean+max pooled patch features) predicting the
          properties captions talk about: colour, pattern, sub-category, and each attribute.
Usage: python benchmarks/feature_layer.py --data runs/data [--images 1200] [--out benchmarks/results]
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
import zlib
from pathlib import Path

import numpy as np
import torch

from fbinfer.data.features import EfficientNetPatches
from fbinfer.data.source import load_data
from fbinfer.threads import torch_threads


def probe(x: np.ndarray, y: list[str], train: np.ndarray, epochs: int = 300) -> float:
    """Held-out accuracy (percent) of a multinomial logistic regression trained with full-batch Adam."""
    classes = sorted(set(y))
    t = torch.tensor([classes.index(v) for v in y])
    xt = torch.from_numpy(x).float()
    mu, sd = xt[train].mean(0), xt[train].std(0) + 1e-6
    xt = (xt - mu) / sd
    lin = torch.nn.Linear(xt.shape[1], len(classes))
    opt = torch.optim.Adam(lin.parameters(), lr=1e-2, weight_decay=1e-3)
    for _ in range(epochs):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(lin(xt[train]), t[train]).backward()
        opt.step()
    with torch.no_grad():
        return float((lin(xt[~train]).argmax(1) == t[~train]).float().mean() * 100)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--images", type=int, default=1200)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args()
    torch_threads()
    data = load_data(args.data)
    truth = json.loads((args.data / "synth.json").read_text())["products"]
    items = (data.train + data.test)[: args.images]
    images = [data.open_image(it) for it in items]
    labels = {k: [str(truth[it.product_id].get(k, "-")) for it in items] for k in truth[items[0].product_id]}
    by_product = np.array([zlib.crc32(it.product_id.encode()) % 5 != 0 for it in items])  # hold out 20% of products
    results = {}
    for layer in ("blocks", "head"):
        ex = EfficientNetPatches(layer)
        ex(images[:4])  # warm-up
        times = []
        feats = None
        for _ in range(3):
            t0 = time.perf_counter()
            feats = np.concatenate([ex(images[b : b + 32]) for b in range(0, len(images), 32)])
            times.append(time.perf_counter() - t0)
        f32 = feats.astype(np.float32)
        pooled = np.concatenate([f32.mean(1), f32.max(1)], axis=1)
        quality = {k: round(probe(pooled, v, by_product), 2) for k, v in labels.items() if len(set(v)) > 1}
        results[layer] = {
            "dim": int(feats.shape[-1]),
            "images_per_s": round(len(images) / statistics.median(times), 2),
            "cache_bytes_per_image": int(feats[0].nbytes),
            "probe_accuracy": quality,
            "probe_mean": round(statistics.mean(quality.values()), 2),
        }
        print(layer, json.dumps(results[layer]))
    out = {"machine": {"cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads()},
           "images": len(images), "data": str(args.data), "results": results}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "feature_layer.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
