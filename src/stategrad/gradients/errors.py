"""What can go wrong with results: the errors of this part of the package."""

from __future__ import annotations


class ResultError(ValueError):
    """A result file or operation on results that cannot be done as asked."""


class EmptyClassError(ResultError):
    """A (delay, class) cell with no occurrences: its mean does not exist."""



def _reason(exc: OSError) -> str:
    """One line: the operating system's reason, without HDF5's multi-line detail."""
    if exc.strerror:
        return exc.strerror
    return " ".join(str(exc).split())
