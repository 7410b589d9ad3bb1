"""The ``fbinfer`` command: a thin typer layer over the package; errors become one line and exit 1.

The commands live in ``fbinfer.cli.training``, ``fbinfer.cli.deploy`` and ``fbinfer.cli.search``;
the options they share in ``fbinfer.cli.options``.
"""
from __future__ import annotations

import os
import sys

import typer

from fbinfer import terminal
from fbinfer.errors import FbinferError
from fbinfer.fileio import WRITE_ERRORS

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="FashionBERT: train, distil, export, build engines and benchmark ranking drift.")
data_app = typer.Typer(no_args_is_help=True, help="Make or prepare data sets.")
app.add_typer(data_app, name="data")
embed_app = typer.Typer(no_args_is_help=True, help="The dual encoder that makes a catalogue searchable.")
app.add_typer(embed_app, name="embed")
index_app = typer.Typer(no_args_is_help=True, help="Catalogue indexes (faiss) for search.")
app.add_typer(index_app, name="index")
console = terminal.console()


def refuse_beside_recipe(ctx: typer.Context, recipe: str, also: tuple[str, ...] = ()) -> None:
    """A recipe sets its own options: one given on the command line as well is an error, not silently dropped."""
    kept = {"data", "out", "recipe", "seed", "checkpoint_every", "resume", "force", "teacher", *also}
    given = [p.opts[0] for p in ctx.command.params
             if p.name not in kept and getattr(ctx.get_parameter_source(p.name), "name", "") == "COMMANDLINE"]  # typer may vendor click
    if given:
        raise FbinferError(f"--recipe {recipe}: sets its own options; drop {', '.join(given)}")


def fail(message: str) -> None:
    """The one-line error: on stderr, exit 1."""
    terminal.console(stderr=True).print(f"[red]error:[/] {message}", highlight=False, soft_wrap=True)
    sys.exit(1)


def main() -> None:
    try:
        app()
    except FbinferError as e:
        fail(str(e))
    except OSError as e:  # a disk that filled up or turned read-only outside an atomic write (a log line)
        if e.errno not in WRITE_ERRORS:
            raise
        fail(f"{e.filename or 'write'}: {e.strerror}")
    except KeyboardInterrupt:
        sys.exit(130)
