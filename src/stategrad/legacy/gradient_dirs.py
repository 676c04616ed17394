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

Writing (:func:`export_original_layout`, :func:`np2npz`,
:func:`export_result_averages`) produces those same files from this package's
per-pair matrices and results, so the original's scripts (and this module) can
read them.
"""

from __future__ import annotations

import collections
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
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
from ..gradients import GradientResult
from .normalization_files import save_legacy_stats

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


# The folder ``export_original_layout`` writes under when exporting pairs of any time
# step: the original's avg_gradient_matrix.py and avg_gradient_matrix_pos.py read
# ``GRAD_DIR/timestep_*/delay_<d>/`` (their line 19 and 26), so the export lives one
# level down, in a ``timestep_*`` folder, and GRAD_DIR is what those scripts are given.
EXPORT_TIME_STEP = "all"


def check_export_target(out_dir: str | os.PathLike) -> None:
    """Refuse an export folder that already holds ``timestep_*`` folders: the original's
    averaging scripts read every ``timestep_*/delay_<d>/`` under it, so old matrices
    would be averaged with the new ones.  Checked before any computing."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise LegacyError(f"--export-original {out_dir} exists and is not a folder")
    taken = sorted(p.name for p in out_dir.glob("timestep_*")) if out_dir.is_dir() else []
    if taken:
        raise LegacyError(
            f"--export-original {out_dir} already holds {', '.join(taken[:3])}: the original's "
            "avg_gradient_matrix.py averages every timestep_*/delay_<d>/ under it, old and new "
            "together; choose an empty or new folder")


@dataclass
class ExportSummary:
    out_dir: Path
    matrices: int
    per_delay: dict[int, int]


def export_original_layout(
    out_dir: str | os.PathLike,
    matrices: Iterable[tuple[int, int, np.ndarray]],
    tokens: Sequence[int] | np.ndarray,
    vocab: Any,
    time_step: int | str | None = None,
) -> ExportSummary:
    """Write per-pair gradient matrices in the original's layout.

    ``matrices`` yields ``(t, d, G)`` with ``G = d s_(t+d) / d x_t`` (H x E) for the
    text ``tokens`` (word ids of ``vocab``, a Vocabulary or word list).  Each goes
    to ``out_dir/delay_<d>/<counter>.npy`` (under ``out_dir/timestep_<time_step>/``
    when ``time_step`` is given, the original README's one folder per time step, the
    layout its avg_gradient_matrix*.py scripts read; ``stategrad gradients
    --export-original`` uses :data:`EXPORT_TIME_STEP`), with the line ``counter<TAB>word_t<TAB>w_t-w_(t+1)-...-w_(t+d)-`` in that
    folder's ``mapping.txt``.

    Counter convention: ``counter = t + d``, the position of the state in the
    text.  As in the original (where the counter is the segment index and so
    names the state at ``tau``), the same counter in different ``delay_<d>``
    folders names the same state, each folder holding its derivative with
    respect to a different earlier input.  Counters within a folder need not be
    contiguous (sampled pairs); mapping lines are written in increasing counter
    order, the order :func:`np2npz` stacks the files in, so ``all.npz``'s i-th
    array belongs to the i-th mapping line.
    """
    out_dir = Path(out_dir)
    base = out_dir if time_step is None else out_dir / f"timestep_{time_step}"
    words = list(getattr(vocab, "words", vocab))
    tokens = np.asarray(tokens)
    lines: dict[int, dict[int, str]] = collections.defaultdict(dict)
    for t, d, G in matrices:
        t, d = int(t), int(d)
        k = t + d
        if t < 0 or d < 0 or k >= len(tokens):
            raise LegacyError(f"pair (t={t}, d={d}) lies outside the text of {len(tokens)} tokens")
        if k in lines[d]:
            raise LegacyError(f"two matrices for t={t}, d={d}")
        folder = base / f"delay_{d}"
        if d not in lines or not lines[d]:
            folder.mkdir(parents=True, exist_ok=True)
        np.save(folder / f"{k}.npy", np.asarray(G))
        context = "".join(words[int(w)] + "-" for w in tokens[t : k + 1])
        lines[d][k] = f"{k}\t{words[int(tokens[t])]}\t{context}\n"
    for d, entries in lines.items():
        with open(base / f"delay_{d}" / "mapping.txt", "w", encoding="utf-8") as handle:
            for k in sorted(entries):
                handle.write(entries[k])
    per_delay = {d: len(e) for d, e in sorted(lines.items())}
    return ExportSummary(base, sum(per_delay.values()), per_delay)


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


def export_result_averages(
    result: GradientResult,
    out_dir: str | os.PathLike,
    *,
    classes: Iterable[int | str] | None = None,
    normalize: Any = None,
) -> list[Path]:
    """Write a result's average gradients as the original's averaged files:
    ``delay_<d>_avg.npy`` for class ``all`` and ``delay_<d>_avg_<class>.npy`` for the
    others, which ``calculate_svs.py`` and ``cos_subspace_diff_vector.py`` read.
    (Delay, class) cells without occurrences get no file.

    ``relative_memory.py`` reads only pre-normalised averages,
    ``delay_<d>_avg[_<class>]_norm.npy`` = ``G @ L`` (its glob, line 13-15 of the
    original); with ``normalize`` (statistics, their file or L) those are written
    too, and, when ``normalize`` holds the statistics, their four files as
    ``emb_mean.npy``, ``emb_covar.npy``, ``emb_D_norm_grad.npy`` (L) and
    ``emb_Z_norm_emb.npy`` (Z, the file relative_memory.py needs).

    The original's scripts take every file their glob matches, so a file this export
    does not write but a glob would pick up (left from an earlier export), or class
    names one of whose globs matches another class's files, are refused.
    """
    from ..analysis import EmbeddingStats, load_embedding_stats

    out_dir = Path(out_dir)
    names = result.classes if classes is None else [
        result.classes[result.class_index(c)] for c in classes]
    L = normalizer_matrix(normalize)
    if L is not None and L.shape != (result.embedding_size,) * 2:
        raise LegacyError(f"the normalisation matrix is {L.shape[0]} x {L.shape[1]} but the "
                          f"result's embedding size is {result.embedding_size}")
    kinds = [""] if L is None else ["", "_norm"]
    plan: dict[Path, tuple[str, int, str]] = {}
    for name in names:
        if name != "all" and not re.fullmatch(r"[\w.+-]+", name):
            raise LegacyError(f"class name {name!r} cannot be part of a file name")
        for d in result.delays:
            if result.count(int(d), name) == 0:
                continue
            for kind in kinds:
                plan[out_dir / f"delay_{int(d)}_avg{_suffix(name)}{kind}.npy"] = (name, int(d), kind)
    _check_original_globs(out_dir, names, plan)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for path, (name, d, kind) in plan.items():
        G = result.mean(d, name)
        np.save(path, G if kind == "" else G @ L)
        written.append(path)
    if L is not None and not isinstance(normalize, np.ndarray):
        stats = normalize if isinstance(normalize, EmbeddingStats) else None
        if stats is None and not str(normalize).endswith(".npy"):
            stats = load_embedding_stats(normalize)
        if stats is not None:
            written.extend(save_legacy_stats(stats, out_dir / "emb"))
    return written


def _suffix(class_name: str) -> str:
    return "" if class_name == "all" else f"_{class_name}"


def _check_original_globs(out_dir: Path, names: Sequence[str],
                          plan: Mapping[Path, tuple[str, int, str]]) -> None:
    """Refuse files that the original's globs would mix up (see export_result_averages).

    The globs: ``delay_*_avg[_<class>].npy`` (calculate_svs.py lines 15-19,
    cos_subspace_diff_vector.py lines 14-18) and ``delay_*_avg[_<class>]_norm.npy``
    (relative_memory.py lines 11-15).  ``*`` matches any characters, underscores too."""
    import fnmatch

    globs = {(n, k): f"delay_*_avg{_suffix(n)}{k}.npy" for n in names for k in ("", "_norm")}
    for path, (name, _, kind) in plan.items():
        for (other, other_kind), pattern in globs.items():
            if (other, other_kind) != (name, kind) and fnmatch.fnmatchcase(path.name, pattern):
                raise LegacyError(
                    f"{path.name} (class {name!r}) would also be read by the original's glob "
                    f"{pattern} for class {other!r}: export these classes to separate folders")
    if not out_dir.is_dir():
        return
    stale = sorted(f.name for f in out_dir.glob("delay_*_avg*.npy") if f not in plan
                   and any(fnmatch.fnmatchcase(f.name, pattern) for pattern in globs.values()))
    if stale:
        shown = ", ".join(stale[:5]) + (" ..." if len(stale) > 5 else "")
        raise LegacyError(
            f"{out_dir} already holds {len(stale)} file(s) the original's scripts would read "
            f"with these ({shown}) that this export does not replace: remove them or "
            "choose an empty folder")


__all__ = [
    "EXPORT_TIME_STEP", "ExportSummary", "LegacyAverage", "check_export_target", "LegacyError", "MappingLine", "delay_dirs",
    "export_original_layout", "export_result_averages", "find_averages", "iter_delay_matrices",
    "legacy_average", "legacy_averages", "legacy_svs", "np2npz", "read_mapping",
    "save_legacy_average",
]
