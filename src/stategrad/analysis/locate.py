"""Where a curve against delay stops being kept: the delay of its largest fall ratio
(:func:`largest_fall`) or of its largest bend down (:func:`largest_bend`).  Used on the
property measures of :mod:`.relative_memory` (:func:`locate_property`, the rule the
command line reports) and on identity curves."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from .errors import AnalysisError

#: Where :func:`largest_bend` starts searching by default (see its docstring).
BEND_START = 3


def largest_fall(values: np.ndarray, delays: Iterable[int] | None = None, *,
                 start: int = 1, signal: np.ndarray | None = None) -> int | None:
    """The delay d >= ``start`` where ``values[d] / values[d - 1]`` is smallest: where a
    property stops being kept (a planted distance K shows as a fall at K, once the agreeing
    word has been read).  A ratio, not a difference, so that a large value does not win by
    its size.  ``signal`` (bool per delay): only falls from a value distinguishable from
    noise count (a ratio of two noise values means nothing).  ``None`` when there is none."""
    v = np.asarray(values, dtype=np.float64)
    delays = list(range(len(v))) if delays is None else list(delays)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = v[1:] / v[:-1]
    bad = ~np.isfinite(ratio) | (v[:-1] <= 0)
    if signal is not None:
        bad |= ~np.asarray(signal, dtype=bool)[:-1]
    ratio[bad] = np.inf
    ratio[:max(start - 1, 0)] = np.inf
    if not len(ratio) or not np.isfinite(ratio).any():
        return None
    return int(delays[1 + int(np.argmin(ratio))])


def largest_bend(values: np.ndarray, delays: Iterable[int] | None = None, *,
                 start: int = BEND_START, signal: np.ndarray | None = None,
                 log: bool = False) -> int | None:
    """The delay d >= ``start`` (>= 2) where the curve bends down most: the smallest second
    difference ``(v[d] - v[d-1]) - (v[d-1] - v[d-2])``, i.e. where its fall speeds up most.
    From delay 3 by default: a bend at delay 1 or 2 is the word's direct effect on the
    state decaying (the curve's steep first steps level off, and any kink there wins by
    its size), not a memory being dropped; searched from delay 3 the bend located the
    planted distances better (docs/synthetic-validation.md), and a memory of one or two
    steps is then not located (pass ``start=2`` to allow delay 2).
    Where a state drops a property (a sharp fall) this is the fall; where it only stops
    protecting it (a leaky cell that lets it decay faster once it has been used) it is the
    kink, which a fall ratio cannot single out.  In the curve's own units (``log=False``),
    so that the tail, where the values are small and their relative changes mostly noise,
    does not win; ``log=True`` bends the log curve instead.  ``signal`` as for
    :func:`largest_fall` (the value before the bend must be distinguishable from noise).
    The same for any positive multiple of the curve.  ``None`` when there is none."""
    v = np.asarray(values, dtype=np.float64)
    delays = list(range(len(v))) if delays is None else list(delays)
    with np.errstate(invalid="ignore", divide="ignore"):
        step = np.log(v[1:] / v[:-1]) if log else np.diff(v)
    bend = step[1:] - step[:-1]
    bend[~np.isfinite(bend)] = np.inf
    if signal is not None:
        bend[~np.asarray(signal, dtype=bool)[1:-1]] = np.inf
    bend[:max(start - 2, 0)] = np.inf
    if not len(bend) or not np.isfinite(bend).any():
        return None
    return int(delays[2 + int(np.argmin(bend))])


def floor_signal(rows: Sequence[Mapping[str, Any]]) -> np.ndarray | None:
    """Per row of a property table (:func:`~stategrad.analysis.relative_memory` rows or
    their JSON): is ``absolute`` above ``absolute_floor``?  A row without a floor (too few
    blocks with occurrences) counts as signal, so that it is not dropped for want of a
    floor; ``None`` when no row has one (a result without blocks)."""
    floor = np.array([np.nan if r.get("absolute_floor") is None else r["absolute_floor"]
                      for r in rows], dtype=np.float64)
    if not np.isfinite(floor).any():
        return None
    absolute = np.array([np.nan if r.get("absolute") is None else r["absolute"]
                         for r in rows], dtype=np.float64)
    return ~(absolute <= floor)  # NaN floor: the comparison is False, so signal


def locate_property(rows: Sequence[Mapping[str, Any]], *, start: int = BEND_START,
                    key: str = "absolute") -> int | None:
    """Where a property stops being kept, as ``relative-memory`` reports it: the
    :func:`largest_bend` of column ``key`` (``absolute`` = |Gbar_d L n|) from delay
    ``start``, over the delays whose ``absolute`` is above its noise floor where the rows
    have one (:func:`floor_signal`).  A planted distance K can only be found when
    K >= ``start``.  ``None`` when no delay qualifies."""
    if start < 2:
        raise AnalysisError(f"the bend is searched from delay 2 or later, got start={start}")
    values = np.array([np.nan if r.get(key) is None else r[key] for r in rows],
                      dtype=np.float64)
    return largest_bend(values, [r["delay"] for r in rows], start=start,
                        signal=floor_signal(rows))
