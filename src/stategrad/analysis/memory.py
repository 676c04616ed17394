"""Memory curves (the sum of the singular values of ``Gbar_d L`` against the delay d),
memory spans (where a curve falls below a fraction of its delay-0 value) and their
confidence bands over the result's blocks."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..gradients import GradientResult
from . import uncertainty
from ._blas import single_threaded_blas
from .errors import AnalysisError
from .normalization import Normalizer, check_normalizer, normalization_info, normalizer_matrix
from .spectra import class_list, spectra
from .tables import (
    band_cell,
    cell,
    empty_notes,
    none_if_nan,
    normalization_line,
    text_table,
    write_csv,
    write_json,
)

SpanStatus = Literal["falls", "never", "undefined"]


@dataclass
class MemorySpan:
    """The first delay at which a memory curve falls below ``fraction`` of its
    delay-0 value.

    Precisely: with ``S(d)`` the sum of singular values at delay d, ``delay`` is the
    smallest d >= 1 with occurrences and ``S(d) < fraction * S(0)``; status
    ``"falls"``.  When no such d exists among the result's delays, ``delay`` is
    ``None`` and status ``"never"``: the memory reaches beyond the largest delay
    computed.  When S(0) is missing (no occurrence at delay 0) or zero, there is
    nothing to compare with: status ``"undefined"``.  Delays without occurrences
    are skipped, never taken as a fall.
    """

    delay: int | None
    status: SpanStatus
    fraction: float
    threshold: float | None
    max_delay: int

    def format(self) -> str:
        if self.status == "falls":
            return str(self.delay)
        if self.status == "never":
            return "never"
        return "undefined"


def memory_span(totals: np.ndarray, counts: np.ndarray, fraction: float = 0.1) -> MemorySpan:
    """:class:`MemorySpan` of a curve ``totals[d]`` whose delays have ``counts[d]``
    occurrences (entries with count 0 are ignored, whatever their value)."""
    if not 0 < fraction < 1:
        raise AnalysisError(f"fraction must lie strictly between 0 and 1, got {fraction}")
    totals = np.asarray(totals, dtype=np.float64)
    counts = np.asarray(counts)
    last = len(totals) - 1
    if len(totals) == 0 or counts[0] == 0 or not totals[0] > 0:
        return MemorySpan(None, "undefined", fraction, None, last)
    threshold = fraction * totals[0]
    for d in range(1, len(totals)):
        if counts[d] > 0 and totals[d] < threshold:
            return MemorySpan(d, "falls", fraction, float(threshold), last)
    return MemorySpan(None, "never", fraction, float(threshold), last)


@dataclass
class MemoryCurve:
    """Sum of singular values against delay for one class (``None`` where the class has
    no occurrence), with its counts and span."""

    class_name: str
    delays: list[int]
    counts: list[int]
    totals: list[float | None]
    top1: list[float | None]
    span: MemorySpan
    #: Confidence band of ``totals`` (None without an interval method, or where undefined).
    lower: list[float | None] | None = None
    upper: list[float | None] | None = None
    #: The span over the resampling replicates: (smallest, largest) delay at which a
    #: replicate falls, and how many replicates never fall within the delays computed.
    span_range: tuple[int | None, int | None] | None = None
    span_never: int | None = None

    @property
    def empty_delays(self) -> list[int]:
        return [d for d, n in zip(self.delays, self.counts, strict=True) if n == 0]

    def span_text(self) -> str:
        """The span, with its range over the replicates when there is one."""
        text = self.span.format()
        if self.span_range is None:
            return text
        lo, hi = self.span_range
        parts = []
        if lo is not None:
            parts.append(f"{lo}-{hi}" if hi != lo else f"{lo}")
        if self.span_never:
            parts.append(f"{self.span_never} never")
        return f"{text} [{', '.join(parts) or 'n/a'}]"

    def arrays(self) -> MemoryCurveArrays:
        """The curve as NumPy arrays, NaN where it has no value (for figures)."""
        def array(values: list[float | None] | None) -> np.ndarray | None:
            return None if values is None else \
                np.array([np.nan if x is None else x for x in values], dtype=np.float64)

        return MemoryCurveArrays(self.class_name, np.array(self.delays, dtype=np.int64),
                                 np.array(self.counts, dtype=np.int64), array(self.totals),
                                 array(self.lower), array(self.upper), self.span)


@dataclass
class MemoryCurveArrays:
    """One class's memory curve as arrays: ``totals[i]`` is the sum of singular values at
    delay ``delays[i]``, NaN where ``counts[i]`` is 0 (no average there); ``lower`` and
    ``upper`` its confidence band (NaN where undefined; ``None`` without an interval)."""

    class_name: str
    delays: np.ndarray  # (D,) int
    counts: np.ndarray  # (D,) int
    totals: np.ndarray  # (D,) float
    lower: np.ndarray | None
    upper: np.ndarray | None
    span: MemorySpan


@dataclass
class MemoryReport:
    normalized: bool
    fraction: float
    curves: list[MemoryCurve]
    #: How the bands were computed ("jackknife", "bootstrap") and their level; None: no bands.
    interval: str | None = None
    level: float | None = None
    #: What the normalisation statistics were computed from (their weighting), if any.
    normalization: dict[str, Any] | None = None

    def curve(self, name: str) -> MemoryCurve:
        for c in self.curves:
            if c.class_name == name:
                return c
        raise AnalysisError(f"no curve for class {name!r}; have {[c.class_name for c in self.curves]}")

    def _columns(self) -> list[str]:
        base = ["class", "delay", "count", "sum", "sv_1"]
        return base + ["lower", "upper"] if self.interval else base

    def rows(self) -> list[dict[str, Any]]:
        rows = []
        for c in self.curves:
            for i, (d, n, s, s1) in enumerate(zip(c.delays, c.counts, c.totals, c.top1, strict=True)):
                row: dict[str, Any] = {"class": c.class_name, "delay": d, "count": n, "sum": s,
                                       "sv_1": s1}
                if self.interval:
                    row["lower"] = c.lower[i] if c.lower else None
                    row["upper"] = c.upper[i] if c.upper else None
                rows.append(row)
        return rows

    def span_rows(self) -> list[dict[str, Any]]:
        rows = []
        for c in self.curves:
            row: dict[str, Any] = {"class": c.class_name, "span": c.span.delay,
                                   "status": c.span.status, "fraction": c.span.fraction,
                                   "threshold": c.span.threshold,
                                   "sum_at_0": c.totals[0] if c.totals else None,
                                   "empty_delays": c.empty_delays}
            if self.interval:
                lo, hi = c.span_range or (None, None)
                row.update(span_min=lo, span_max=hi, span_never=c.span_never)
            rows.append(row)
        return rows

    def format(self) -> str:
        kind = "normalised (G L)" if self.normalized else "raw (G)"
        names = [c.class_name for c in self.curves]
        lines = [f"memory curves: sum of {kind} singular values per delay"]
        if self.interval:
            lines.append(f"(under each value its {100 * self.level:g}% {self.interval} interval)")
        rows = []
        for i, d in enumerate(self.curves[0].delays if self.curves else []):
            rows.append([str(d)] + [_memory_cell(c, i, bool(self.interval)) for c in self.curves])
        lines.append(text_table(["delay", *names], rows, separate_rows=bool(self.interval)))
        lines.append("")
        last = self.curves[0].span.max_delay if self.curves else 0
        lines.append(f"memory span: first delay whose sum is below {self.fraction:g} x the sum at "
                     f"delay 0\n(never: not within the delays computed, 0-{last})")
        if self.interval:
            lines.append(f"[range over the {self.interval} replicates; 'k never': k replicates "
                         "do not fall]")
        lines.append(text_table(["class", "span"], [[c.class_name, c.span_text()]
                                                    for c in self.curves]))
        lines.extend(empty_notes([(c.class_name, d) for c in self.curves for d in c.empty_delays]))
        lines.extend(normalization_line(self.normalization))
        return "\n".join(lines)

    def to_csv(self, path: str | os.PathLike) -> Path:
        return write_csv(path, self._columns(), self.rows())

    def to_json(self, path: str | os.PathLike) -> Path:
        return write_json(path, {"normalized": self.normalized, "fraction": self.fraction,
                                  "normalization": self.normalization,
                                  "interval": self.interval, "level": self.level,
                                  "curves": self.rows(), "spans": self.span_rows()})


def _memory_cell(curve: MemoryCurve, i: int, band: bool) -> str:
    """The sum at the i-th delay, with its interval on a second line."""
    text = cell(curve.totals[i])
    if band:
        lo = curve.lower[i] if curve.lower else None
        hi = curve.upper[i] if curve.upper else None
        text += "\n" + band_cell(lo, hi)
    return text


@single_threaded_blas
def memory_curves(
    result: GradientResult,
    *,
    normalize: Normalizer = None,
    classes: Iterable[int | str] | None = None,
    fraction: float = 0.1,
    interval: str | None = None,
    level: float = 0.95,
    n_boot: int = 200,
    seed: int = 0,
) -> MemoryReport:
    """Memory curve (sum of singular values of ``Gbar_d L`` against d) and
    :class:`MemorySpan` of every class.

    With ``interval`` ("jackknife" or "bootstrap"; the result must have been computed
    with blocks) every curve also gets its confidence band (see
    :mod:`stategrad.analysis.uncertainty`) and its span the range of the spans of the
    resampling replicates, which says how firmly the data fix it.
    """
    L = normalizer_matrix(normalize)
    check_normalizer(L, result.embedding_size)
    names = class_list(result, classes)
    bands = _memory_bands(result, L, names, fraction, interval, level, n_boot, seed)
    curves = []
    for name in names:
        sps = spectra(result, name, normalize=L)
        totals = [None if sp is None else sp.total for sp in sps]
        counts = [int(n) for n in result.counts[:, result.class_index(name)]]
        span = memory_span(np.array([np.nan if t is None else t for t in totals]),
                           np.array(counts), fraction)
        curves.append(MemoryCurve(
            name, [int(d) for d in result.delays], counts, totals,
            [None if sp is None else float(sp.singular_values[0]) for sp in sps], span,
        ))
        if bands is not None:
            curves[-1].lower, curves[-1].upper, curves[-1].span_range, curves[-1].span_never = \
                bands[name]
    return MemoryReport(L is not None, fraction, curves,
                        interval if bands is not None else None,
                        level if bands is not None else None, normalization_info(normalize))


def _memory_bands(result: GradientResult, L: np.ndarray | None, names: list[str],
                  fraction: float, interval: str | None, level: float, n_boot: int,
                  seed: int) -> dict[str, tuple] | None:
    """Per class: band of the singular-value sum, and the span's range over replicates."""
    if interval in (None, "none"):
        return None

    reps = uncertainty.replicates(result, uncertainty.singular_values(L), classes=names,
                                  method=interval, n_boot=n_boot, seed=seed)
    band = reps.derive(uncertainty.sv_sum, level=level)
    sums = reps.replicates.sum(axis=-1)  # (R, D, C')
    out = {}
    for j, name in enumerate(reps.classes):
        counts = result.counts[:, result.class_index(name)]
        falls, never = [], 0
        for r in range(sums.shape[0]):
            if not reps.valid[r, 0, j]:
                continue
            # A replicate without a value at some delay (no occurrence left there) skips it,
            # exactly as the full-data span skips empty delays.
            rep_counts = np.where(reps.valid[r, :, j], counts, 0)
            span = memory_span(np.nan_to_num(sums[r, :, j]), rep_counts, fraction)
            if span.status == "falls":
                falls.append(span.delay)
            elif span.status == "never":
                never += 1
        span_range = (min(falls), max(falls)) if falls else (None, None)
        out[name] = (none_if_nan(band.lower[:, j, 0]), none_if_nan(band.upper[:, j, 0]),
                     span_range, never)
    return out


def memory_curve_arrays(result: GradientResult, **kwargs: Any) -> dict[str, MemoryCurveArrays]:
    """:func:`memory_curves` (same keywords, same numbers) as arrays per class, in class
    order: the delays, counts, the sum of singular values and, with ``interval``, its
    band.  For figures, which draw these curves and must not compute them again."""
    return {c.class_name: c.arrays() for c in memory_curves(result, **kwargs).curves}
