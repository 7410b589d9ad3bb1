"""What every result records about the CPU it ran on: its model and the instruction-set flags that
decide which precisions are fast (AVX-512 VNNI and BF16 for int8 and bf16 dot products, AMX for
their tile matmuls). Machines here differ from day to day, so every result carries them."""
from __future__ import annotations

from pathlib import Path

FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8")


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> dict:
    """{"model": ..., "flags": [the FLAGS this CPU has]}; empty where /proc/cpuinfo is absent."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return {"model": None, "flags": []}
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    have = set(fields.get("flags", "").split())
    return {"model": fields.get("model name"), "flags": [f for f in FLAGS if f in have]}
