"""The original code's gradient directories: read and average them, and write them.

Layout (the original's ``print_gradients``, see the project's original-behaviour notes)::

    GRAD_DIR/timestep_<tau>/delay_<d>/<counter>.npy    one H x E matrix each
    GRAD_DIR/timestep_<tau>/delay_<d>/mapping.txt      counter<TAB>word<TAB>context
    GRAD_DIR/timestep_<tau>/delay_<d>/all.npz          after np2npz: arr_0, N x H x E

``word`` is the input word whose embedding the matrix differentiates by
(position tau - d), ``context`` the words from there to the state's position,
each followed by ``-`` (``w_(tau-d)-...-w_tau-``).

Reading gives the numbers of the original's ``avg_gradient_matrix.py`` (mean of
every matrix of a delay over all ``timestep_*`` folders; per class: only the
matrices whose word has a tag in the class, a word counting for every class one
of its possible tags is in, words missing from the POS map reported) and
``calculate_svs.py`` (SVD of ``G @ L`` of each averaged file).  Two differences, both
on purpose: sums are accumulated in float64 (the original summed float32
matrices in float32), and with ``.npy`` files each matrix is taken once, matched
to its mapping line by its counter (the original's ``.npy`` class branch added a
file once per matching word of the whole mapping, a bug that made its ``.npy``
and ``.npz`` results differ).  With ``all.npz`` the i-th array belongs to the
i-th mapping line, as in the original.

:func:`np2npz` stacks a folder's matrices into ``all.npz``; writing those folders from
this package's matrices and results is :mod:`stategrad.legacy.export`.
"""

from __future__ import annotations

import collections
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..analysis import (
    AnalysisError,
    SingularValueTable,
    load_npy,
    normalization_info,
    normalizer_matrix,
)
from ..atomic import write_atomic

_DELAY_DIR = re.compile(r"^delay_(\d+)$")
_AVG_FILE = re.compile(r"^delay_(\d+)_avg(?:_(.+))?\.npy$")


class LegacyError(AnalysisError):
    """A gradient directory in the original's layout that cannot be read as asked."""


# =========================================================================================
# Reading
# =========================================================================================


@dataclass
class MappingLine:
    counter: int
    word: str
    context: str


def read_mapping(path: str | os.PathLike) -> list[MappingLine]:
    """The lines of a ``mapping.txt`` (``counter<TAB>word<TAB>context``), in file order."""
    path = Path(path)
    if not path.is_file():
        raise LegacyError(f"mapping file not found: {path} (every delay_<d> folder of the "
                          "original's layout has one)")
    lines = []
    with open(path, encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, 1):
            if not line.strip():
                continue
            parts = line.rstrip("\n").split("\t")
            if len(parts) < 2:
                # The original's scripts split on any white space; accept that too.
                parts = line.split()
            try:
                counter = int(parts[0])
                word = parts[1]
            except (ValueError, IndexError):
                raise LegacyError(
                    f"{path}:{lineno}: expected 'counter<TAB>word<TAB>context', got {line.rstrip()!r}"
                ) from None
            lines.append(MappingLine(counter, word, parts[2] if len(parts) > 2 else ""))
    return lines


def delay_dirs(grad_dir: str | os.PathLike, delay: int) -> list[Path]:
    """The ``delay_<delay>`` folders of a gradient directory: one per
    ``timestep_*`` folder (the original's layout), or ``GRAD_DIR/delay_<delay>``
    itself when there are no ``timestep_*`` folders (one run's output)."""
    grad_dir = Path(grad_dir)
    if not grad_dir.is_dir():
        raise LegacyError(f"gradient directory not found: {grad_dir}")
    found = sorted(p for p in grad_dir.glob(f"timestep_*/delay_{delay}") if p.is_dir())
    if not found and (grad_dir / f"delay_{delay}").is_dir():
        found = [grad_dir / f"delay_{delay}"]
    if not found:
        raise LegacyError(
            f"no delay_{delay} folder under {grad_dir} (looked for timestep_*/delay_{delay} and "
            f"delay_{delay})"
        )
    return found


def _numbered_npy(folder: Path) -> list[tuple[int, Path]]:
    files = [(int(f.stem), f) for f in folder.glob("*.npy") if f.stem.isdigit()]
    return sorted(files)


def iter_delay_matrices(
    grad_dir: str | os.PathLike, delay: int, *, npz: bool | None = None
) -> Iterator[tuple[MappingLine, np.ndarray]]:
    """Every matrix of one delay with its mapping line.

    ``npz=None`` takes the numbered ``.npy`` files of a folder when it has any and
    its ``all.npz`` otherwise; ``True``/``False`` insist on one kind, as the
    original's ``npz`` argument does."""
    for folder in delay_dirs(grad_dir, delay):
        mapping = read_mapping(folder / "mapping.txt")
        files = _numbered_npy(folder)
        use_npz = npz if npz is not None else not files
        if use_npz:
            archive = folder / "all.npz"
            if not archive.is_file():
                raise LegacyError(f"{archive} not found (run np2npz on {folder}, or read the "
                                  ".npy files)")
            stack = load_npy(archive, key="arr_0")
            if len(stack) != len(mapping):
                raise LegacyError(f"{archive} holds {len(stack)} matrices but {folder}/mapping.txt "
                                  f"has {len(mapping)} lines")
            for line, matrix in zip(mapping, stack, strict=True):
                yield line, matrix
        else:
            if not files:
                raise LegacyError(f"{folder} holds no numbered .npy gradient files")
            by_counter = {m.counter: m for m in mapping}
            for counter, f in files:
                line = by_counter.get(counter)
                if line is None:
                    raise LegacyError(f"{f} has no line with counter {counter} in "
                                      f"{folder}/mapping.txt")
                yield line, load_npy(f)


@dataclass
class LegacyAverage:
    """The average gradient matrix of one delay (and class), and how it came about."""

    delay: int
    class_name: str | None
    mean: np.ndarray | None  # None when no matrix belonged to the class
    count: int
    total: int  # matrices seen at this delay
    missing_words: collections.Counter = field(default_factory=collections.Counter)

    def file_name(self) -> str:
        """The original's output name: ``delay_<d>_avg.npy`` or ``delay_<d>_avg_<class>.npy``."""
        suffix = "" if self.class_name is None else f"_{self.class_name}"
        return f"delay_{self.delay}_avg{suffix}.npy"


def legacy_averages(
    grad_dir: str | os.PathLike,
    delay: int,
    *,
    classes: Mapping[str, Iterable[str]] | None = None,
    pos_map: Mapping[str, Iterable[str]] | None = None,
    npz: bool | None = None,
) -> dict[str | None, LegacyAverage]:
    """Averages of one delay in one pass: over all matrices (key ``None``) and, with
    ``classes`` (class name -> its tags) and ``pos_map`` (word -> possible tags),
    over the matrices of each class.

    A matrix counts for class c when any tag of its word is one of c's tags (a word
    may count for several classes).  Words absent from the POS map count for no
    class and are tallied in ``missing_words``.
    """
    if classes and pos_map is None:
        raise LegacyError("per-class averages need a POS map (word -> possible tags)")
    tagsets = {name: set(tags) for name, tags in (classes or {}).items()}
    word_tags = {w: set(t) for w, t in (pos_map or {}).items()}
    sums: dict[str | None, Any] = {None: 0.0, **{name: 0.0 for name in tagsets}}
    counts = collections.Counter()
    missing: collections.Counter = collections.Counter()
    total = 0
    for line, matrix in iter_delay_matrices(grad_dir, delay, npz=npz):
        matrix = np.asarray(matrix, dtype=np.float64)
        total += 1
        sums[None] = sums[None] + matrix
        counts[None] += 1
        if not tagsets:
            continue
        tags = word_tags.get(line.word)
        if tags is None:
            missing[line.word] += 1
            continue
        for name, wanted in tagsets.items():
            if tags & wanted:
                sums[name] = sums[name] + matrix
                counts[name] += 1
    out: dict[str | None, LegacyAverage] = {}
    for name in sums:
        n = counts[name]
        out[name] = LegacyAverage(delay, name, sums[name] / n if n else None, n, total,
                                  missing if name is not None else collections.Counter())
    return out


def legacy_average(
    grad_dir: str | os.PathLike,
    delay: int,
    *,
    class_tags: Iterable[str] | None = None,
    class_name: str = "class",
    pos_map: Mapping[str, Iterable[str]] | None = None,
    npz: bool | None = None,
) -> LegacyAverage:
    """The original's ``avg_gradient_matrix.py GRAD_DIR DELAY [CLASS_FILE POS_MAP] [npz]``
    as a function: all matrices of the delay, or those of one class."""
    if class_tags is None:
        return legacy_averages(grad_dir, delay, npz=npz)[None]
    return legacy_averages(grad_dir, delay, classes={class_name: list(class_tags)},
                           pos_map=pos_map, npz=npz)[class_name]


def save_legacy_average(avg: LegacyAverage, grad_dir: str | os.PathLike) -> Path:
    """Write the average where the original does: ``GRAD_DIR/delay_<d>_avg[_<class>].npy``."""
    if avg.mean is None:
        raise LegacyError(f"class {avg.class_name!r} has no matrix at delay {avg.delay}: "
                          "nothing to save")
    path = Path(grad_dir) / avg.file_name()
    np.save(path, avg.mean)
    return path


def find_averages(grad_dir: str | os.PathLike, class_name: str | None = None) -> dict[int, Path]:
    """The ``delay_<d>_avg[_<class>].npy`` files of a directory, by delay."""
    grad_dir = Path(grad_dir)
    if not grad_dir.is_dir():
        raise LegacyError(f"directory not found: {grad_dir}")
    found = {}
    for f in grad_dir.glob("delay_*_avg*.npy"):
        m = _AVG_FILE.match(f.name)
        if m and m.group(2) == class_name:
            found[int(m.group(1))] = f
    if not found:
        pattern = f"delay_<d>_avg{'' if class_name is None else '_' + class_name}.npy"
        raise LegacyError(f"no {pattern} files in {grad_dir} (make them with legacy-average)")
    return dict(sorted(found.items()))


def legacy_svs(
    grad_dir: str | os.PathLike,
    normalize: Any,
    class_name: str | None = None,
    *,
    top: int = 5,
) -> SingularValueTable:
    """The original's ``calculate_svs.py GRAD_DIR D_NORM [class]``: for each averaged
    file, the top singular values of ``G @ L`` and their sum, by increasing delay
    (the original printed them in directory order).  ``normalize`` is L, its
    ``_D_norm_grad.npy`` file, a stats file, or ``None`` for raw matrices."""
    L = normalizer_matrix(normalize)
    rows = []
    for d, f in find_averages(grad_dir, class_name).items():
        G = np.asarray(load_npy(f), dtype=np.float64)
        if L is not None and G.shape[1] != L.shape[0]:
            raise LegacyError(f"{f} is {G.shape[0]} x {G.shape[1]} but the normalisation matrix "
                              f"is {L.shape[0]} x {L.shape[1]}")
        s = np.linalg.svd(G if L is None else G @ L, compute_uv=False)
        if top > len(s):
            raise LegacyError(f"top={top} but {f} has only {len(s)} singular values")
        row: dict[str, Any] = {"class": class_name or "all", "delay": d, "count": None}
        row.update({f"sv_{i + 1}": float(s[i]) for i in range(top)})
        row["sum"] = float(s.sum())
        rows.append(row)
    return SingularValueTable(top, L is not None, rows, normalization_info(normalize))


# =========================================================================================
# Writing
# =========================================================================================


def np2npz(folder: str | os.PathLike, *, remove: bool = False) -> Path:
    """The original's ``np2npz.py``: stack the numbered ``.npy`` files of ``folder``
    (numeric order) into ``folder/all.npz`` (``arr_0``, N x H x E).  ``remove``
    deletes the ``.npy`` files afterwards, as the original's README suggests."""
    folder = Path(folder)
    files = _numbered_npy(folder)
    if not files:
        raise LegacyError(f"{folder} holds no numbered .npy files to compress")
    stack = np.stack([load_npy(f) for _, f in files])
    target = write_atomic(folder / "all.npz", lambda tmp: np.savez_compressed(tmp, arr_0=stack),
                          suffix=".tmp.npz")
    if remove:
        for _, f in files:
            f.unlink()
    return target


__all__ = [
    "LegacyAverage", "LegacyError", "MappingLine", "delay_dirs", "find_averages",
    "iter_delay_matrices", "legacy_average", "legacy_averages", "legacy_svs", "np2npz",
    "read_mapping", "save_legacy_average",
]
