"""``fbinfer``'s command line: ``app`` with every command registered, ``main`` its entry point."""
from fbinfer.cli import deploy, search, training  # noqa: F401 - each registers its commands on ``app``
from fbinfer.cli.app import app, main

__all__ = ["app", "main"]
