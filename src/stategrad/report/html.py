"""The HTML report of one or several results.

:func:`build_report` writes ``report.html`` -- one self-contained file: figures
embedded as base64 SVG, inline CSS, no script, nothing fetched from the network
-- and every figure as PNG and SVG (plus the numbers behind it as CSV) under
``figures/``.  It draws what :mod:`stategrad.analysis` computes, section by section
(:mod:`.sections`); the markup is in :mod:`.page`, the sentence view in
:mod:`.sentence_view`, the figures made elsewhere in :mod:`.extras`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from ..analysis import describe
from ..gradients import GradientResult
from . import plots as P
from .ablation_view import ablation_sections
from .extras import ExtraFigure, add_extras, check_extra
from .page import page_html
from .sections import (
    Figures,
    Plan,
    compare_section,
    direction_sections,
    identity_section,
    sentence_section,
    spectral_sections,
)
from .sentence_view import SentenceMap
from .style import ReportError, resolve_normalizer


def build_report(
    results: Sequence[GradientResult],
    out_dir: str | os.PathLike,
    *,
    labels: Sequence[str] | None = None,
    sources: Sequence[str] | None = None,
    normalize=None,
    normalisation_source: str | None = None,
    classes: Sequence[str] | None = None,
    top_k: int = 5,
    spectrum_delays: Sequence[int] | None = None,
    log_scale: bool | None = None,
    ci: str = "jackknife",
    level: float = 0.95,
    n_boot: int = 200,
    seed: int = 0,
    difference_vectors: Mapping[str, np.ndarray] | None = None,
    difference_class: str = "all",
    identity: tuple[np.ndarray, Mapping[str, Sequence[int]]] | None = None,
    subspace_k: int = 5,
    sentences: Sequence[SentenceMap] = (),
    extra_figures: Sequence[ExtraFigure] = (),
    title: str = "State gradient report",
    L: np.ndarray | None = None,
    compare: tuple[str, str] | None = None,
    ablation=None,
) -> Path:
    """Write ``out_dir/report.html`` and ``out_dir/figures/*.{png,svg,csv}``; return the
    report's path.

    Several results are overlaid on the same axes (labels from ``labels``, else from
    their metadata).  ``normalize`` (statistics, the Cholesky factor L of the embedding
    covariance, or a stats file; ``L=`` is its deprecated name) adds the normalised
    figures.  ``log_scale`` True or False forces the memory axes' scale; None chooses log
    where the values span more than two decades.  ``difference_vectors`` (name -> embedding-space vector) add the relative
    memory and subspace cosine curves, led by the absolute amount kept (ratio to delay 0),
    of the gradients of ``difference_class``.  ``identity`` = (embeddings (V, E), class name
    -> word ids) leads the report with the identity memory of those classes.
    ``extra_figures`` are copied into ``figures/`` and shown after the report's own.
    ``compare`` (two class names) adds the paired difference of their memory curves on the
    same blocks.  ``ablation`` (an ablation result of the same model) adds its curves
    beside the first result's memory curves and their correlation."""
    L = resolve_normalizer(normalize, L)
    results = list(results)
    if not results:
        raise ReportError("no results to report")
    extras = [check_extra(x) for x in extra_figures]
    labels = _result_labels(results, labels)
    _check_embedding_space(results, labels, L, bool(difference_vectors))
    plan = _plan(results, labels, classes, ci, level, n_boot, seed, log_scale)
    spectrum_delays = _spectrum_delays(results, spectrum_delays)
    figures = Figures(Path(out_dir) / "figures")

    add_extras(figures.items, extras, figures.fig_dir, lead=True)
    if identity is not None:
        identity_section(figures, plan, L, *identity)
    if difference_vectors:
        direction_sections(figures, plan, L, difference_vectors, subspace_k, difference_class)
    spectral_sections(figures, plan, None, top_k, spectrum_delays)
    if L is not None:
        spectral_sections(figures, plan, L, top_k, spectrum_delays)
    if compare:
        compare_section(figures, plan, L, compare)
    if ablation is not None:
        ablation_sections(figures.add, results[0], ablation, classes=plan.classes, ci=plan.ci,
                          level=level, n_boot=n_boot, seed=seed, band_text=plan.band_text)
    for i, smap in enumerate(sentences):
        sentence_section(figures, i, smap)
    add_extras(figures.items, extras, figures.fig_dir, lead=False)

    page = page_html(title, results, labels, sources, plan.classes, figures.items,
                     _band_notes(results, labels, ci), L, normalisation_source, plan.ci_used, level)
    path = Path(out_dir) / "report.html"
    path.write_text(page, encoding="utf-8")
    return path


# --- checks and the plan --------------------------------------------------------------------

def _result_labels(results: list[GradientResult], labels: Sequence[str] | None) -> list[str]:
    if labels is not None and len(labels) != len(results):
        raise ReportError(f"{len(labels)} labels for {len(results)} results")
    labels = list(labels) if labels is not None else [P.result_label(r, i) for i, r in enumerate(results)]
    return _unique(labels)


def _check_embedding_space(results: list[GradientResult], labels: list[str],
                           L: np.ndarray | None, directions: bool) -> None:
    E = results[0].embedding_size
    for r, lab in zip(results, labels, strict=True):
        if r.embedding_size != E and (L is not None or directions):
            raise ReportError(f"result {lab!r} has embedding size {r.embedding_size}, others {E}: "
                              "normalisation and difference vectors need one embedding space")
    if L is not None and L.shape != (E, E):
        raise ReportError(f"normalisation statistics are {L.shape[0]}-dimensional; the results' "
                          f"embeddings are {E}-dimensional (statistics of another model?)")


def _plan(results, labels, classes, ci, level, n_boot, seed, log_scale) -> Plan:
    classes = _choose_classes(results, labels, classes)
    # Bands only where there are blocks; none at all when no result has them.
    ci_used = "none" if ci != "none" and not any(r.has_blocks for r in results) else ci
    return Plan(results, labels, classes, ci, ci_used, level, n_boot, seed, log_scale,
                describe(ci_used, level))


def _band_notes(results: list[GradientResult], labels: list[str], ci: str) -> list[str]:
    missing = [lab for r, lab in zip(results, labels, strict=True) if not r.has_blocks]
    if ci == "none" or not missing:
        return []
    return [f"No confidence bands for {', '.join(missing)}: the result has no per-block "
            "sums (compute it with a block size to get them)."]


def _spectrum_delays(results: list[GradientResult], delays: Sequence[int] | None) -> list[int]:
    min_delay = min(r.max_delay for r in results)
    if delays is None:
        return P.default_spectrum_delays(min_delay)
    bad = [d for d in delays if not 0 <= d < min_delay]
    if bad:
        raise ReportError(f"spectrum delays {bad} are outside 0..{min_delay - 1}")
    return list(delays)


def _unique(labels: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for lab in labels:
        n = seen.get(lab, 0)
        seen[lab] = n + 1
        out.append(lab if n == 0 else f"{lab} ({n + 1})")
    return out


def _choose_classes(results: Sequence[GradientResult], labels: Sequence[str],
                    classes: Sequence[str] | None) -> list[str]:
    if classes is None:
        common = [c for c in results[0].classes if all(c in r.classes for r in results[1:])]
        return common
    classes = list(classes)
    for r, lab in zip(results, labels, strict=True):
        missing = [c for c in classes if c not in r.classes]
        if missing:
            raise ReportError(f"result {lab!r} has no class {missing[0]!r}; its classes are {r.classes}")
    return classes
