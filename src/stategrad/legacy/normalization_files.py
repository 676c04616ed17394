"""The original's normalisation files: ``normalize_equal_variance.py`` wrote four
``.npy`` files next to each other.  Reading them stays in :mod:`stategrad.analysis`
(a normaliser may be given as one of them); writing them is the original's layout, so
it lives here."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

from ..analysis import LEGACY_SUFFIXES, EmbeddingStats
from ..atomic import write_bytes_atomic


def save_legacy_stats(stats: EmbeddingStats, prefix: str | os.PathLike) -> list[Path]:
    """The original's four files: ``<prefix>_mean.npy``, ``_covar.npy``,
    ``_D_norm_grad.npy`` (L) and ``_Z_norm_emb.npy`` (Z)."""
    prefix = str(prefix)
    if prefix.endswith(".npy"):
        prefix = prefix[: -len(".npy")]
    Path(prefix).parent.mkdir(parents=True, exist_ok=True)
    written = []
    for attr, suffix in LEGACY_SUFFIXES.items():
        buffer = io.BytesIO()
        np.save(buffer, getattr(stats, attr))
        written.append(write_bytes_atomic(Path(prefix + suffix), buffer.getvalue()))
    return written


__all__ = ["save_legacy_stats"]
