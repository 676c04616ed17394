"""What a property measure of :mod:`.relative_memory` would be by chance: the noise
floor of ``absolute`` (a class with the same blocks and no memory) and the jackknife or
bootstrap bands of ``absolute``, ``absolute_ratio``, ``relative`` and ``cosine``, all from
the result's blocks.  Both add columns to the table's rows in place."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..gradients import GradientResult
from . import uncertainty
from .tables import none_if_nan


def add_noise_floor(rows: list[dict[str, Any]], result: GradientResult, name: str,
                    L: np.ndarray, n: np.ndarray, level: float, seed: int,
                    n_flips: int = 1000) -> None:
    """``absolute_floor``: the ``level`` quantile of ``|M L n|`` for a class with the same
    blocks and no memory (random signs on the block sums, as :mod:`.noise_floor` does, per
    delay), and ``absolute_signal`` whether ``absolute`` is above it.  ``M L n`` is linear
    in the block sums, so each block is reduced to its (H,) vector ``S_b L n`` first: the
    draws then cost ``n_flips x B x H``, whatever the embedding size."""
    right = L @ n
    c = result.class_index(name)
    signs = np.random.default_rng(seed).choice([-1.0, 1.0], size=(n_flips, result.n_blocks))
    for d, row in enumerate(rows):
        row["absolute_floor"] = row["absolute_signal"] = None
        counts = result.block_counts[:, d, c].astype(np.float64)
        used = counts > 0
        if used.sum() < 2 or row["absolute"] is None:
            continue
        # Only the class's sums are read: the floor may run on a large result without --ci.
        vecs = np.asarray(result.block_delay(d, c), dtype=np.float64)[used] @ right  # (B', H)
        s = signs[:, used]
        # A draw with one sign on every block is the mean itself: not noise.
        s = s[np.abs(s.sum(axis=1)) < used.sum()]
        draws = np.linalg.norm(s @ vecs, axis=1) / counts.sum()
        row["absolute_floor"] = float(np.quantile(draws, level, method="higher"))
        row["absolute_signal"] = bool(row["absolute"] > row["absolute_floor"])


def property_statistic(n: np.ndarray, L: np.ndarray, top_k: int):
    """Per mean matrix M: [absolute, relative, cosine] of the direction n."""
    base = uncertainty.direction_statistic(n[None], L, k=top_k)

    def stat(m: np.ndarray) -> np.ndarray:
        rel_cos = base(m)[..., :2]
        absolute = np.linalg.norm((m @ L) @ n, axis=-1)[..., None]
        return np.concatenate([absolute, rel_cos], axis=-1)

    return stat


def add_bands(rows: list[dict[str, Any]], result: GradientResult, name: str, L: np.ndarray,
              n: np.ndarray, top_k: int, interval: str, level: float, n_boot: int,
              seed: int) -> None:
    """``<key>_lower`` / ``<key>_upper`` of the table's BAND_KEYS from the same block replicates; the
    ratio to delay 0 is formed within each replicate, so its band counts the correlation
    of the two delays."""
    reps = uncertainty.replicates(result, property_statistic(n, L, top_k), classes=[name],
                                  method=interval, n_boot=n_boot, seed=seed)
    main = reps.derive(level=level)
    ratio_reps = uncertainty.Replicates(
        reps.estimate[..., :1] / reps.estimate[:1, ..., :1],
        reps.replicates[..., :1] / reps.replicates[:, :1, ..., :1],
        reps.valid & reps.valid[:, :1], reps.classes, reps.method)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = ratio_reps.derive(level=level)
    for d, row in enumerate(rows):
        for key, band, col in (("absolute", main, 0), ("relative", main, 1),
                               ("cosine", main, 2), ("absolute_ratio", ratio, 0)):
            row[f"{key}_lower"] = none_if_nan(band.lower[d, 0, col:col + 1])[0]
            row[f"{key}_upper"] = none_if_nan(band.upper[d, 0, col:col + 1])[0]
