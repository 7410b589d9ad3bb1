"""The one exception type the CLI turns into a one-line message and a non-zero exit."""


class FbinferError(Exception):
    """A problem with the user's input (file, field or value), worded for a person.

    The message must name what is wrong: the file, the line or field, the value.
    """


def first_line(e: BaseException, limit: int = 160) -> str:
    """An exception's first line, for one-line errors (some libraries raise empty or multi-line messages)."""
    text = str(e).strip()
    return (text.splitlines()[0] if text else type(e).__name__)[:limit]


class BackendUnavailable(FbinferError):
    """A backend, or a tool a row needs, is not installed or cannot run on this machine: the bench
    skips such a row and says why; any other error fails it."""


class ParityError(FbinferError):
    """A graph's outputs differ from the PyTorch reference beyond its tolerance: the export fails
    and leaves nothing behind."""


class EngineError(FbinferError):
    """TensorRT could not parse, build, deserialize or run an engine, or the engine was built for
    another GPU or TensorRT version: rebuild it with ``fbinfer build``."""
