"""What ``fbinfer serve`` may be told beyond the bundle: the catalogue it ranks over, the limits of
one request, and the shared secret. Plain dataclasses, cheap to import: the CLI takes its defaults
from here."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from fbinfer.errors import FbinferError

API_KEY_ENV = "FBINFER_API_KEY"


@dataclass(frozen=True)
class CatalogOptions:
    """What the ranking models need beyond the bundle: the index (``search`` and item ids), the
    rerank depth a search uses by default, the most candidates one request may rank, and how many
    copies run at once (each a process: concurrent queries meet in fashionbert's batcher)."""

    index: Path | None = None
    depth: int = 32
    max_candidates: int = 1000
    instances: int = 4


@dataclass(frozen=True)
class Limits:
    """What one REST request may ask for (docs/security.md); each exceeded limit is an error that
    says which."""

    body_bytes: int = 16 << 20
    documents: int = 1000  # per rerank request; also the largest k and depth of a search
    caption_chars: int = 1000
    connections_per_client: int = 32  # open connections from one address; more are answered 429 and closed
    idle_timeout_s: float = 10.0  # a connection that sends nothing (or stalls mid-request) this long is closed


def api_key(path: Path | None) -> str | None:
    """The shared secret from ``--api-key-file`` or the environment (never the command line, which
    every user of the machine can read in the process list); None: no key asked."""
    if path is None:
        return os.environ.get(API_KEY_ENV) or None
    try:
        key = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as e:
        raise FbinferError(f"--api-key-file {path}: cannot read it ({getattr(e, 'strerror', None) or e})") from None
    if not key:
        raise FbinferError(f"--api-key-file {path}: the file is empty")
    return key
