"""The ablation's own errors: bad options, results that cannot be read or merged."""

from __future__ import annotations


class AblationError(ValueError):
    """Options, inputs or result files the ablation cannot work with."""
