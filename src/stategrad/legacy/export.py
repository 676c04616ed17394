"""Writing the original's files from this package's matrices and results: the
per-pair folders of ``--export-original`` (:func:`export_original_layout`) and the
averaged ``delay_<d>_avg[_<class>][_norm].npy`` files of ``legacy-export``
(:func:`export_result_averages`), which the original's scripts (and
:mod:`stategrad.legacy.gradient_dirs`) read.
"""

from __future__ import annotations

import collections
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..analysis import normalizer_matrix
from ..gradients import GradientResult
from .gradient_dirs import LegacyError
from .normalization_files import save_legacy_stats

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


__all__ = ["EXPORT_TIME_STEP", "ExportSummary", "check_export_target", "export_original_layout",
           "export_result_averages"]
