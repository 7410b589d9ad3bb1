"""Helpers shared by test modules."""
from __future__ import annotations

import subprocess
import sys


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``fbinfer ARGS`` in a fresh interpreter, as a user would run it."""
    return subprocess.run([sys.executable, "-m", "fbinfer.cli", *args], capture_output=True, text=True, check=False, env=env)
