"""Paired differences of a memory statistic on the same blocks of the same text: class A
minus class B in one result, or one result minus another (cell against hidden state,
model against model) computed over the same text with the same blocks.

Why paired.  Two curves whose separate bands overlap may still differ clearly: both
move together with the text (a block rich in some construction raises both), so the
difference varies far less than either.  Resampling the *difference* over the same
blocks keeps that covariance: for the delete-one-block jackknife, replicate b is
``theta_A(M_A^-b) - theta_B(M_B^-b)`` with the same block b left out of both; for the
block bootstrap each resample weights the blocks of both alike.  A block without
occurrences of one side leaves that side's mean as it is (its replicate is the full
estimate), so every block with occurrences of either side counts (``B'``).  The band of
the difference is then the Student-t (jackknife, ``B' - 1`` degrees of freedom) or
percentile (bootstrap) interval of :mod:`.uncertainty`, optionally simultaneous over
delays.  Results whose blocks do not cover the same positions of the same text cannot
be paired and are refused.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..gradients import GradientResult
from . import uncertainty
from .errors import AnalysisError
from .normalization import Normalizer, check_normalizer, normalizer_matrix
from .state_whitening import state_whitened
from .tables import band_cell, cell, none_if_nan, text_table, write_csv, write_json


class CompareError(AnalysisError):
    """Two curves that cannot be compared on the same blocks."""


@dataclass
class Side:
    """One side of a comparison: a result, a class in it, its normaliser ``L`` (embedding
    side) and state whitening ``W`` (state side), and a label for tables."""

    result: GradientResult
    class_name: str = "all"
    normalize: Normalizer = None
    whiten: np.ndarray | None = None
    label: str = ""


@dataclass
class PairedDifference:
    """Per delay: both sides' sums of singular values and their paired difference."""

    labels: tuple[str, str]
    rows: list[dict[str, Any]]
    interval: str
    level: float
    simultaneous: bool

    COLUMNS = ("delay", "count_a", "count_b", "a", "b", "difference", "difference_lower",
               "difference_upper", "se", "n_blocks")

    def format(self) -> str:
        a, b = self.labels
        sim = ", simultaneous over delays" if self.simultaneous else ""
        lines = [f"paired difference of the sum of singular values: {a} - {b}",
                 f"({100 * self.level:g}% {self.interval} interval over the same blocks{sim})"]
        table = [[str(r["delay"]), cell(r["a"]), cell(r["b"]), cell(r["difference"]),
                  band_cell(r["difference_lower"], r["difference_upper"]), _verdict(r)]
                 for r in self.rows]
        lines.append(text_table(["delay", a, b, "difference", "interval", ""], table))
        return "\n".join(lines)

    def to_csv(self, path: str | os.PathLike) -> Path:
        return write_csv(path, list(self.COLUMNS), self.rows)

    def to_json(self, path: str | os.PathLike) -> Path:
        return write_json(path, {"a": self.labels[0], "b": self.labels[1],
                                  "statistic": "sum of singular values",
                                  "interval": self.interval, "level": self.level,
                                  "simultaneous": self.simultaneous, "rows": self.rows})


def _verdict(row: dict[str, Any]) -> str:
    lo, hi = row["difference_lower"], row["difference_upper"]
    if lo is None or hi is None:
        return ""
    return "A > B" if lo > 0 else "A < B" if hi < 0 else ""


def check_same_blocks(a: GradientResult, b: GradientResult, name_a: str, name_b: str) -> None:
    """Refuse two results whose blocks are not the same pieces of the same text."""
    problems = []
    if not (a.has_blocks and b.has_blocks):
        problems.append("both must be computed with blocks (--block-size)")
    elif a.n_blocks != b.n_blocks or not np.array_equal(a.block_starts, b.block_starts):
        problems.append("their blocks start at different positions")
    ta, tb = (r.metadata.get("text") or {} for r in (a, b))
    if ta.get("sha256") and tb.get("sha256") and ta["sha256"] != tb["sha256"]:
        problems.append("they were computed over different texts")
    if a.max_delay != b.max_delay:
        problems.append(f"they have {a.max_delay} and {b.max_delay} delays")
    if a.metadata.get("coverage") != b.metadata.get("coverage"):
        problems.append("their coverage of the text differs")
    if problems:
        raise CompareError(f"{name_a} and {name_b} cannot be compared on the same blocks: "
                           + "; ".join(problems))


def _side_replicates(side: Side, method: str, n_boot: int, seed: int) -> uncertainty.Replicates:
    L = normalizer_matrix(side.normalize)
    check_normalizer(L, side.result.embedding_size)
    stat = state_whitened(uncertainty.singular_values(L), side.whiten)
    return uncertainty.replicates(side.result, stat, classes=[side.class_name], method=method,
                                  n_boot=n_boot, seed=seed)


def _filled(reps: uncertainty.Replicates, side: Side) -> tuple[np.ndarray, np.ndarray]:
    """Replicates of the sum, (R, D), and where they are defined.  In the jackknife,
    leaving out a block without occurrences of the class changes nothing: its replicate
    is the full estimate."""
    sums = reps.replicates.sum(axis=-1)[..., 0]
    if reps.method == "jackknife":
        est = reps.estimate.sum(axis=-1)[:, 0]
        sums = np.where(_present(side), sums, est[None])
        return sums, np.isfinite(sums)
    return sums, reps.valid[..., 0]


def _present(side: Side) -> np.ndarray:
    """(B, D): blocks with occurrences of the side's class at each delay."""
    return side.result.block_counts[:, :, side.result.class_index(side.class_name)] > 0


def paired_difference(a: Side, b: Side, *, method: str = "jackknife", level: float = 0.95,
                      n_boot: int = 200, seed: int = 0,
                      simultaneous: bool = False) -> PairedDifference:
    """The sum of singular values of ``W_a Gbar_d L_a`` (class of ``a``) minus that of
    ``b``, per delay, with its paired interval over the same blocks (see the module)."""
    if method not in ("jackknife", "bootstrap"):
        raise CompareError(f"a paired interval needs jackknife or bootstrap, not {method!r}")
    if a.result is not b.result:
        check_same_blocks(a.result, b.result, a.label or "A", b.label or "B")
    elif not a.result.has_blocks:
        raise CompareError("the result has no per-block sums: no paired interval; recompute "
                           "it with blocks (--block-size)")
    ra, rb = (_side_replicates(s, method, n_boot, seed) for s in (a, b))
    sa, va = _filled(ra, a)
    sb, vb = _filled(rb, b)
    est = ra.estimate.sum(axis=-1) - rb.estimate.sum(axis=-1)  # (D, 1)
    valid = va & vb
    if method == "jackknife":  # a block counts where either side has occurrences in it
        valid &= _present(a) | _present(b)
    diff = uncertainty.Replicates(est[..., None], (sa - sb)[..., None, None], valid[..., None],
                                  ["difference"], method)
    band = diff.derive(None, level=level, simultaneous=simultaneous)
    rows = []
    for d in range(est.shape[0]):
        row = {"delay": d, "count_a": int(a.result.counts[d, a.result.class_index(a.class_name)]),
               "count_b": int(b.result.counts[d, b.result.class_index(b.class_name)])}
        row.update(zip(("a", "b", "difference", "difference_lower", "difference_upper", "se"),
                       none_if_nan(np.array([ra.estimate[d, 0].sum(), rb.estimate[d, 0].sum(),
                                             est[d, 0], band.lower[d, 0, 0],
                                             band.upper[d, 0, 0], band.se[d, 0, 0]])),
                       strict=True))
        row["n_blocks"] = int(band.n_blocks[d, 0])
        rows.append(row)
    return PairedDifference((a.label or a.class_name, b.label or b.class_name), rows, method,
                            level, simultaneous)
