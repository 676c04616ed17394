"""Memory curves (the sum of the singular values of ``Gbar_d L`` against the delay d),
memory spans (where a curve falls below a fraction of its delay-0 value) and their
confidence bands, bias-corrected values, span intervals and noise floors over the
result's blocks (computed in :mod:`.memory_stats`)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..gradients import GradientResult
from ._blas import single_threaded_blas
from .errors import AnalysisError
from .memory_stats import CurveStats, memory_stats
from .normalization import Normalizer, check_normalizer, normalization_info, normalizer_matrix
from .spectra import class_list, spectra
from .tables import (
    band_cell,
    cell,
    empty_notes,
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
    #: Resampling statistics: the span's percentile interval, the bias-corrected sums,
    #: the noise floor (see :class:`.memory_stats.CurveStats`); None when not computed.
    stats: CurveStats | None = None

    @property
    def distinguishable(self) -> bool | None:
        """Whether the curve clears its noise floor at some delay >= 1 (None: no floor)."""
        return None if self.stats is None else self.stats.distinguishable

    @property
    def empty_delays(self) -> list[int]:
        return [d for d, n in zip(self.delays, self.counts, strict=True) if n == 0]

    def span_text(self) -> str:
        """The span, with its percentile interval when there is one, and "not
        distinguishable from noise" when the curve never clears its noise floor."""
        text = self.span.format()
        st = self.stats
        if st is not None and (st.span_lower is not None or st.span_upper_never):
            lo = "never" if st.span_lower is None else str(st.span_lower)
            hi = "never" if st.span_upper_never else str(st.span_upper)
            text += f" [{lo}-{hi}]" if hi != lo else f" [{lo}]"
        if self.distinguishable is False:
            text += ": not distinguishable from noise"
        return text

    def arrays(self) -> MemoryCurveArrays:
        """The curve as NumPy arrays, NaN where it has no value (for figures)."""
        def array(values: list[float | None] | None) -> np.ndarray | None:
            return None if values is None else \
                np.array([np.nan if x is None else x for x in values], dtype=np.float64)

        return MemoryCurveArrays(self.class_name, np.array(self.delays, dtype=np.int64),
                                 np.array(self.counts, dtype=np.int64), array(self.totals),
                                 array(self.lower), array(self.upper), self.span,
                                 array(None if self.stats is None else self.stats.floor))


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
    #: The noise floor per delay (NaN where undefined; None when not computed).
    floor: np.ndarray | None = None


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
    #: Bands simultaneous over delays; whether noise floors were computed.
    simultaneous: bool = False
    floor: bool = False

    def curve(self, name: str) -> MemoryCurve:
        for c in self.curves:
            if c.class_name == name:
                return c
        raise AnalysisError(f"no curve for class {name!r}; have {[c.class_name for c in self.curves]}")

    def _columns(self) -> list[str]:
        base = ["class", "delay", "count", "sum", "sv_1"]
        base += ["lower", "upper", "sum_bc"] if self.interval else []
        return base + ["floor", "above_floor"] if self.floor else base

    def rows(self) -> list[dict[str, Any]]:
        rows = []
        for c in self.curves:
            for i, (d, n, s, s1) in enumerate(zip(c.delays, c.counts, c.totals, c.top1, strict=True)):
                row: dict[str, Any] = {"class": c.class_name, "delay": d, "count": n, "sum": s,
                                       "sv_1": s1}
                if self.interval:
                    row["lower"] = c.lower[i] if c.lower else None
                    row["upper"] = c.upper[i] if c.upper else None
                    row["sum_bc"] = c.stats.bias_corrected[i] if c.stats else None
                if self.floor:
                    row["floor"] = c.stats.floor[i] if c.stats else None
                    row["above_floor"] = c.stats.above_floor[i] if c.stats else None
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
            st = c.stats or CurveStats()
            if self.interval:
                row.update(span_lower=st.span_lower, span_upper=st.span_upper,
                           span_upper_never=st.span_upper_never,
                           span_never_share=st.span_never_share)
            if self.floor:
                row.update(distinguishable=st.distinguishable, floor_span=st.floor_span)
            rows.append(row)
        return rows

    def format(self) -> str:
        kind = "normalised (G L)" if self.normalized else "raw (G)"
        names = [c.class_name for c in self.curves]
        lines = [f"memory curves (the papers' measure): sum of {kind} singular values per "
                 "delay"]
        if self.interval:
            sim = ", simultaneous over delays" if self.simultaneous else ""
            lines.append(f"(under each value its {100 * self.level:g}% {self.interval} "
                         f"interval{sim})")
        if self.floor:
            lines.append("(floor: what a class of the same size and blocks with no memory "
                         "would give;\n'*' marks values above it)")
        rows = []
        for i, d in enumerate(self.curves[0].delays if self.curves else []):
            rows.append([str(d)] + [_memory_cell(c, i, bool(self.interval), self.floor)
                                    for c in self.curves])
        lines.append(text_table(["delay", *names], rows, separate_rows=bool(self.interval)))
        lines.append("")
        last = self.curves[0].span.max_delay if self.curves else 0
        lines.append(f"memory span: first delay whose sum is below {self.fraction:g} x the sum at "
                     f"delay 0\n(never: not within the delays computed, 0-{last})")
        if self.interval:
            lines.append(f"[{100 * self.level:g}% percentile interval of the span over block "
                         "bootstrap resamples;\n'never': beyond the last delay]")
        lines.append(text_table(["class", "span"], [[c.class_name, c.span_text()]
                                                    for c in self.curves]))
        lines.extend(empty_notes([(c.class_name, d) for c in self.curves for d in c.empty_delays]))
        lines.extend(normalization_line(self.normalization))
        return "\n".join(lines)

    def to_csv(self, path: str | os.PathLike) -> Path:
        return write_csv(path, self._columns(), self.rows())

    def to_json(self, path: str | os.PathLike) -> Path:
        return write_json(path, {"measure": "papers", "normalized": self.normalized,
                                  "fraction": self.fraction,
                                  "normalization": self.normalization,
                                  "interval": self.interval, "level": self.level,
                                  "simultaneous": self.simultaneous, "floor": self.floor,
                                  "curves": self.rows(), "spans": self.span_rows()})


def _memory_cell(curve: MemoryCurve, i: int, band: bool, floor: bool = False) -> str:
    """The sum at the i-th delay (``*``: above its noise floor), with its interval on a
    second line and the floor on a third."""
    text = cell(curve.totals[i])
    st = curve.stats
    if floor and st is not None and st.above_floor[i]:
        text += "*"
    if band:
        lo = curve.lower[i] if curve.lower else None
        hi = curve.upper[i] if curve.upper else None
        text += "\n" + band_cell(lo, hi)
    if floor and st is not None and st.floor[i] is not None:
        text += f"\nfloor {st.floor[i]:.3g}"
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
    simultaneous: bool = False,
    floor: bool | None = None,
    n_flips: int = 200,
) -> MemoryReport:
    """Memory curve (sum of singular values of ``Gbar_d L`` against d) and
    :class:`MemorySpan` of every class.

    With ``interval`` ("jackknife" or "bootstrap"; the result must have been computed
    with blocks) every curve also gets its confidence band (Student t for the jackknife,
    see :mod:`stategrad.analysis.uncertainty`; ``simultaneous``: over all delays at
    once), its bias-corrected sums, and its span a percentile interval over block
    bootstrap resamples (see :mod:`.memory_stats`).  ``floor`` (default: with
    ``interval``) adds the noise floor of every delay from ``n_flips`` sign draws
    (:func:`stategrad.analysis.noise_floor`) and says whether the curve is
    distinguishable from noise.
    """
    L = normalizer_matrix(normalize)
    check_normalizer(L, result.embedding_size)
    names = class_list(result, classes)
    if floor is None:
        floor = interval not in (None, "none")
    stats = memory_stats(result, L, names, fraction, interval, level, n_boot, seed,
                         simultaneous, floor, n_flips, memory_span) \
        if interval not in (None, "none") or floor else None
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
        if stats is not None:
            curves[-1].stats = stats[name]
            curves[-1].lower, curves[-1].upper = stats[name].lower, stats[name].upper
    has_band = interval not in (None, "none")
    return MemoryReport(L is not None, fraction, curves, interval if has_band else None,
                        level if has_band else None, normalization_info(normalize),
                        simultaneous and has_band, bool(floor))


def memory_curve_arrays(result: GradientResult, **kwargs: Any) -> dict[str, MemoryCurveArrays]:
    """:func:`memory_curves` (same keywords, same numbers) as arrays per class, in class
    order: the delays, counts, the sum of singular values and, with ``interval``, its
    band.  For figures, which draw these curves and must not compute them again."""
    return {c.class_name: c.arrays() for c in memory_curves(result, **kwargs).curves}
