"""Where fbinfer may write: checked before any work starts, so that a run never trains for an hour
and then fails at save, never replaces what it did not make, and never shares an output with
another run."""
from __future__ import annotations

import fcntl
import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from fbinfer.errors import FbinferError


def check_writable(path: Path, option: str) -> None:
    """``path`` can be created or replaced: its folder exists (made if needed) and takes a file."""
    if path.is_dir():
        raise FbinferError(f"{option} {path}: is a folder; give a file name")
    probe_folder(path.absolute().parent, f"{option} {path}")


def probe_folder(folder: Path, what: str) -> None:
    """``folder`` exists (made if needed) and takes a new file."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise FbinferError(f"{what}: cannot write in {folder} ({e.strerror})") from None


def check_file_output(path: Path, option: str, force: bool, resume: bool = False) -> None:
    """A checkpoint to write: refuse to replace one (or its resume state) without --force, unless resuming it."""
    if not (force or resume):
        found = [p for p in (path, path.with_name(path.name + ".resume")) if p.exists()]
        if found:
            raise FbinferError(f"{option} {path}: {found[0]} exists (use --force to replace it, or --resume to continue it)")
    check_writable(path, option)


@contextmanager
def claimed_file(path: Path, option: str, force: bool, resume: bool = False) -> Iterator[None]:
    """A checkpoint a run writes: checked (``check_file_output``), then locked while the run lasts."""
    check_file_output(path, option, force, resume)
    with output_lock(path, option):
        yield


def check_folder_output(out: Path, option: str, force: bool, marker: str, inputs: Iterable[Path] = ()) -> None:
    """A folder to (re)make: absent, empty, or with --force one that fbinfer made (it holds
    ``marker``). Never the current folder, one of its parents, or a folder holding an input."""
    target, here = out.resolve(), Path.cwd().resolve()
    if target == here or target in here.parents:
        raise FbinferError(f"{option} {out}: is the current folder or one of its parents; choose a new folder")
    for inp in inputs:
        if inp.resolve() == target or target in inp.resolve().parents:
            raise FbinferError(f"{option} {out}: holds the input {inp}; choose another folder")
    if out.exists() and not out.is_dir():
        raise FbinferError(f"{option} {out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not force:
            raise FbinferError(f"{option} {out}: folder is not empty (use --force to replace it)")
        if not (out / marker).is_file():
            raise FbinferError(f"{option} {out}: not a folder fbinfer made (no {marker}); --force replaces only those")
    probe_folder(out.absolute().parent, f"{option} {out}")  # the folder is made beside it, then renamed


@contextmanager
def output_lock(out: Path, option: str = "-o") -> Iterator[None]:
    """Hold an exclusive lock on ``out`` (a hidden ``.NAME.lock`` beside it) while a run writes it:
    a second run on the same output stops at once instead of interleaving with the first. The
    kernel drops the lock if the process dies, so a killed run never blocks the next."""
    lock = out.absolute().parent / f".{out.name}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise FbinferError(f"{option} {out}: another run is writing it (pid {holder}); wait for it or choose another output") from None
        try:
            same = os.fstat(fd).st_ino == os.stat(lock).st_ino
        except FileNotFoundError:
            same = False
        if same:  # not a lock file that its last holder removed while we opened it
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        lock.unlink(missing_ok=True)
        os.close(fd)
