"""The one exception type the user sees as a plain message instead of a traceback."""


class DynaPoseError(RuntimeError):
    """A problem with the user's input or environment that they can fix.

    `scripts/*.py` print it as a one-line error and exit non-zero; everything else
    (bugs) keeps its traceback.
    """


def first_line(error: BaseException) -> str:
    """A library error's first line for a one-line message, or its type when it has no text."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
