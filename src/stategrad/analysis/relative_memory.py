"""Memory of a property: a difference vector ``v`` between two mean embeddings gives the
whitened unit direction ``n = Z v / |Z v|``.

- ``absolute(d) = |Gbar_d L n|``: how much of the property the state d steps later still
  carries, and ``absolute_ratio(d) = absolute(d) / absolute(0)``.  These locate a planted
  property's distance (docs/synthetic-validation.md): they fall once the property has been
  used, even where the whole gradient of the word collapses at the same time.
- as in the papers: ``relative(d) = |Gbar_d L n| / s_1`` (how well the state keeps the
  property compared with its best-kept direction) and the subspace cosine ``|V_k n|``
  (how much of n lies among the top k right singular vectors).  Dividing by ``s_1``
  cancels a fall that all directions share, so ``relative`` can stay flat where the
  property is forgotten.
- baselines: ``relative_null`` / ``cosine_null``, the values for a uniformly random unit
  direction (:mod:`.direction_null`), with their central band; the noise floor of
  ``absolute`` and the confidence bands come from :mod:`.property_bands`, and the delay
  where a column falls from :mod:`.locate`."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.linalg import solve_triangular

from ..gradients import GradientResult
from . import direction_null
from ._blas import single_threaded_blas
from .embedding_stats import EmbeddingStats
from .errors import AnalysisError
from .locate import BEND_START, floor_signal, largest_bend, largest_fall, locate_property
from .normalization import (
    Normalizer,
    check_normalizer,
    normalization_info,
    normalizer_matrix,
    renamed_keyword,
)
from .property_bands import add_bands, add_noise_floor
from .spectra import spectra
from .tables import (
    band_cell,
    cell,
    empty_notes,
    normalization_line,
    text_table,
    write_csv,
    write_json,
)


def word_ids(vocab: Any, words: Iterable[str]) -> tuple[np.ndarray, list[str]]:
    """Ids of ``words`` in ``vocab`` (a Vocabulary or word list) and the words it lacks."""
    index = {w: i for i, w in enumerate(getattr(vocab, "words", vocab))}
    ids, missing = [], []
    for w in dict.fromkeys(words):  # keep order, drop repeats
        if w in index:
            ids.append(index[w])
        else:
            missing.append(w)
    return np.asarray(ids, dtype=np.int64), missing


@dataclass
class DifferenceVector:
    """``v = mean(A) - mean(B)`` of two sets of words' embeddings.

    ``weighting`` is ``"types"`` (each word once) or ``"tokens"`` (each word as often
    as it occurs in a text; words that do not occur do not count).  ``n_shared``: words
    that were in both sets (left out of both, unless kept; see :func:`difference_vector`)."""

    vector: np.ndarray  # (E,)
    label: str
    weighting: str
    n_words: tuple[int, int]
    n_tokens: tuple[int, int] | None = None
    n_shared: int = 0
    shared: str = "drop"

    def save(self, path: str | os.PathLike) -> Path:
        """As a plain ``.npy`` (E,), the format the original's scripts load."""
        path = Path(path)
        np.save(path, self.vector)
        return path


def mean_embedding(
    embeddings: np.ndarray, ids: Iterable[int] | np.ndarray, token_counts: np.ndarray | None = None
) -> tuple[np.ndarray, int, int]:
    """Mean embedding of the words ``ids`` (a list of ids or a (V,) boolean mask):
    over types, or token weighted by ``token_counts`` (V,).  Returns the mean, the
    number of words and the number of tokens (= words without counts) behind it."""
    W = np.asarray(embeddings, dtype=np.float64)
    ids = _id_set(ids)
    if len(ids) == 0:
        raise AnalysisError("the word set is empty (none of its words is in the vocabulary)")
    if token_counts is None:
        return W[ids].mean(axis=0), len(ids), len(ids)
    weights = np.asarray(token_counts, dtype=np.float64)[ids]
    total = weights.sum()
    if total == 0:
        raise AnalysisError(
            f"none of the {len(ids)} words of the set occurs in the weighting text; "
            "use type weighting or another text"
        )
    return weights @ W[ids] / total, int((weights > 0).sum()), int(total)


def difference_vector(
    embeddings: np.ndarray,
    ids_a: Iterable[int] | np.ndarray,
    ids_b: Iterable[int] | np.ndarray,
    *,
    token_counts: np.ndarray | None = None,
    label: str = "A - B",
    shared: str = "drop",
) -> DifferenceVector:
    """Mean embedding of set A minus that of set B (see :func:`mean_embedding`).

    A word in both sets (``shared``; e.g. a word tagged both NN and NNS) adds the same
    embedding to both means and so blurs the property: by default (``"drop"``) it is
    left out of both.  ``"keep"`` keeps it in both, as the original's per-class mean
    embeddings did (one example per (word, tag) pair).
    """
    if shared not in ("drop", "keep"):
        raise AnalysisError(f"shared must be 'drop' or 'keep', got {shared!r}")
    a, b = _id_set(ids_a), _id_set(ids_b)
    common = np.intersect1d(a, b)
    if shared == "drop" and len(common):
        a, b = np.setdiff1d(a, common), np.setdiff1d(b, common)
        for name, ids in (("A", a), ("B", b)):
            if len(ids) == 0:
                raise AnalysisError(
                    f"every word of set {name} is also in the other set ({len(common)} shared "
                    "words); nothing is left to average once they are dropped (keep them with "
                    "shared='keep', --keep-shared on the command line)")
    ma, wa, ta = mean_embedding(embeddings, a, token_counts)
    mb, wb, tb = mean_embedding(embeddings, b, token_counts)
    weighting = "types" if token_counts is None else "tokens"
    return DifferenceVector(ma - mb, label, weighting, (wa, wb),
                            None if token_counts is None else (ta, tb), int(len(common)), shared)


def _id_set(ids: Iterable[int] | np.ndarray) -> np.ndarray:
    """Sorted distinct word ids of a list of ids or a (V,) boolean mask."""
    ids = np.asarray(list(ids) if not isinstance(ids, np.ndarray) else ids)
    if ids.dtype == bool:
        ids = np.flatnonzero(ids)
    return np.unique(ids.astype(np.int64))


def class_difference_vector(
    embeddings: np.ndarray,
    class_set: Any,
    class_a: str,
    class_b: str,
    *,
    token_counts: np.ndarray | None = None,
    shared: str = "drop",
) -> DifferenceVector:
    """Difference of the mean embeddings of two classes of a
    :class:`~stategrad.data.ClassSet` (e.g. ``NNS`` minus ``NN``); words of both
    classes are handled as ``shared`` says (see :func:`difference_vector`)."""
    def column(name: str) -> np.ndarray:
        try:
            return class_set.membership[:, class_set.names.index(name)]
        except ValueError:
            raise AnalysisError(f"no class {name!r}; the class set has {class_set.names}") from None

    return difference_vector(embeddings, column(class_a), column(class_b),
                             token_counts=token_counts, label=f"{class_a} - {class_b}",
                             shared=shared)


def whitened_direction(
    v: np.ndarray, whitening: np.ndarray | None = None, *, normalize: Normalizer = None
) -> np.ndarray:
    """``n = Z v / |Z v|``: the unit direction in whitened space of an embedding-space
    difference ``v`` (one vector (E,), or one per row (N, E): then one direction per row).

    The whitening comes from ``normalize``, the normaliser of every analysis: statistics
    (their ``Z``), a matrix L or a file (``Z v`` is then solved from ``L (Z v) = v``, L lower
    triangular); or, as before ``normalize=`` existed, from ``whitening`` = Z itself.  With
    neither, ``n = v / |v|``.  A zero ``v`` has no direction: an :class:`AnalysisError`."""
    v = np.asarray(v, dtype=np.float64)
    if whitening is not None and normalize is not None:
        raise TypeError("whitened_direction() takes whitening (Z) or normalize=, not both")
    if isinstance(normalize, EmbeddingStats):
        whitening = normalize.whitening
    if whitening is not None:
        zv = (np.asarray(whitening, dtype=np.float64) @ v.T).T
    elif normalize is not None:
        L = normalizer_matrix(normalize)
        if v.shape[-1] != L.shape[0]:
            raise AnalysisError(f"difference vectors have {v.shape[-1]} components, the "
                                f"normalisation matrix is {L.shape[0]} x {L.shape[1]}")
        zv = solve_triangular(L, v.T, lower=True).T
    else:
        zv = v
    # One vector: the plain norm, as relative_memory always computed it (the per-row norm
    # may differ in the last bit).
    norm = np.linalg.norm(zv) if zv.ndim == 1 else np.linalg.norm(zv, axis=-1, keepdims=True)
    if not (norm > 0).all():
        raise AnalysisError("the difference vector is zero: the two word sets have the same "
                            "mean embedding, so there is no direction to measure")
    return zv / norm


#: The values of every row, and which of them get confidence bands / null baselines.
VALUE_KEYS = ("absolute", "absolute_ratio", "relative", "cosine", "share",
              "relative_null", "cosine_null", "absolute_null")
BAND_KEYS = ("absolute", "absolute_ratio", "relative", "cosine")
NULL_KEYS = ("relative_null", "cosine_null", "absolute_null")

#: What the columns are, printed under the table.
MEASURE_NOTE = ("absolute = |Gbar_d L n| (the recommended measure: it falls where the property "
                "is no longer kept);\n"
                "relative = absolute / s_1 and cosine as in the papers; "
                "'null': the mean for a uniformly random direction")

#: What the ``share`` column of the table is, printed under it.
SHARE_NOTE = ("share: the part of the sum of all singular values that the top {k} hold, i.e. "
              "how much\nof the state's memory the cosine's subspace stands for (a property "
              "of the gradients, not of n)")


@dataclass
class RelativeMemoryTable:
    """Per delay: ``absolute`` = |Gbar_d^norm n|, ``absolute_ratio`` = absolute / its
    value at delay 0, ``relative`` = absolute / s_1, ``cosine`` = |V_k n| (top_k right
    singular vectors), ``share`` = sum of the top_k singular values / sum of all, and the
    random-direction baselines ``relative_null``, ``cosine_null`` (``absolute_null``) with
    ``<key>_lower`` / ``<key>_upper`` (the central ``level`` band of the null distribution).
    Values are ``None`` where the class has no occurrence at d (see ``empty``)."""

    class_name: str
    label: str
    top_k: int
    rows: list[dict[str, Any]]
    #: With bands, rows also carry <key>_lower/upper for each of BAND_KEYS.
    interval: str | None = None
    level: float | None = None
    #: What the normalisation statistics were computed from (their weighting).
    normalization: dict[str, Any] | None = None
    #: The first delay where :attr:`located_delay` searches for the bend.
    bend_start: int = BEND_START

    @property
    def located_delay(self) -> int | None:
        """Where the property stops being kept: :func:`locate_property` of the rows (the
        largest bend down of ``absolute`` from delay :attr:`bend_start`, over the delays
        above the noise floor where there is one)."""
        return locate_property(self.rows, start=self.bend_start)

    @property
    def empty(self) -> list[tuple[str, int]]:
        return [(self.class_name, r["delay"]) for r in self.rows if r["count"] == 0]

    def _columns(self) -> list[str]:
        base = ["delay", "count", *VALUE_KEYS]
        base += [f"{key}_{side}" for key in NULL_KEYS for side in ("lower", "upper")]
        if any("absolute_floor" in r for r in self.rows):
            base += ["absolute_floor", "absolute_signal"]
        if self.interval:
            base += [f"{key}_{side}" for key in BAND_KEYS for side in ("lower", "upper")]
        return base

    def format(self) -> str:
        lines = [f"memory of the property {self.label} (class {self.class_name}, "
                 f"subspace of the top {self.top_k} right singular vectors)"]
        columns = ["delay", "count", "absolute", "abs/abs(0)", "relative", "rel null",
                   "cosine", "cos null", "share"]
        if self.interval:
            lines.append(f"(with {100 * self.level:g}% {self.interval} intervals)")
            columns += [f"{key} interval" for key in BAND_KEYS]
        rows = []
        for r in self.rows:
            row = [str(r["delay"]), f"{r['count']:,}", cell(r["absolute"]),
                   cell(r["absolute_ratio"]), cell(r["relative"]), cell(r["relative_null"]),
                   cell(r["cosine"]), cell(r["cosine_null"]), cell(r["share"])]
            if self.interval:
                row += [band_cell(r.get(f"{what}_lower"), r.get(f"{what}_upper"))
                        for what in BAND_KEYS]
            rows.append(row)
        lines.append(text_table(columns, rows))
        lines.append(MEASURE_NOTE)
        lines.append(SHARE_NOTE.format(k=self.top_k))
        lines.extend(empty_notes(self.empty))
        lines.extend(normalization_line(self.normalization))
        lines.append(self.location_line())
        return "\n".join(lines)

    def location_line(self) -> str:
        """The located delay in words, with the rule that found it."""
        at = self.located_delay
        where = (f"bends down most at delay {at}" if at is not None
                 else "bends down at no delay that qualifies")
        return (f"the amount kept {where} (largest_bend from delay {self.bend_start}, over "
                "delays above the noise floor where there is one)")

    def curve(self, key: str = "absolute") -> np.ndarray:
        """One column against delay (NaN where the class has no occurrence)."""
        return np.array([np.nan if r[key] is None else r[key] for r in self.rows])

    def largest_fall(self, key: str = "absolute", how: str = "bend") -> int | None:
        """Where a column stops being kept: the delay of its largest bend down
        (:func:`largest_bend` with its default start, the default) or of its largest fall
        ratio (``how="ratio"``, :func:`largest_fall`), over the delays whose ``absolute``
        is above the noise floor where there is one (:func:`floor_signal`, the rule of
        :attr:`located_delay`)."""
        locate = {"bend": largest_bend, "ratio": largest_fall}.get(how)
        if locate is None:
            raise AnalysisError(f"how must be 'bend' or 'ratio', got {how!r}")
        return locate(self.curve(key), [r["delay"] for r in self.rows],
                      signal=floor_signal(self.rows))

    def to_csv(self, path: str | os.PathLike) -> Path:
        return write_csv(path, self._columns(), self.rows)

    def to_json(self, path: str | os.PathLike) -> Path:
        return write_json(path, {"class": self.class_name, "label": self.label,
                                  "top_k": self.top_k, "normalization": self.normalization,
                                  "interval": self.interval,
                                  "level": self.level, "rows": self.rows, "empty": self.empty,
                                  "located_delay": self.located_delay,
                                  "located_from": self.bend_start})


@single_threaded_blas
def relative_memory(
    result: GradientResult,
    v: np.ndarray | DifferenceVector,
    normalize: Normalizer = None,
    *,
    c: int | str = "all",
    top_k: int = 5,
    interval: str | None = None,
    level: float = 0.95,
    n_boot: int = 200,
    seed: int = 0,
    stats: EmbeddingStats | None = None,
    bend_start: int = BEND_START,
) -> RelativeMemoryTable:
    """Relative memory and subspace cosine of the property ``v`` at every delay.

    With ``n = Z v / |Z v|`` and ``Gbar_d^norm = Gbar_d L``:
    ``relative(d) = |Gbar_d^norm n| / s_1(Gbar_d^norm)`` (1 when the state keeps the
    property as well as its best-kept direction, 0 when it forgets it),
    ``cosine(d) = |V_k n|`` (the length of n's projection on the span of the top k
    right singular vectors), ``share(d) = sum(s[:k]) / sum(s)``.

    The original's ``cos_subspace_diff_vector.py`` took ``vh[:thr + 1]``, i.e. k + 1
    vectors for its argument k; pass ``top_k = k + 1`` to reproduce its numbers.

    With ``interval`` ("jackknife" or "bootstrap", on a result with blocks) each row also
    gets the confidence interval of ``relative`` and ``cosine``.  On a result with blocks
    each row also gets ``absolute_floor`` / ``absolute_signal`` (the noise floor).

    ``bend_start``: the first delay of the search for the table's ``located_delay``
    (:func:`~stategrad.analysis.locate_property`); a planted distance K is only found when
    K >= bend_start.

    ``normalize`` (required) is the normaliser as everywhere: statistics, L or a file;
    ``stats=`` is its deprecated keyword name.
    """
    normalize = renamed_keyword(normalize, stats, "stats", "relative_memory")
    if normalize is None:
        raise AnalysisError("relative memory needs the normaliser (normalize=): the direction "
                            "n = Z v / |Z v| lives in whitened space")
    label = v.label if isinstance(v, DifferenceVector) else "difference vector"
    vec = v.vector if isinstance(v, DifferenceVector) else np.asarray(v, dtype=np.float64)
    E = result.embedding_size
    if vec.shape != (E,):
        raise AnalysisError(f"difference vector has shape {vec.shape}; the gradients need ({E},)")
    L = normalizer_matrix(normalize)
    check_normalizer(L, E)
    rank = min(result.hidden_size, E)
    if not 1 <= top_k <= rank:
        raise AnalysisError(f"top_k must be between 1 and min(H, E) = {rank}, got {top_k}")
    if bend_start < 2:
        raise AnalysisError(f"bend_start must be 2 or more, got {bend_start}")
    n = whitened_direction(vec, normalize=normalize)
    name = result.classes[result.class_index(c)]
    rows = _relative_rows(result, name, L, n, top_k, level)
    if result.has_blocks:
        add_noise_floor(rows, result, name, L, n, level, seed)
    info = normalization_info(normalize)
    if interval in (None, "none"):
        return RelativeMemoryTable(name, label, top_k, rows, normalization=info, level=level,
                                   bend_start=bend_start)
    add_bands(rows, result, name, L, n, top_k, interval, level, n_boot, seed)
    return RelativeMemoryTable(name, label, top_k, rows, interval, level, info, bend_start)


def _relative_rows(result: GradientResult, name: str, L: np.ndarray, n: np.ndarray,
                   top_k: int, level: float = 0.95) -> list[dict[str, Any]]:
    """Per delay: count, the property measures, the top-k share and the random-direction
    baselines of class ``name`` (``None`` where the class has no occurrence)."""
    rows = []
    dim = L.shape[1]
    directions = direction_null.random_directions(dim)
    cos_null = direction_null.cosine_null(top_k, dim, level)
    for sp, d in zip(spectra(result, name, normalize=L), result.delays, strict=True):
        row: dict[str, Any] = {"delay": int(d), "count": result.count(int(d), name)}
        row.update(dict.fromkeys(VALUE_KEYS))
        row.update({f"{k}_{side}": None for k in NULL_KEYS for side in ("lower", "upper")})
        if sp is not None:
            row.update(_spectrum_row(sp.singular_values, sp.right_vectors, n, top_k, dim,
                                     level, directions))
            row.update(cosine_null=cos_null[0], cosine_null_lower=cos_null[1],
                       cosine_null_upper=cos_null[2])
        rows.append(row)
    first = rows[0]["absolute"] if rows else None
    for row in rows:
        row["absolute_ratio"] = (row["absolute"] / first if first and row["absolute"] is not None
                                 else None)
    return rows


def _spectrum_row(s: np.ndarray, vh: np.ndarray, n: np.ndarray, top_k: int, dim: int,
                  level: float, directions: np.ndarray) -> dict[str, Any]:
    """The measures of one (delay, class) spectrum (s, Vh)."""
    # |G n| = |diag(s) Vh n| because U has orthonormal columns.
    absolute = float(np.linalg.norm(s * (vh @ n)))
    null = direction_null.norm_null(s, vh, dim, level, directions)
    out: dict[str, Any] = {
        "absolute": absolute,
        "cosine": float(np.linalg.norm(vh[:top_k] @ n)),
        "share": float(s[:top_k].sum() / s.sum()) if s.sum() > 0 else None,
        "absolute_null": null[0], "absolute_null_lower": null[1], "absolute_null_upper": null[2],
    }
    if s[0] > 0:
        out.update(relative=absolute / s[0], relative_null=null[0] / s[0],
                   relative_null_lower=null[1] / s[0], relative_null_upper=null[2] / s[0])
    return out
