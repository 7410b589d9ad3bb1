"""``fbinfer serve``: check everything a user can get wrong first (bundle, backend, ports, server
install), write the repository, run Triton in the foreground, and shut it down cleanly on Ctrl-C
or SIGTERM."""
from __future__ import annotations

import signal
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from fbinfer.backends.registry import backend as get_backend
from fbinfer.bundle import Bundle
from fbinfer.bundle.plan import fastest_tuned, tuned
from fbinfer.errors import FbinferError
from fbinfer.serve.config import CatalogOptions, Limits
from fbinfer.serve.repository import write_gpu_repository, write_python_repository
from fbinfer.serve.rest import RestFront
from fbinfer.serve.server import Ports, TritonServer


@dataclass(frozen=True)
class ServeConfig:
    backend: str | None = None  # None: the backend of the fastest plan fbinfer tune chose, else onnxruntime
    precision: str | None = None  # None: the backend's tuned plan (its graph and hints), else fp32
    ports: Ports = field(default_factory=Ports)
    max_batch: int = 64
    max_queue_delay_us: int = 500
    instances: int = 1
    catalog: CatalogOptions = field(default_factory=CatalogOptions)
    limits: Limits = field(default_factory=Limits)
    api_key: str | None = None

    def resolve(self, bundle: Bundle) -> ServeConfig:
        """The backend and precision that will run, as ``fbinfer.load`` would choose them
        (precision stays None where the tuned plan is used), every option checked."""
        backend = self.backend or fastest_tuned(bundle, lambda b: not get_backend(b).unavailable()) or "onnxruntime"
        b = get_backend(backend)  # unknown: one line listing the backends
        if b.runs != "bundle":
            raise FbinferError(f"--backend {backend}: serving runs a bundle's graphs; choose onnxruntime, openvino or tensorrt")
        if self.precision is not None and self.precision not in b.precisions:
            raise FbinferError(f"--precision {self.precision!r} on {backend}: choose from {', '.join(b.precisions)}")
        if why := b.unavailable():
            raise FbinferError(f"--backend {backend} is not available here: {why}")
        precision = self.precision if self.precision is not None or tuned(bundle, backend) else "fp32"
        c, lim = self.catalog, self.limits
        for option, value, low in (("--max-batch", self.max_batch, 1), ("--instances", self.instances, 1),
                                   ("--max-queue-delay-us", self.max_queue_delay_us, 0), ("--depth", c.depth, 0),
                                   ("--ranking-instances", c.instances, 1), ("--max-documents", lim.documents, 1),
                                   ("--max-body-mb", lim.body_bytes, 1), ("--max-caption-chars", lim.caption_chars, 1),
                                   ("--max-connections-per-client", lim.connections_per_client, 1), ("--idle-timeout-s", lim.idle_timeout_s, 0.1)):
            if value < low:
                raise FbinferError(f"{option} must be >= {low}, not {value}")
        if self.max_batch > bundle.max_batch:
            raise FbinferError(f"--max-batch {self.max_batch} is above the bundle's {bundle.max_batch} (its graphs' largest batch)")
        if c.depth > lim.documents:
            raise FbinferError(f"--depth {c.depth} is above --max-documents {lim.documents}")
        if c.index is not None:
            check_index(c.index, bundle)
        return replace(self, backend=backend, precision=precision)

    def describe(self) -> str:
        return f"{self.backend} " + (self.precision or "tuned plan (fbinfer tune)")


def check_index(folder: Path, bundle: Bundle) -> None:
    """The index must read captions and images as the bundle does (what ``search --rerank`` checks)."""
    from fbinfer.search.index import check_reranker, read_meta

    check_reranker(bundle.vocab(), bundle.config.feature_key, read_meta(folder), folder)


def serve(bundle_path: Path, sc: ServeConfig, repository: Path | None = None, log=print) -> int:
    """Run Triton on ``bundle_path`` until SIGINT or SIGTERM. Returns 0 when stopped by a signal
    (Triton exits 1 when clients still hold connections at its exit timeout: that is still a
    clean stop), or one line with the server's reason when it exits by itself."""
    bundle = Bundle.open(bundle_path)
    sc = sc.resolve(bundle)
    sc.ports.check_free()
    with tempfile.TemporaryDirectory(prefix="fbinfer-repo-") as tmp:
        repo = write_python_repository(bundle, repository or Path(tmp) / "models", sc.backend, sc.precision, sc.max_batch,
                                       sc.max_queue_delay_us, sc.instances, replace(sc.catalog, max_candidates=sc.limits.documents))
        # with a key, only the REST front (which checks it) listens beyond this machine
        server = TritonServer(repo, sc.ports, address="127.0.0.1" if sc.api_key else "0.0.0.0")
        front = None
        stop: list[int] = []
        previous = {s: signal.signal(s, lambda n, _: stop.append(n)) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            server.start()
            front = RestFront(server.grpc_url, sc.ports.rest, sc.api_key, sc.limits, bundle.name, search=sc.catalog.index is not None)
            front.start()
            models = ", ".join(p.name for p in sorted(repo.iterdir()))
            log(f"serving {bundle.folder} ({sc.describe()})" + (f" and the catalogue {sc.catalog.index}" if sc.catalog.index else "")
                + f" with NVIDIA Triton: models {models}\n  REST http://localhost:{sc.ports.rest} (/v1/rerank"
                + (", /v1/search" if sc.catalog.index else "") + f", /health)  Triton HTTP {server.http_url}  gRPC {server.grpc_url}  "
                f"metrics http://localhost:{sc.ports.metrics}/metrics\n  repository {repo}\n  Ctrl-C or SIGTERM stops it")
            while not stop and server.process.poll() is None:
                time.sleep(0.2)
            if not stop:
                raise FbinferError(f"tritonserver exited by itself (code {server.process.returncode}): {server.last_error()}")
            log("stopping...")
        finally:
            if front is not None:
                front.stop()
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
