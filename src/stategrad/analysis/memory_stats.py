"""The statistics of memory curves: the band of each curve, its bias-corrected value, the
percentile interval of the memory span, and the noise floor.  Kept apart from
:mod:`.memory` (which defines the curves and spans and prints them) so that each stays
one concept.

**Span interval.**  The memory span is a step function of the curve (an integer delay),
not a smooth statistic, and the delete-one jackknife does not estimate the spread of such
statistics (its replicates move by about ``SE / sqrt(B)``, so "the range over the
jackknife replicates" is far narrower than any interval).  The span's interval is
therefore always the percentile interval over a *block bootstrap* (``n_boot`` resamples
of the blocks with replacement, ``seed``), whatever band the curve has: the
``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles of the resampled spans, a span that
never falls counting as beyond the last delay computed (upper end "never").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..gradients import GradientResult
from . import uncertainty
from .noise_floor import noise_floor


@dataclass
class CurveStats:
    """One class's resampling statistics (lists per delay, None where undefined)."""

    lower: list[float | None] | None = None
    upper: list[float | None] | None = None
    bias_corrected: list[float | None] | None = None
    span_lower: int | None = None
    span_upper: int | None = None  # None with span_upper_never: beyond the last delay
    span_upper_never: bool = False
    span_never_share: float | None = None
    floor: list[float | None] | None = None
    above_floor: list[bool | None] | None = None
    distinguishable: bool | None = None
    floor_span: int | None = None


def _list(a: np.ndarray) -> list[float | None]:
    return [None if not np.isfinite(x) else float(x) for x in a]


def memory_stats(result: GradientResult, L: np.ndarray | None, names: list[str],
                 fraction: float, interval: str | None, level: float, n_boot: int, seed: int,
                 simultaneous: bool, floor: bool, n_flips: int,
                 span_fn: Callable[..., Any]) -> dict[str, CurveStats]:
    """Per class: whatever of band, bias correction, span interval and floor is asked;
    ``span_fn(totals, counts, fraction)`` is the memory span (given, not imported, since
    :mod:`.memory` imports this module)."""
    out = {name: CurveStats() for name in names}
    stat = uncertainty.singular_values(L)
    if interval not in (None, "none"):
        reps = uncertainty.replicates(result, stat, classes=names, method=interval,
                                      n_boot=n_boot, seed=seed)
        band = reps.derive(uncertainty.sv_sum, level=level, simultaneous=simultaneous)
        boot = reps if interval == "bootstrap" else uncertainty.replicates(
            result, stat, classes=names, method="bootstrap", n_boot=n_boot, seed=seed)
        for j, name in enumerate(names):
            s = out[name]
            s.lower, s.upper = _list(band.lower[:, j, 0]), _list(band.upper[:, j, 0])
            s.bias_corrected = _list(band.bias_corrected[:, j, 0])
            _span_interval(s, boot, j, result.counts[:, result.class_index(name)], fraction,
                           level, span_fn)
    if floor:
        nf = noise_floor(result, stat, names, fn=uncertainty.sv_sum, level=level,
                         n_flips=n_flips, seed=seed)
        for j, name in enumerate(names):
            s = out[name]
            s.floor = _list(nf.floor[:, j, 0])
            s.above_floor = [None if not np.isfinite(f) else bool(a)
                             for f, a in zip(nf.floor[:, j, 0], nf.above[:, j, 0], strict=True)]
            s.distinguishable = nf.distinguishable(name)
            below = [d for d in range(1, len(s.floor)) if s.above_floor[d] is False]
            s.floor_span = below[0] if below else None
    return out


def _span_interval(s: CurveStats, boot: uncertainty.Replicates, j: int, counts: np.ndarray,
                   fraction: float, level: float, span_fn: Callable[..., Any]) -> None:
    """The percentile interval of the span over the bootstrap resamples of class j."""
    sums = boot.replicates[..., j, :].sum(axis=-1)  # (R, D)
    last = sums.shape[1] - 1
    spans = []
    for r in range(sums.shape[0]):
        if not boot.valid[r, 0, j]:
            continue
        # A resample without a value at some delay skips it, as the full-data span does.
        rep_counts = np.where(boot.valid[r, :, j], counts, 0)
        span = span_fn(np.nan_to_num(sums[r]), rep_counts, fraction)
        if span.status != "undefined":
            spans.append(span.delay if span.status == "falls" else last + 1)
    if not spans:
        return
    alpha = (1.0 - level) / 2.0
    lo = int(np.quantile(spans, alpha, method="lower"))
    hi = int(np.quantile(spans, 1.0 - alpha, method="higher"))
    s.span_lower = None if lo > last else lo
    s.span_upper = None if hi > last else hi
    s.span_upper_never = hi > last
    s.span_never_share = float(np.mean(np.array(spans) > last))
