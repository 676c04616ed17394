"""Sanity checks of a gradient result before it is analysed."""

from __future__ import annotations

import os

import numpy as np

from ..gradients import GradientResult
from .errors import AnalysisError


def check_finite(result: GradientResult, source: str | os.PathLike = "the result") -> None:
    """An error naming ``source`` and the first (delay, class) whose sums are NaN or
    infinite or whose count is negative, in the totals or in a block: such a result
    comes from a diverged model or a damaged file, and no analysis of it means anything."""
    def first_bad(sums: np.ndarray, counts: np.ndarray) -> str | None:
        bad = ~np.isfinite(sums).all(axis=(-2, -1)) | (counts < 0)
        if not bad.any():
            return None
        d, c = (int(i) for i in np.argwhere(bad)[0])
        what = "a negative count" if counts[d, c] < 0 else "NaN or infinite sums"
        more = int(bad.sum()) - 1
        return (f"{what} at delay {d}, class {result.classes[c]!r}"
                + (f" (and {more} more delay/class cells)" if more else ""))

    where = first_bad(result.sums, result.counts)
    # Blocks read lazily from a file are checked by the interval code as it reads each
    # delay (uncertainty.replicates), so that they are not read twice.
    if where is None and isinstance(result.block_sums, np.ndarray):
        for b in range(len(result.block_sums)):
            found = first_bad(result.block_sums[b], result.block_counts[b])
            if found:
                where = f"{found} in block {b} (start {int(result.block_starts[b])})"
                break
    if where is not None:
        raise AnalysisError(f"{source}: {where}: the run that wrote it went wrong (a diverged "
                            "model or a damaged file); recompute it")
