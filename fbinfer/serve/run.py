"""``fbinfer serve``: check everything a user can get wrong first (bundle, backend, ports, server
install), write the repository, run Triton in the foreground, and shut it down cleanly on Ctrl-C
or SIGTERM."""
from __future__ import annotations

import signal
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from fbinfer.backends.registry import backend as get_backend
from fbinfer.bundle import Bundle
from fbinfer.errors import FbinferError
from fbinfer.serve.repository import write_gpu_repository, write_python_repository
from fbinfer.serve.server import Ports, TritonServer


@dataclass(frozen=True)
class ServeConfig:
    backend: str = "onnxruntime"
    precision: str = "fp32"
    ports: Ports = field(default_factory=Ports)
    max_batch: int = 64
    max_queue_delay_us: int = 500
    instances: int = 1

    def validate(self, bundle: Bundle) -> ServeConfig:
        b = get_backend(self.backend)  # unknown: one line listing the backends
        if b.runs != "bundle":
            raise FbinferError(f"--backend {self.backend}: serving runs a bundle's graphs; choose onnxruntime, openvino or tensorrt")
        if self.precision not in b.precisions:
            raise FbinferError(f"--precision {self.precision!r} on {self.backend}: choose from {', '.join(b.precisions)}")
        if why := b.unavailable():
            raise FbinferError(f"--backend {self.backend} is not available here: {why}")
        for option, value, low in (("--max-batch", self.max_batch, 1), ("--instances", self.instances, 1),
                                   ("--max-queue-delay-us", self.max_queue_delay_us, 0)):
            if value < low:
                raise FbinferError(f"{option} must be >= {low}, not {value}")
        if self.max_batch > bundle.max_batch:
            raise FbinferError(f"--max-batch {self.max_batch} is above the bundle's {bundle.max_batch} (its graphs' largest batch)")
        return self


def serve(bundle_path: Path, sc: ServeConfig, repository: Path | None = None, log=print) -> int:
    """Run Triton on ``bundle_path`` until SIGINT or SIGTERM. Returns 0 when stopped by a signal
    (Triton exits 1 when clients still hold connections at its exit timeout: that is still a
    clean stop), or one line with the server's reason when it exits by itself."""
    bundle = Bundle.open(bundle_path)
    sc.validate(bundle)
    sc.ports.check_free()
    with tempfile.TemporaryDirectory(prefix="fbinfer-repo-") as tmp:
        repo = write_python_repository(bundle, repository or Path(tmp) / "models", sc.backend, sc.precision, sc.max_batch,
                                       sc.max_queue_delay_us, sc.instances)
        server = TritonServer(repo, sc.ports)
        stop: list[int] = []
        previous = {s: signal.signal(s, lambda n, _: stop.append(n)) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            server.start()
            log(f"serving {bundle.folder} ({sc.backend} {sc.precision}) with NVIDIA Triton: models fashionbert, fashionbert_rank, "
                f"image_features\n  HTTP {server.http_url}  gRPC {server.grpc_url}  metrics http://localhost:{sc.ports.metrics}/metrics"
                f"\n  repository {repo}\n  Ctrl-C or SIGTERM stops it")
            while not stop and server.process.poll() is None:
                time.sleep(0.2)
            if not stop:
                raise FbinferError(f"tritonserver exited by itself (code {server.process.returncode}): {server.last_error()}")
            log("stopping...")
        finally:
            code = server.stop()
            for s, handler in previous.items():
                signal.signal(s, handler)
    if code:
        log(f"tritonserver forced its exit after its exit timeout (code {code}; clients were still connected)")
    return 0


def write_repository(bundle_path: Path, out: Path, platform: str, precision: str, max_batch: int | None, queue_delay_us: int) -> Path:
    """``fbinfer serve --write-repository``: the GPU repository (``fbinfer.serve.repository``)."""
    if out.exists():
        raise FbinferError(f"--write-repository {out}: already exists (choose a new folder)")
    return write_gpu_repository(Bundle.open(bundle_path), out, platform, precision, max_batch, queue_delay_us)
