"""Spectra of average gradients: the SVD of ``Gbar_d`` (or ``Gbar_d L``) per delay and
class, and the table of the top singular values (the original's ``calculate_svs.py``).

A (delay, class) cell without occurrences has no average: single-cell functions raise
``EmptyClassError``, tables hold ``None`` there and list the cell in ``empty``."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..gradients import EmptyClassError, GradientResult
from ._blas import single_threaded_blas
from .errors import AnalysisError
from .normalization import Normalizer, check_normalizer, normalization_info, normalizer_matrix
from .tables import empty_notes, fmt, normalization_line, write_csv, write_json


def average_gradient(
    result: GradientResult, d: int, c: int | str = "all", *, normalize: Normalizer = None
) -> np.ndarray:
    """``Gbar_d`` of class c, or ``Gbar_d L`` with a normaliser.  Raises
    :class:`~stategrad.gradients.EmptyClassError` when the class has no occurrence at d."""
    G = result.mean(d, c)
    L = normalizer_matrix(normalize)
    check_normalizer(L, result.embedding_size)
    return G if L is None else G @ L


@dataclass
class Spectrum:
    """The SVD ``G = U diag(s) Vh`` of one (normalised) average gradient.

    ``right_vectors`` are the rows of Vh: the embedding directions (whitened ones,
    when normalised) the state keeps best, in order of ``singular_values``."""

    delay: int
    class_name: str
    count: int
    normalized: bool
    singular_values: np.ndarray  # (min(H, E),)
    right_vectors: np.ndarray  # (min(H, E), E)
    left_vectors: np.ndarray  # (H, min(H, E))

    @property
    def total(self) -> float:
        return float(self.singular_values.sum())

    def top(self, k: int) -> np.ndarray:
        return self.singular_values[:k]


@single_threaded_blas
def spectrum(
    result: GradientResult, d: int, c: int | str = "all", *, normalize: Normalizer = None
) -> Spectrum:
    """Full SVD of ``Gbar_d`` (or ``Gbar_d L``) for one delay and class."""
    L = normalizer_matrix(normalize)
    G = average_gradient(result, d, c, normalize=L)
    if not np.isfinite(G).all():  # the SVD would fail with an unhelpful LinAlgError
        raise AnalysisError(f"the average gradient at delay {d}, class "
                            f"{result.classes[result.class_index(c)]!r} holds NaN or infinite values")
    u, s, vh = np.linalg.svd(G, full_matrices=False)
    return Spectrum(int(d), result.classes[result.class_index(c)], result.count(d, c),
                    L is not None, s, vh, u)




@single_threaded_blas
def spectra(
    result: GradientResult, c: int | str = "all", *, normalize: Normalizer = None
) -> list[Spectrum | None]:
    """:func:`spectrum` for every delay of class c; ``None`` where c has no occurrence."""
    L = normalizer_matrix(normalize)
    out: list[Spectrum | None] = []
    for d in result.delays:
        try:
            out.append(spectrum(result, int(d), c, normalize=L))
        except EmptyClassError:
            out.append(None)
    return out


def class_list(result: GradientResult, classes: Iterable[int | str] | None) -> list[str]:
    if classes is None:
        return list(result.classes)
    return [result.classes[result.class_index(c)] for c in classes]




@dataclass
class SingularValueTable:
    """Top-k singular values and their total per (class, delay).

    ``rows`` are dicts ``class, delay, count, sv_1..sv_k, sum``; the values are
    ``None`` where the class has no occurrence at that delay (listed in ``empty``).
    """

    top: int
    normalized: bool
    rows: list[dict[str, Any]]
    #: What the normalisation statistics were computed from (their weighting), if any.
    normalization: dict[str, Any] | None = None

    @property
    def empty(self) -> list[tuple[str, int]]:
        return [(r["class"], r["delay"]) for r in self.rows if r["count"] == 0]

    @property
    def columns(self) -> list[str]:
        return ["class", "delay", "count"] + [f"sv_{i + 1}" for i in range(self.top)] + ["sum"]

    def format(self) -> str:
        cols = self.columns
        header = f"{'class':<12}{'delay':>6}{'count':>10}" + "".join(f"{c:>11}" for c in cols[3:])
        lines = [("normalised (G L)" if self.normalized else "raw (G)") + " singular values",
                 header]
        for r in self.rows:
            count = "-" if r["count"] is None else r["count"]  # unknown for averaged files
            lines.append(f"{r['class']:<12}{r['delay']:>6}{count:>10}"
                         + "".join(fmt(r[c]) for c in cols[3:]))
        lines.extend(empty_notes(self.empty))
        lines.extend(normalization_line(self.normalization))
        return "\n".join(lines)

    def to_csv(self, path: str | os.PathLike) -> Path:
        return write_csv(path, self.columns, self.rows)

    def to_json(self, path: str | os.PathLike) -> Path:
        return write_json(path, {"normalized": self.normalized, "top": self.top,
                                  "normalization": self.normalization,
                                  "rows": self.rows, "empty": self.empty})



@single_threaded_blas
def singular_value_table(
    result: GradientResult,
    *,
    normalize: Normalizer = None,
    classes: Iterable[int | str] | None = None,
    top: int = 5,
) -> SingularValueTable:
    """The original ``calculate_svs.py`` figures for every delay and class: the ``top``
    largest singular values of ``Gbar_d L`` (``Gbar_d`` without normaliser) and the
    sum of all of them."""
    L = normalizer_matrix(normalize)
    check_normalizer(L, result.embedding_size)
    rank = min(result.hidden_size, result.embedding_size)
    if not 1 <= top <= rank:
        raise AnalysisError(f"top must be between 1 and min(H, E) = {rank}, got {top}")
    rows = []
    for name in class_list(result, classes):
        for sp, d in zip(spectra(result, name, normalize=L), result.delays, strict=True):
            row: dict[str, Any] = {"class": name, "delay": int(d),
                                   "count": result.count(int(d), name)}
            for i in range(top):
                row[f"sv_{i + 1}"] = None if sp is None else float(sp.singular_values[i])
            row["sum"] = None if sp is None else sp.total
            rows.append(row)
    return SingularValueTable(top, L is not None, rows, normalization_info(normalize))
