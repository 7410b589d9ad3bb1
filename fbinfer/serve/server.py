"""Running NVIDIA Triton Inference Server on a model repository: the ``tritonserver`` binary that
the ``nvidia-pytriton`` wheel carries (Triton 2.5x with the Python backend only), started,
waited on until ready, and stopped cleanly.

What it takes to run that binary outside pytriton, learnt on these machines:
- the backend folder must hold the Python backend's library and the stub built for this Python
  (the wheel ships one per Python version); it is assembled in a work folder;
- the stub links ``libpython3.X.so``: the interpreter's own LIBDIR goes first on
  LD_LIBRARY_PATH (a pyenv Python otherwise gets the system's, and fails with
  ``'_thread.RLock' object has no attribute '_recursion_count'``), and the interpreter's bin first
  on PATH, so the stub finds this environment's packages;
- under numpy 2 the stub hands BYTES tensors over corrupted (every byte the first one), so
  numpy < 2 is required, as nvidia-pytriton itself declares;
- the server ignores SIGINT when it runs in the background: it is stopped with SIGTERM, and its
  process group (the stubs) killed if it has not exited in time.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from fbinfer.errors import FbinferError

INSTALL = "pip install -e '.[serve]' (nvidia-pytriton carries tritonserver with the Python backend)"


@dataclass(frozen=True)
class Ports:
    http: int = 8000
    grpc: int = 8001
    metrics: int = 8002
    rest: int = 8080  # fbinfer's own REST front (fbinfer.serve.rest), beside Triton's ports

    def check_free(self) -> None:
        """One line naming the option whose port is taken."""
        for option, port in (("--http-port", self.http), ("--grpc-port", self.grpc), ("--metrics-port", self.metrics),
                             ("--rest-port", self.rest)):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers bind: a port in TIME_WAIT is free
                try:
                    s.bind(("0.0.0.0", port))
                except OSError:
                    raise FbinferError(f"{option} {port}: the port is in use (stop what holds it, or choose another)") from None

    @classmethod
    def free(cls) -> Ports:
        """Four ports the OS says are free now (tests and benchmarks)."""
        socks = [socket.socket() for _ in range(4)]
        try:
            for s in socks:
                s.bind(("127.0.0.1", 0))
            return cls(*(s.getsockname()[1] for s in socks))
        finally:
            for s in socks:
                s.close()


@dataclass(frozen=True)
class TritonInstall:
    """Where the nvidia-pytriton wheel keeps the server, its Python backend and its stubs."""
    root: Path  # .../site-packages/pytriton/tritonserver
    libs: Path  # .../site-packages/nvidia_pytriton.libs

    @classmethod
    def find(cls) -> TritonInstall:
        spec = importlib.util.find_spec("pytriton")
        if spec is None or not spec.submodule_search_locations:
            raise FbinferError(f"the Triton server binary is not installed: {INSTALL}")
        root = Path(spec.submodule_search_locations[0]) / "tritonserver"
        if not (root / "bin" / "tritonserver").is_file():
            raise FbinferError(f"{root}/bin/tritonserver is missing (a damaged nvidia-pytriton install?): {INSTALL}")
        return cls(root, root.parent.parent / "nvidia_pytriton.libs")

    @property
    def binary(self) -> Path:
        return self.root / "bin" / "tritonserver"

    def stub(self) -> Path:
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        stub = self.root / "python_backend_stubs" / version / "triton_python_backend_stub"
        if not stub.is_file():
            have = sorted(p.name for p in (self.root / "python_backend_stubs").iterdir())
            raise FbinferError(f"nvidia-pytriton has no Python-backend stub for Python {version} (it has {', '.join(have)})")
        return stub

    def backends(self, work: Path) -> Path:
        """A backend folder in ``work``: the Python backend with this Python's stub."""
        python = work / "backends" / "python"
        python.mkdir(parents=True, exist_ok=True)
        for f in (self.root / "backends" / "python").iterdir():
            if f.is_file():
                shutil.copy2(f, python / f.name)
        shutil.copy2(self.stub(), python / "triton_python_backend_stub")
        return python.parent

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        libdir = sysconfig.get_config_var("LIBDIR") or ""
        env["LD_LIBRARY_PATH"] = ":".join(p for p in (libdir, str(self.libs), env.get("LD_LIBRARY_PATH", "")) if p)
        env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
        return env


# Kills the server's process group (the server and its stubs) once the pipe from the process that
# started it closes: that process ended, however (SIGKILL included, where no handler runs).
REAPER = ("import os, signal, sys\n"
          "sys.stdin.buffer.read()\n"
          "try:\n    os.killpg(int(sys.argv[1]), signal.SIGKILL)\n"
          "except ProcessLookupError:\n    pass\n")


def check_stub_numpy() -> None:
    import numpy as np

    if int(np.__version__.split(".")[0]) >= 2:
        raise FbinferError(f"numpy {np.__version__}: the Triton Python backend stub of nvidia-pytriton corrupts string tensors under "
                           f"numpy 2; install numpy<2 ({INSTALL}, which pins it)")


class TritonServer:
    """``tritonserver`` on a repository, as a context manager.

    Example:
        with TritonServer(repo, Ports.free()) as server:
            client = tritonclient.http.InferenceServerClient(server.http_url)
    """

    def __init__(self, repository: Path, ports: Ports = Ports(), log: Path | None = None, verbose: int = 0,
                 exit_timeout_s: int = 5, address: str = "0.0.0.0"):
        self.repository, self.ports, self.verbose, self.exit_timeout_s = Path(repository), ports, verbose, exit_timeout_s
        self.address = address  # 127.0.0.1: Triton's own endpoints reachable from this machine only
        self.log = log
        self.process: subprocess.Popen | None = None
        self._reaper: subprocess.Popen | None = None
        self._work: tempfile.TemporaryDirectory | None = None

    @property
    def http_url(self) -> str:
        return f"localhost:{self.ports.http}"

    @property
    def grpc_url(self) -> str:
        return f"localhost:{self.ports.grpc}"

    def command(self, backends: Path) -> list[str]:
        return [str(TritonInstall.find().binary), f"--model-repository={self.repository}", f"--backend-directory={backends}",
                f"--http-port={self.ports.http}", f"--grpc-port={self.ports.grpc}", f"--metrics-port={self.ports.metrics}",
                f"--http-address={self.address}", f"--grpc-address={self.address}", f"--metrics-address={self.address}",
                "--allow-gpu-metrics=false", f"--exit-timeout-secs={self.exit_timeout_s}", f"--log-verbose={self.verbose}"]

    def start(self, timeout_s: float = 120.0) -> Self:
        """Start and wait until every model is ready; one line with the log's last error if it is not."""
        install = TritonInstall.find()
        check_stub_numpy()
        self.ports.check_free()
        self._work = tempfile.TemporaryDirectory(prefix="fbinfer-triton-")
        work = Path(self._work.name)
        self.log = self.log or work / "tritonserver.log"
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(self.command(install.backends(work)), env=install.environment(), stdout=out,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        # a killed parent must not leave a server holding the ports, nor its stubs
        self._reaper = subprocess.Popen([sys.executable, "-c", REAPER, str(self.process.pid)], stdin=subprocess.PIPE,
                                        start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                why = self.last_error()
                self.stop()
                raise FbinferError(f"tritonserver exited (code {self.process.returncode}) before it was ready: {why}")
            if self.ready():
                return self
            time.sleep(0.2)
        self.stop()
        raise FbinferError(f"tritonserver was not ready after {timeout_s:.0f} s: {self.last_error()}")

    def ready(self) -> bool:
        """Every model ready, and the metrics service up (Triton starts it after HTTP and gRPC)."""
        try:
            for url in (f"http://{self.http_url}/v2/health/ready", f"http://localhost:{self.ports.metrics}/metrics"):
                with urllib.request.urlopen(url, timeout=1) as r:
                    if r.status != 200:
                        return False
            return True
        except OSError:
            return False

    def last_error(self) -> str:
        """The log's last error line (the server's reason), or its last line."""
        lines = self.log.read_text(errors="replace").splitlines() if self.log and self.log.is_file() else []
        errors = [ln for ln in lines if ln[:1] == "E" or "error" in ln.lower()]
        return ((errors or lines or ["no output"])[-1]).strip()[:300]

    def stop(self, timeout_s: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL to the whole process group (the stubs) if it has not exited in time."""
        p = self.process
        if p is None:
            return None
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout_s)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(p.pid, signal.SIGKILL)  # stubs left behind by a server that did not exit cleanly
        except ProcessLookupError:
            pass
        code = p.wait()
        if self._reaper is not None:  # the group is gone: the reaper must not outlive it (its pid could be reused)
            self._reaper.kill()
            self._reaper.wait()
            self._reaper.stdin.close()
            self._reaper = None
        if self._work is not None:
            self._work.cleanup()
            self._work = None
        return code

    def __enter__(self) -> Self:
        return self.start() if self.process is None else self

    def __exit__(self, *exc) -> None:
        self.stop()
