"""What checking an index folder before use costs (``fbinfer.verify``): the sha256 rate of this
machine over a 1 GiB file, the folder's size at 100,000 and 1,000,000 items with the default patch
features (64 x 320 fp16 per item) and flat faiss indexes, and so the first open's hashing time; a
later open of unchanged files costs one stat per file (the verified cache).

    python benchmarks/verify_cost.py --json docs/results/verify_cost.json
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from fbinfer.fileio import sha256
from fbinfer.machine import cpu_flags

PATCH_BYTES = 64 * 320 * 2  # one item's fp16 patch features (256 px, 8 x 8 grid, EfficientNet-Lite0 blocks)
FLAT_BYTES = 3 * 256 * 4  # image, text and product vectors, dim 256, fp32
ITEM_BYTES = 250  # one items.jsonl row (measured on the synthetic catalogue: about 230)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    with tempfile.NamedTemporaryFile(dir=os.environ.get("TMPDIR", "/tmp")) as f:
        f.write(os.urandom(1 << 30))
        f.flush()
        runs = []
        for _ in range(3):
            t0 = time.perf_counter()
            sha256(f.name)
            runs.append(time.perf_counter() - t0)
    rate = 1 / min(runs)  # GiB/s, the best of three (the file is in the page cache)
    sizes = {n: n * (PATCH_BYTES + FLAT_BYTES + ITEM_BYTES) for n in (100_000, 1_000_000)}
    out = {"date": time.strftime("%Y-%m-%d"), "cpu": cpu_flags(), "sha256_gib_per_s": round(rate, 3), "runs_s": [round(r, 3) for r in runs],
           "items": {str(n): {"bytes": b, "first_open_hash_s": round(b / 2**30 / rate, 1)} for n, b in sizes.items()},
           "note": "page-cached reads; from a cold disk the read rate bounds it instead"}
    print(json.dumps(out, indent=1))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
