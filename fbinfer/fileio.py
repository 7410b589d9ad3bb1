"""Writes that never leave a half-written file looking complete."""
from __future__ import annotations

import errno
import glob
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fbinfer.errors import FbinferError


def write_png(fig: Any, path: Path, **savefig: Any) -> Path:
    """Save a matplotlib figure as PNG through ``atomic_path``, then close it (pyplot keeps every open figure)."""
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png", **savefig)
    plt.close(fig)
    return path


WRITE_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG}


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary sibling of ``path``; rename it onto ``path`` only if the block succeeds.

    Works for files and folders: a folder that already exists at ``path`` is replaced. The
    temporary name carries the writer's pid, so the next write there removes what a killed run
    left. A write that fails for lack of space or permission is one line, and the earlier
    ``path``, if any, is kept.
    """
    final = Path(os.path.abspath(path))
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise FbinferError(f"{final.parent}: cannot create folder ({e.strerror})") from None
    remove_stale_temps(final)
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.{os.getpid()}.", suffix=".tmp", dir=final.parent)
    except OSError as e:
        raise FbinferError(f"{final}: cannot write in {final.parent} ({e.strerror})") from None
    os.close(fd)
    tmp = Path(tmp_name)
    tmp.unlink()
    try:
        yield tmp
        if final.is_dir() and tmp.is_dir():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except OSError as e:
        if e.errno not in WRITE_ERRORS:
            raise
        kept = " (the earlier one is kept)" if final.exists() else ""
        raise FbinferError(f"{final}: cannot write it ({e.strerror}){kept}") from None
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()


def remove_stale_temps(final: Path) -> None:
    """Delete ``atomic_path`` temporaries of ``final`` whose writer is no longer running."""
    prefix = f".{final.name}."
    for p in final.parent.glob(f"{glob.escape(prefix)}*.tmp"):
        pid = p.name[len(prefix):].split(".", 1)[0]
        if not pid.isdigit() or alive(int(pid)):
            continue
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def sha256(path: str | os.PathLike[str]) -> str:
    """Hex digest of a file, read in 1 MiB blocks (checkpoints and graphs are hundreds of MB)."""
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=1) + "\n")


def read_json(path: str | os.PathLike[str]) -> Any:
    p = Path(path)
    try:
        return json.loads(p.read_text())
    except FileNotFoundError:
        raise FbinferError(f"{p}: file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise FbinferError(f"{p}: not valid JSON ({e})") from None
