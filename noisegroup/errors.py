"""The errors a user can act on: the entry points print their message in one line (no traceback) and exit with
their `exit_status`; every other exception is a bug and keeps its traceback (`noisegroup.cli`).

    ExpectedError        status 1: the run cannot go on (a busy workdir, no checkpoint that restores, a diverged
                         loss); the message says what happened and what to do
      BadInputError      status 2: what the user gave is wrong (a config key or value, a path, a data file)
      NotFoundError      status 2: a file or run the user named does not exist

Both also derive from the built-in type a caller would catch for the same fault (`ValueError`, `RuntimeError`, ...),
so library users need not know these classes.
"""

from __future__ import annotations


class ExpectedError(Exception):
    """A failure the user can act on, reported in one line; the run exits with status 1."""

    exit_status = 1


class BadInputError(ExpectedError, ValueError):
    """A bad config key or value, argument, path or data file, reported in one line; exit status 2."""

    exit_status = 2


class NotFoundError(ExpectedError, FileNotFoundError):
    """A file or run the user named does not exist, reported in one line; exit status 2."""

    exit_status = 2
