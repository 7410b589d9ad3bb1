"""How fast the patch-feature cache extracts: EfficientNet-Lite0's trunk in PyTorch against the
"fast" engine (OpenVINO's CPU plugin, fp32 hint), at the demo's 128 px and the default 256 px.

Both engines are built once, then timed in turns on the same batches of real catalogue images
(decoding and preprocessing included, as in the cache); the OpenVINO conversion is timed apart,
since the cache pays it once per rebuild (``FAST_FROM`` in fbinfer/data/features.py).
Usage: python benchmarks/feature_engine.py --data runs/data [--images 256] [--json F]
"""
from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np

from fbinfer.data.features import EfficientNetPatches
from fbinfer.data.source import load_data
from fbinfer.threads import torch_threads


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--json")
    args = ap.parse_args()
    torch_threads()
    data = load_data(args.data)
    items = data.train[: args.images]
    out = {"machine": platform.processor() or platform.machine(), "images": len(items), "batch": args.batch, "sizes": {}}
    for size in (128, 256):
        t0 = time.perf_counter()
        engines = {"torch": EfficientNetPatches("blocks", size, "torch")}
        t1 = time.perf_counter()
        engines["fast"] = EfficientNetPatches("blocks", size, "fast")
        convert = time.perf_counter() - t1 - (t1 - t0)  # the fast engine's extra: OpenVINO's conversion and compile
        spent = dict.fromkeys(engines, 0.0)
        diff = 0.0
        for b in range(0, len(items), args.batch):
            images = [data.open_image(it) for it in items[b: b + args.batch]]
            got = {}
            for name, engine in engines.items():  # in turns, batch by batch
                t = time.perf_counter()
                got[name] = engine(images).astype(np.float32)
                spent[name] += time.perf_counter() - t
            diff = max(diff, float(np.abs(got["fast"] - got["torch"]).max()))
        row = {f"{n}_images_per_s": round(len(items) / s, 1) for n, s in spent.items()}
        row.update(convert_s=round(convert, 1), max_abs_diff_fp16=diff, speedup=round(spent["torch"] / spent["fast"], 2),
                   break_even_images=round(convert / (spent["torch"] / len(items) - spent["fast"] / len(items))))
        out["sizes"][size] = row
        print(size, row)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
