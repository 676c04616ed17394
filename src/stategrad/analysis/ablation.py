"""What an ablation result says: mean loss increase and KL per class and distance (or
context length) with block intervals, and how the ablation curves go with the state
gradient memory curves.

The intervals are the gradient results' (:mod:`.uncertainty`): an ablation result is
viewed as a gradient result whose "mean matrix" is the 1 x 2 row (loss increase, KL),
so the same delete-one-block jackknife and block bootstrap apply unchanged.

Alignment with state gradients: the loss at distance d is the prediction of w_{t+d},
made from the state ``s_{t+d-1}``, whose gradient with respect to x_t is G(t, d - 1).
Ablation distance d is therefore paired with gradient delay d - 1.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from ..ablation import AblationResult
from ..gradients import GradientResult
from . import uncertainty
from .errors import AnalysisError
from .tables import cell, none_if_nan, text_table, write_csv, write_json

_COLUMNS = ("loss_increase", "kl")


def _as_gradient_result(result: AblationResult) -> GradientResult:
    """The (loss increase, KL) sums as (K, C, 1, 2) "matrices", blocks alike."""
    sums = np.moveaxis(result.values[1:], 0, -1)[:, :, None, :]
    blocks: dict[str, Any] = {}
    if result.has_blocks:
        blocks = dict(block_sums=np.moveaxis(result.block_values[:, 1:], 1, -1)[:, :, :, None, :],
                      block_counts=result.block_counts, block_starts=result.block_starts)
    return GradientResult(sums, result.counts, list(result.classes), [], {}, **blocks)


@dataclass
class AblationTable:
    """Rows ``{class, distance (or context), count, loss_increase, kl}`` and with an
    interval their ``_lower``/``_upper``; None where a cell has no occurrence."""

    axis_name: str
    rows: list[dict[str, Any]]
    interval: str | None
    level: float | None
    mode: str

    @property
    def columns(self) -> list[str]:
        cols = ["class", self.axis_name, "count", "loss_increase", "kl"]
        if self.interval:
            cols += ["loss_increase_lower", "loss_increase_upper", "kl_lower", "kl_upper"]
        return cols

    def format(self) -> str:
        head = (f"{self.mode}: mean loss increase (nats) and KL(p_orig || p_ablated) per "
                f"class and {self.axis_name}")
        if self.interval:
            head += f"; {uncertainty.describe(self.interval, self.level)}"
        cells = [[str(r[c]) if c in ("class", self.axis_name, "count") else cell(r[c])
                  for c in self.columns] for r in self.rows]
        return head + "\n" + text_table(self.columns, cells, fixed=2)

    def to_csv(self, path: str | os.PathLike) -> Path:
        return write_csv(path, self.columns, self.rows)

    def to_json(self, path: str | os.PathLike) -> Path:
        return write_json(path, self.rows)


def ablation_table(result: AblationResult, *, classes: Iterable[str] | None = None,
                   interval: str | None = None, level: float = 0.95, n_boot: int = 200,
                   seed: int = 0) -> AblationTable:
    """The mean loss increase and KL of every (class, distance) cell, with a confidence
    interval from the result's blocks when ``interval`` is jackknife or bootstrap."""
    names = list(result.classes) if classes is None else [result.classes[result.class_index(c)]
                                                          for c in classes]
    method = interval if interval not in (None, "none") else "none"
    band = uncertainty.band(_as_gradient_result(result), lambda m: m.reshape(len(m), 2),
                            classes=names, method=method, level=level, n_boot=n_boot, seed=seed)
    rows = []
    for j, name in enumerate(names):
        counts = result.counts[:, result.class_index(name)]
        for i, a in enumerate(result.axis):
            row: dict[str, Any] = {"class": name, result.axis_name: int(a), "count": int(counts[i])}
            for q, col in enumerate(_COLUMNS):
                row[col] = none_if_nan(band.estimate[i, j, q:q + 1])[0]
                if method != "none":
                    row[f"{col}_lower"] = none_if_nan(band.lower[i, j, q:q + 1])[0]
                    row[f"{col}_upper"] = none_if_nan(band.upper[i, j, q:q + 1])[0]
            rows.append(row)
    return AblationTable(result.axis_name, rows, None if method == "none" else method,
                         None if method == "none" else level, result.mode)


@dataclass
class AblationCurve:
    """One class's mean of a quantity against the axis, NaN where nothing was counted,
    with its band (None without an interval); for figures."""

    class_name: str
    axis: np.ndarray
    counts: np.ndarray
    mean: np.ndarray
    lower: np.ndarray | None
    upper: np.ndarray | None


def ablation_curves(result: AblationResult, quantity: str = "loss_increase",
                    **kwargs: Any) -> dict[str, AblationCurve]:
    """:func:`ablation_table` (same keywords) as arrays per class, for figures."""
    if quantity not in _COLUMNS:
        raise AnalysisError(f"quantity must be one of {_COLUMNS}, got {quantity!r}")
    table = ablation_table(result, **kwargs)
    out: dict[str, AblationCurve] = {}
    for name in dict.fromkeys(r["class"] for r in table.rows):
        rows = [r for r in table.rows if r["class"] == name]

        def col(key: str, rows=rows) -> np.ndarray:
            return np.array([np.nan if r.get(key) is None else r[key] for r in rows])
        band = table.interval is not None
        out[name] = AblationCurve(name, np.array([r[result.axis_name] for r in rows]),
                                  np.array([r["count"] for r in rows]), col(quantity),
                                  col(f"{quantity}_lower") if band else None,
                                  col(f"{quantity}_upper") if band else None)
    return out


@dataclass
class CorrelationTable:
    """Per class: Pearson and Spearman correlation between the memory curve at delay
    d - 1 and the ablation curve at distance d, over the delays where both exist."""

    quantity: str
    rows: list[dict[str, Any]]

    def format(self) -> str:
        cols = ["class", "delays", "pearson", "spearman"]
        cells = [[r["class"], str(r["delays"]), cell(r["pearson"]), cell(r["spearman"])]
                 for r in self.rows]
        return (f"Correlation over delays of the memory curve (delay d-1) and the mean "
                f"{self.quantity} of ablation (distance d)\n" + text_table(cols, cells))

    def to_json(self, path: str | os.PathLike) -> Path:
        return write_json(path, self.rows)


def memory_ablation_correlation(memory: dict[str, Any], ablation: AblationResult,
                                quantity: str = "loss_increase") -> CorrelationTable:
    """``memory``: :func:`memory_curve_arrays` per class (delays, totals); the classes
    both have.  Fewer than three common delays, or a constant curve: no correlation (None)."""
    if ablation.axis_name != "distance":
        raise AnalysisError("the correlation needs an ablation result (distances), not "
                            f"a {ablation.mode} result")
    rows = []
    for name, curve in memory.items():
        if name not in ablation.classes:
            continue
        abl = ablation.mean(quantity, name)
        by_delay = dict(zip((int(d) for d in curve.delays), curve.totals, strict=True))
        pairs = [(by_delay[int(d) - 1], a) for d, a in zip(ablation.axis, abl, strict=True)
                 if int(d) - 1 in by_delay]
        pairs = [(g, a) for g, a in pairs if np.isfinite(g) and np.isfinite(a)]
        r = rho = None
        if len(pairs) >= 3:
            g, a = np.array(pairs).T
            if np.ptp(g) > 0 and np.ptp(a) > 0:
                r = float(stats.pearsonr(g, a)[0])
                rho = float(stats.spearmanr(g, a)[0])
        rows.append({"class": name, "delays": len(pairs), "pearson": r, "spearman": rho})
    return CorrelationTable(quantity, rows)
