"""The one exception type the CLI turns into a one-line message and a non-zero exit."""


class FbinferError(Exception):
    """A problem with the user's input (file, field or value), worded for a person.

    The message must name what is wrong: the file, the line or field, the value.
    """
