"""The console every table and progress line goes to."""
from __future__ import annotations

import sys

from rich.console import Console

LOG_WIDTH = 240  # off a terminal rich assumes 80 columns and cuts wide tables ("teach…"); a log keeps every figure


def console(stderr: bool = False) -> Console:
    """A rich console as wide as the terminal, or ``LOG_WIDTH`` columns when the output goes to a file or pipe."""
    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, width=None if stream.isatty() else LOG_WIDTH)


def elapsed(since: float) -> str:
    """'[12:05]': minutes and seconds since ``since`` (a ``time.perf_counter()``), for progress lines
    of long runs, so that a log shows where the time went."""
    import time

    m, s = divmod(int(time.perf_counter() - since), 60)
    return f"[{m}:{s:02d}]"
