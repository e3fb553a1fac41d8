"""The one exception type the user sees as a plain message instead of a traceback."""


class DynaPoseError(RuntimeError):
    """A problem with the user's input or environment that they can fix.

    `scripts/*.py` print it as a one-line error and exit non-zero; everything else
    (bugs) keeps its traceback.
    """
