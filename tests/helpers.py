"""Helpers shared by test modules."""
from __future__ import annotations

import subprocess
import sys


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``fbinfer ARGS`` in a fresh interpreter, as a user would run it."""
    return subprocess.run([sys.executable, "-m", "fbinfer.cli", *args], capture_output=True, text=True, check=False, env=env)


def assert_one_line_error(r: subprocess.CompletedProcess, message: str) -> None:
    """The promise for bad input: exit 1, no traceback, and the error is one line (the last one on
    stderr, after any progress bars) that contains ``message``."""
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 1, (r.returncode, r.stderr[-2000:])
    assert "Traceback" not in r.stderr, r.stderr[-2000:]
    assert lines and lines[-1].startswith("error: ") and message in lines[-1], r.stderr[-2000:]
    assert sum(line.startswith("error: ") for line in lines) == 1, r.stderr[-2000:]
