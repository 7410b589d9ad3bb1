"""How each model's INT8 graph (NNCF, OpenVINO with bf16 elsewhere) ranks against its own fp32 form
on the bench's drift set: what quantization-aware distillation is for. Exports a bundle beside a
checkpoint that has none (``fbinfer.recipes.int8_drift``, the line ``--recipe student-int8`` ends with).

    python benchmarks/int8_drift.py ft_int8.pt ft_none.pt
"""
from __future__ import annotations

import sys
from pathlib import Path

from fbinfer.recipes import int8_drift

if __name__ == "__main__":
    for model in sys.argv[1:]:
        print(model, int8_drift(Path(model)), flush=True)
