"""Backends, one file each, behind one runner interface and one registry."""
from fbinfer.backends.base import Runner
from fbinfer.backends.registry import REGISTRY, backend, describe, open_runner

__all__ = ["REGISTRY", "Runner", "backend", "describe", "open_runner"]
