"""Identity memory: how much of what tells a class's words apart the state still carries.

For a class c, ``P_c`` is an orthonormal basis of the span of ``Z (x_w - mean_c)`` over its
words w (the directions in which they differ, whitened; ``Z = L^-1``).  Its identity
memory at delay d is the sum of the singular values of ``Gbar_{d,c} L P_c``: the memory
curve restricted to the directions that carry *which* word was read.  Unlike the plain
memory curve it does not count the directions every word of the class shares (what the
class as a whole does to the state), so a class whose words must be told apart for k
steps shows it up to delay k - 1 (docs/synthetic-validation.md).

Its noise floor (:func:`identity_floor`) is the sign-flip null of :mod:`.noise_floor`
applied to this statistic: what the identity memory of a class with the same blocks,
counts and noise but no memory would be.  The identity statistic needs it more than the
plain curve: it sums the singular values of a small (H x r) matrix, and the noise in a
mean of n gradients keeps that sum of the order of ``sqrt(r / n)`` at every delay.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..gradients import GradientResult
from . import uncertainty
from .errors import AnalysisError
from .noise_floor import NoiseFloor, noise_floor
from .normalization import Normalizer, check_normalizer, normalization_info, normalizer_matrix
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


def class_subspace(embeddings: np.ndarray, word_ids: Sequence[int],
                   whitening: np.ndarray | None = None, *, rtol: float = 1e-6) -> np.ndarray:
    """Orthonormal basis (E, r) of the directions in which the words of a class differ:
    the span of ``x_w - mean`` over the words (of ``Z (x_w - mean)`` with ``whitening`` Z)."""
    X = np.asarray(embeddings, dtype=np.float64)[np.asarray(word_ids, dtype=np.int64)]
    if len(X) < 2:
        raise AnalysisError("a class needs at least two words to have identity directions")
    dev = X - X.mean(axis=0)
    if whitening is not None:
        dev = dev @ np.asarray(whitening, dtype=np.float64).T
    _, s, vh = np.linalg.svd(dev, full_matrices=False)
    if s[0] == 0:
        raise AnalysisError("the words of the class have the same embedding: no identity "
                            "directions")
    keep = s > rtol * s[0]
    return vh[keep].T


def identity_memory(result: GradientResult, class_name: str, basis: np.ndarray,
                    L: np.ndarray | None = None) -> np.ndarray:
    """Per delay, the sum of the singular values of ``Gbar_{d,c} L P`` (``Gbar_{d,c} P``
    without ``L``).  NaN where the class has no occurrence at that delay."""
    out = np.full(result.max_delay, np.nan)
    c = result.class_index(class_name)
    for i in range(result.max_delay):
        if result.counts[i, c] == 0:
            continue
        G = result.sums[i, c] / result.counts[i, c]
        if L is not None:
            G = G @ L
        out[i] = np.linalg.svd(G @ basis, compute_uv=False).sum()
    return out


def identity_statistic(basis: np.ndarray, L: np.ndarray | None):
    """The identity memory of a mean matrix, for the resampling bands."""
    right = basis if L is None else L @ basis

    def stat(m: np.ndarray) -> np.ndarray:
        return np.linalg.svd(m @ right, compute_uv=False).sum(axis=-1, keepdims=True)

    return stat


def identity_floor(result: GradientResult, class_name: str, basis: np.ndarray,
                   L: np.ndarray | None = None, *, level: float = 0.95, n_flips: int = 200,
                   seed: int = 0, simultaneous: bool = True) -> NoiseFloor:
    """The noise floor of the identity memory of one class at every delay: the sign-flip
    null of :func:`~stategrad.analysis.noise_floor` for the sum of the singular values of
    ``M L P`` (``M P`` without ``L``), M the sign-flipped block deviations (simultaneous
    over delays 1.. by default).  The result must have blocks."""
    return noise_floor(result, identity_statistic(basis, L), [class_name], level=level,
                       n_flips=n_flips, seed=seed, simultaneous=simultaneous, from_delay=1)


def noise_from(above: Sequence[bool | None], start: int = 1) -> int | None:
    """The first delay >= ``start`` from which a curve stays within its noise floor: after
    it, no delay with a floor (``above`` not None) is above it.  ``None`` when the curve is
    still above its floor at the last delay that has one (it does not fall to noise within
    the delays computed)."""
    judged = [d for d in range(start, len(above)) if above[d] is not None]
    last_above = max((d for d in judged if above[d]), default=None)
    if last_above is None:
        return judged[0] if judged else None
    later = [d for d in judged if d > last_above]
    return later[0] if later else None


@dataclass
class IdentityTable:
    """Identity memory per class and delay: rows with ``class``, ``delay``, ``count``,
    ``identity``, ``identity_ratio`` (to delay 0), ``rank`` (identity directions of the
    class), with bands ``identity_lower`` / ``identity_upper``, and with the noise floor
    ``floor_level`` (the floor at that delay) and ``above_floor``.  ``noise_from``: per
    class, the first delay from which its curve stays within its floor (:func:`noise_from`;
    None: above it to the last delay)."""

    rows: list[dict[str, Any]]
    interval: str | None = None
    level: float | None = None
    normalization: dict[str, Any] | None = None
    floor: bool = False
    noise_from: dict[str, int | None] | None = None

    @property
    def classes(self) -> list[str]:
        return list(dict.fromkeys(r["class"] for r in self.rows))

    @property
    def empty(self) -> list[tuple[str, int]]:
        return [(r["class"], r["delay"]) for r in self.rows if r["count"] == 0]

    def curve(self, class_name: str, key: str = "identity") -> np.ndarray:
        return np.array([np.nan if r[key] is None else r[key]
                         for r in self.rows if r["class"] == class_name])

    def _columns(self) -> list[str]:
        cols = ["class", "delay", "count", "rank", "identity", "identity_ratio"]
        cols += ["identity_lower", "identity_upper"] if self.interval else []
        return cols + (["floor_level", "above_floor"] if self.floor else [])

    def format(self) -> str:
        lines = ["identity memory: sum of singular values of Gbar_{d,c} L P_c, P_c the "
                 "directions in which the class's words differ"]
        if self.interval:
            lines.append(f"(with {100 * self.level:g}% {self.interval} intervals)")
        if self.floor:
            lines.append("(floor: what a class of the same size and blocks with no memory "
                         "would give, over delays 1..;\n'~' marks values not distinguishable "
                         "from noise)")
        names = self.classes
        delays = sorted({r["delay"] for r in self.rows})
        by = {(r["class"], r["delay"]): r for r in self.rows}
        columns = ["delay"] + [f"{n} (rank {by[(n, delays[0])]['rank']})" for n in names]
        rows = []
        for d in delays:
            row = [str(d)]
            for n in names:
                r = by[(n, d)]
                text = cell(r["identity"]) + (f" ({cell(r['identity_ratio'])})"
                                              if r["identity_ratio"] is not None else "")
                if self.floor and r.get("above_floor") is False:
                    text = "~" + text
                if self.interval:
                    text += "\n" + band_cell(r.get("identity_lower"), r.get("identity_upper"))
                if self.floor and r.get("floor_level") is not None:
                    text += f"\nfloor {r['floor_level']:.3g}"
                row.append(text)
            rows.append(row)
        lines.append(text_table(columns, rows,
                                separate_rows=bool(self.interval) or self.floor))
        lines.append("in brackets: the ratio to delay 0")
        if self.floor and self.noise_from is not None:
            lines.append(text_table(["class", "within its noise floor from delay"], [
                [n, "never (above it to the last delay)" if self.noise_from.get(n) is None
                 else str(self.noise_from[n])] for n in names]))
        lines.extend(empty_notes(self.empty))
        lines.extend(normalization_line(self.normalization))
        return "\n".join(lines)

    def to_csv(self, path: str | os.PathLike) -> Path:
        return write_csv(path, self._columns(), self.rows)

    def to_json(self, path: str | os.PathLike) -> Path:
        payload = {"measure": "identity", "normalization": self.normalization,
                   "interval": self.interval, "level": self.level, "floor": self.floor,
                   "rows": self.rows, "empty": self.empty}
        if self.floor:
            payload["noise_from"] = self.noise_from
        return write_json(path, payload)


def identity_table(result: GradientResult, embeddings: np.ndarray,
                   class_words: Mapping[str, Sequence[int]], normalize: Normalizer = None, *,
                   interval: str | None = None, level: float = 0.95, n_boot: int = 200,
                   seed: int = 0, floor: bool | None = None,
                   n_flips: int = 200) -> IdentityTable:
    """Identity memory of every class in ``class_words`` (class name -> word ids of the
    embeddings) at every delay, normalised with ``normalize`` (statistics, L or a file;
    ``None``: raw, with the basis from the raw embeddings), with ``interval`` bands
    ("jackknife" / "bootstrap", on a result with blocks) and ``floor`` (default: with
    ``interval``) the noise floor of every class and delay (:func:`identity_floor`,
    ``n_flips`` sign draws, at ``level``)."""
    has_band = interval not in (None, "none")
    if floor is None:
        floor = has_band
    L = normalizer_matrix(normalize)
    if L is not None:
        check_normalizer(L, result.embedding_size)
    W = np.asarray(embeddings, dtype=np.float64)
    if W.shape[1] != result.embedding_size:
        raise AnalysisError(f"the embeddings have {W.shape[1]} dimensions, the gradients "
                            f"{result.embedding_size}")
    Z = None if L is None else np.linalg.inv(L)
    rows: list[dict[str, Any]] = []
    noise: dict[str, int | None] = {}
    for name, ids in class_words.items():
        try:
            basis = class_subspace(W, ids, Z)
        except AnalysisError as exc:
            raise AnalysisError(f"class {name!r}: {exc}") from None
        values = identity_memory(result, name, basis, L)
        lower = upper = None
        if has_band:
            band = uncertainty.band(result, identity_statistic(basis, L), classes=[name],
                                    method=interval, level=level, n_boot=n_boot, seed=seed)
            lower, upper = band.lower[:, 0, 0], band.upper[:, 0, 0]
        class_rows = _class_rows(result, name, basis.shape[1], values, lower, upper)
        if floor:
            nf = identity_floor(result, name, basis, L, level=level, n_flips=n_flips, seed=seed)
            for row, f, a in zip(class_rows, nf.floor[:, 0, 0], nf.above[:, 0, 0], strict=True):
                row["floor_level"] = None if not np.isfinite(f) else float(f)
                row["above_floor"] = None if not np.isfinite(f) else bool(a)
            noise[name] = noise_from([r["above_floor"] for r in class_rows])
        rows.extend(class_rows)
    return IdentityTable(rows, interval if has_band else None, level,
                         normalization_info(normalize) if normalize is not None else None,
                         bool(floor), noise if floor else None)


def _class_rows(result: GradientResult, name: str, rank: int, values: np.ndarray,
                lower: np.ndarray | None, upper: np.ndarray | None) -> list[dict[str, Any]]:
    first = values[0] if np.isfinite(values[0]) and values[0] > 0 else None
    rows = []
    for i, d in enumerate(result.delays):
        v = none_if_nan(values[i:i + 1])[0]
        row = {"class": name, "delay": int(d), "count": result.count(int(d), name),
               "rank": int(rank), "identity": v,
               "identity_ratio": None if v is None or first is None else v / first}
        if lower is not None:
            row["identity_lower"] = none_if_nan(lower[i:i + 1])[0]
            row["identity_upper"] = none_if_nan(upper[i:i + 1])[0]
        rows.append(row)
    return rows
