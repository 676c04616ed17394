"""The error every analysis raises when it cannot do what was asked."""

from __future__ import annotations


class AnalysisError(ValueError):
    """An analysis that cannot be done as asked (bad input, missing data)."""
