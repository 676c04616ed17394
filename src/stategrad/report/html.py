"""The HTML report of one or several results.

:func:`build_report` writes ``report.html`` -- one self-contained file: figures
embedded as base64 SVG, inline CSS, no script, nothing fetched from the network
-- and every figure as PNG and SVG (plus the numbers behind it as CSV) under
``figures/``.  It draws what :mod:`stategrad.analysis` computes, section by section;
the markup is in :mod:`.page`, the sentence view in :mod:`.sentence_view`.
"""

from __future__ import annotations

import base64
import csv
import os
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..analysis import describe
from ..gradients import GradientResult
from . import plots as P
from .ablation_view import ablation_sections, plot_sentence_pair
from .page import PageFigure, page_html
from .sentence_view import SentenceMap, plot_sentence_map
from .style import ReportError, resolve_normalizer

#: Image types an extra figure may have, by suffix.
IMAGE_TYPES = {".png": "image/png", ".svg": "image/svg+xml", ".jpg": "image/jpeg",
               ".jpeg": "image/jpeg", ".gif": "image/gif"}

Table = tuple[list[str], list[list[str]]]


@dataclass
class ExtraFigure:
    """A figure made elsewhere (another tool, a notebook) to carry in the report, after the
    report's own figures: the image file, its title and caption, and optionally the CSV
    of the numbers behind it (shown under the figure like the report's own tables)."""

    image: Path
    title: str
    caption: str = ""
    table: Path | None = None
    #: Shown first, before the report's own figures (what the reader should see first).
    lead: bool = False


@dataclass
class _Plan:
    """What every section needs to know: the results, their labels and classes, and how
    to draw and band them."""

    results: list[GradientResult]
    labels: list[str]
    classes: list[str]
    ci: str
    ci_used: str  # "none" when no result has blocks
    level: float
    n_boot: int
    seed: int
    log_scale: bool | None
    band_text: str

    @property
    def has_band(self) -> bool:
        return self.ci_used != "none"


class _Figures:
    """The report's figures, written to ``fig_dir`` (PNG, SVG and CSV) as they are added."""

    def __init__(self, fig_dir: Path):
        self.fig_dir = fig_dir
        self.items: list[PageFigure] = []

    def add(self, key: str, title: str, caption: str, fig, table: Table) -> None:
        files = P.save_figure(fig, self.fig_dir / key)
        svg = (self.fig_dir / f"{key}.svg").read_bytes()
        files.append(_write_csv(self.fig_dir / f"{key}.csv", *table))
        self.items.append(PageFigure(key, title, caption, svg, files, *table))


def _fmt(v: float) -> str:
    return "" if not np.isfinite(v) else f"{v:.4g}"


def plain_label(label: str) -> str:
    """A figure label without matplotlib's TeX markup, for tables and CSV headers:
    ``$s_{1}$`` -> ``s_1``."""
    if "$" not in label:
        return label
    return re.sub(r"\$([^$]*)\$",
                  lambda m: m.group(1).replace("{", "").replace("}", "").replace("\\", ""), label)


def _curve_table(curves: Sequence[P.Curve], xname: str, with_band: bool) -> Table:
    head = [xname]
    for c in curves:
        label = plain_label(c.label)
        head.append(label)
        if with_band:
            head += [f"{label} lower", f"{label} upper"]
    xs = sorted({float(x) for c in curves for x in c.x})
    rows = []
    for x in xs:
        row = [f"{x:g}"]
        for c in curves:
            idx = np.flatnonzero(c.x == x)
            for a in ((c.y, c.lower, c.upper) if with_band else (c.y,)):
                row.append(_fmt(float(a[idx[0]])) if idx.size and a is not None else "")
        rows.append(row)
    return head, rows


def _write_csv(path: Path, head: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(head)
        w.writerows(rows)
    return path


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
    extras = [_check_extra(x) for x in extra_figures]
    labels = _result_labels(results, labels)
    _check_embedding_space(results, labels, L, bool(difference_vectors))
    plan = _plan(results, labels, classes, ci, level, n_boot, seed, log_scale)
    spectrum_delays = _spectrum_delays(results, spectrum_delays)
    out = Path(out_dir)
    figures = _Figures(out / "figures")
    figures.fig_dir.mkdir(parents=True, exist_ok=True)

    for i, extra in enumerate(extras):
        if extra.lead:
            figures.items.append(_extra_figure(extra, f"extra_{i + 1}", figures.fig_dir))
    if identity is not None:
        _identity_section(figures, plan, L, *identity)
    if difference_vectors:
        _direction_sections(figures, plan, L, difference_vectors, subspace_k, difference_class)
    _spectral_sections(figures, plan, None, top_k, spectrum_delays)
    if L is not None:
        _spectral_sections(figures, plan, L, top_k, spectrum_delays)
    if compare:
        _compare_section(figures, plan, L, compare)
    if ablation is not None:
        ablation_sections(figures.add, results[0], ablation, classes=plan.classes, ci=plan.ci,
                          level=level, n_boot=n_boot, seed=seed, band_text=plan.band_text)
    for i, smap in enumerate(sentences):
        _sentence_section(figures, i, smap)
    for i, extra in enumerate(extras):
        if not extra.lead:
            figures.items.append(_extra_figure(extra, f"extra_{i + 1}", figures.fig_dir))

    page = page_html(title, results, labels, sources, plan.classes, figures.items,
                     _band_notes(results, labels, ci), L, normalisation_source, plan.ci_used, level)
    path = out / "report.html"
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


def _plan(results, labels, classes, ci, level, n_boot, seed, log_scale) -> _Plan:
    classes = _choose_classes(results, labels, classes)
    # Bands only where there are blocks; none at all when no result has them.
    ci_used = "none" if ci != "none" and not any(r.has_blocks for r in results) else ci
    return _Plan(results, labels, classes, ci, ci_used, level, n_boot, seed, log_scale,
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


# --- sections -------------------------------------------------------------------------------

def _compare_section(figures: _Figures, plan: _Plan, L: np.ndarray | None,
                     pair: tuple[str, str]) -> None:
    """The paired difference of two classes' memory curves on the same blocks."""
    curves = P.paired_difference_curves(plan.results, plan.labels, pair, normalize=L,
                                        ci=plan.ci, level=plan.level, n_boot=plan.n_boot,
                                        seed=plan.seed)
    what = "Gbar_d L" if L is not None else "Gbar_d"
    figures.add("compare", f"Paired difference: {pair[0]} - {pair[1]}",
                f"Sum of the singular values of {what} of {pair[0]} minus that of {pair[1]}, "
                f"with its {100 * plan.level:g}% interval over the same blocks (paired: both "
                "classes resampled together, so what the text does to both cancels). Where "
                "the band excludes 0 the classes differ.",
                P.plot_curves(curves, ylabel="difference of sums of singular values",
                              log_scale=False),
                _curve_table(curves, "delay", True))


def _spectral_sections(figures: _Figures, plan: _Plan, L: np.ndarray | None, top_k: int,
                       spectrum_delays: Sequence[int]) -> None:
    """Memory curves, top-k singular values, spectra and the class heat map, raw
    (``L`` None) or normalised."""
    variant = "normalised" if L is not None else "raw"
    sfx = " (normalised)" if L is not None else ""
    what = "Gbar_d L" if L is not None else "Gbar_d"
    several = len(plan.results) > 1
    reports = P.memory_reports(plan.results, plan.labels, normalize=L, classes=plan.classes,
                               ci=plan.ci, level=plan.level, n_boot=plan.n_boot, seed=plan.seed)
    curves = P.memory_report_curves(reports)
    figures.add(f"memory_{variant}", f"Memory curves{sfx} (the papers' measure)",
                f"Sum of the singular values of {what} against delay, one line per class"
                f"{' and result' if several else ''}: the papers' memory curve, kept for "
                "comparison; on planted memory it can order classes wrongly "
                f"(docs/synthetic-validation.md). {plan.band_text}",
                P.plot_curves(curves, ylabel=P.SV_SUM_LABEL, log_scale=plan.log_scale,
                              title=P.NORMALISED_TITLE if L is not None else None),
                _curve_table(curves, "delay", plan.has_band))
    entries = [(lab, P.sv_replicates(r, normalize=L, classes=["all"], ci=plan.ci,
                                     n_boot=plan.n_boot, seed=plan.seed))
               for r, lab in zip(plan.results, plan.labels, strict=True)]
    curves = P.topk_curves(entries, top_k, level=plan.level)
    k_shown = min([top_k] + [min(x.hidden_size, x.embedding_size) for x in plan.results])
    figures.add(f"topk_{variant}", f"Top {k_shown} singular values{sfx}",
                f"The {k_shown} largest singular values of {what} (all words) against delay. "
                f"{plan.band_text}",
                P.plot_curves(curves, ylabel="singular value" + sfx, log_scale=plan.log_scale),
                _curve_table(curves, "delay", plan.has_band))
    curves = P.spectrum_curves(entries, spectrum_delays, level=plan.level)
    figures.add(f"spectra_{variant}", f"Singular value spectra{sfx}",
                f"All singular values of {what} (all words) by rank at delays "
                f"{', '.join(map(str, spectrum_delays))}; log scale. {plan.band_text}",
                P.plot_curves(curves, xlabel="rank", ylabel="singular value" + sfx, log_scale=True),
                _curve_table(curves, "rank", plan.has_band))
    _heatmap_section(figures, plan, [P.memory_matrix(rep) for _, rep in reports], variant, what,
                     normalised=L is not None)


def _heatmap_section(figures: _Figures, plan: _Plan, mats: list[np.ndarray], variant: str,
                     what: str, normalised: bool) -> None:
    several = len(plan.results) > 1
    head = ["delay"] + [f"{lab}: {c}" if several else c for lab in plan.labels for c in plan.classes]
    rows = [[str(d)] + [_fmt(m[j, d]) if d < m.shape[1] else "" for m in mats
                        for j in range(len(plan.classes))] for d in range(max(m.shape[1] for m in mats))]
    width = min(m.shape[1] for m in mats)
    sfx = " (normalised)" if normalised else ""
    figures.add(f"heatmap_{variant}", f"Memory per class{sfx} (the papers' measure)",
                f"Sum of the singular values of {what} per class (rows) and delay (columns)"
                f"{', one panel per result' if several else ''}.",
                P.plot_heatmap([m[:, :width] for m in mats], plan.classes,
                               titles=plan.labels if several else None, log_scale=plan.log_scale,
                               colorbar_label=P.SV_SUM_LABEL + (" (norm.)" if normalised else "")),
                (head, rows))


def _identity_section(figures: _Figures, plan: _Plan, L: np.ndarray | None, embeddings,
                      class_words: Mapping[str, Sequence[int]]) -> None:
    """Identity memory of each class (sum of singular values of Gbar L P_c), with bands."""
    from ..analysis import identity_table

    curves = []
    for i, (result, label) in enumerate(zip(plan.results, plan.labels, strict=True)):
        ci = plan.ci_used if result.has_blocks else None
        table = identity_table(result, embeddings, class_words, L, interval=ci,
                               level=plan.level, n_boot=plan.n_boot, seed=plan.seed)
        for j, name in enumerate(class_words):
            y = table.curve(name)
            lower = table.curve(name, "identity_lower") if ci else None
            upper = table.curve(name, "identity_upper") if ci else None
            curves.append(P.Curve(name if len(plan.results) == 1 else f"{label}: {name}",
                                  np.arange(len(y)), y, lower=lower, upper=upper, color=j,
                                  style=i))
    what = "Gbar_{d,c} L P_c" if L is not None else "Gbar_{d,c} P_c"
    figures.add("identity_memory", "Identity memory per class",
                f"Sum of the singular values of {what} against delay, P_c the directions in "
                "which the words of class c differ: how strongly the state still depends on "
                "which word of the class was read. This is the class measure that recovers "
                "planted memory spans (docs/synthetic-validation.md); the memory curves below "
                f"are the papers'. {plan.band_text}",
                P.plot_curves(curves, ylabel="identity memory", log_scale=plan.log_scale),
                _curve_table(curves, "delay", plan.has_band))


def _direction_sections(figures: _Figures, plan: _Plan, L: np.ndarray | None,
                        difference_vectors: Mapping[str, np.ndarray], subspace_k: int,
                        class_name: str = "all") -> None:
    """Property memory (absolute amount kept, to delay 0), then relative memory and
    subspace cosine (as in the papers) of the whitened difference vectors."""
    names = list(difference_vectors)
    vecs = np.stack([np.asarray(difference_vectors[n], dtype=np.float64).ravel() for n in names])
    E = plan.results[0].embedding_size
    if vecs.shape[1] != E:
        raise ReportError(f"difference vectors have {vecs.shape[1]} components; the embeddings {E}")
    dirs = P.whiten_directions(vecs, L)
    what = "Gbar_d L" if L is not None else "Gbar_d"
    entries = [(lab, P.direction_replicates(r, dirs, normalize=L, k=subspace_k, ci=plan.ci,
                                            n_boot=plan.n_boot, seed=plan.seed,
                                            class_name=class_name))
               for r, lab in zip(plan.results, plan.labels, strict=True)]
    norm_note = ("n = Z v / |Z v| with Z = L^-1" if L is not None
                 else "n = v / |v| (no normalisation given)")
    words = "all words" if class_name == "all" else f"words of class {class_name}"
    curves = P.direction_curves(entries, names, kind="absolute_ratio", level=plan.level)
    figures.add("property_memory", "Property memory",
                f"|{what} n| / |{what} n| at delay 0 against delay for each difference vector v, "
                f"{norm_note}; {words}. The amount of the property kept: it falls where the "
                f"property stops being kept (docs/synthetic-validation.md). {plan.band_text}",
                P.plot_curves(curves, ylabel="property kept (ratio to delay 0)"),
                _curve_table(curves, "delay", plan.has_band))
    curves = P.direction_curves(entries, names, kind="relative", level=plan.level)
    curves += _null_curves(plan, vecs, names, L, class_name, subspace_k)
    figures.add("relative_memory", "Relative memory (as in the papers)",
                f"|{what} n| / s_1({what}) against delay for each difference vector v, {norm_note}; "
                f"{words}. Dividing by s_1 cancels a fall that every direction shares, so it "
                f"can stay flat where the property is forgotten. Dotted ('random direction'): "
                f"the mean for a uniformly random unit direction, with the central "
                f"{100 * plan.level:g}% of its values as band. {plan.band_text}",
                P.plot_curves(curves, ylabel="relative memory"),
                _curve_table(curves, "delay", plan.has_band))
    curves = P.direction_curves(entries, names, kind="cosine", level=plan.level)
    figures.add("subspace_cosine", "Subspace cosine (as in the papers)",
                f"|V_k^T n|: cosine between n and the top {subspace_k} right singular vectors of "
                f"{what} against delay ({norm_note}). {plan.band_text}",
                P.plot_curves(curves, ylabel=f"cosine with top-{subspace_k} subspace"),
                _curve_table(curves, "delay", plan.has_band))


def _null_curves(plan: _Plan, vecs: np.ndarray, names: Sequence[str], L: np.ndarray | None,
                 class_name: str, subspace_k: int) -> list[P.Curve]:
    """The relative memory of a uniformly random direction (``relative_null``), per result;
    the same for every difference vector, so drawn once, in the first vector's colour."""
    from .. import analysis

    if L is None:
        return []
    curves = []
    for result, label in zip(plan.results, plan.labels, strict=True):
        k = min(subspace_k, result.hidden_size, result.embedding_size)
        rows = analysis.relative_memory(result, vecs[0], L, c=class_name, top_k=k,
                                        level=plan.level).rows
        y, lo, hi = (np.array([np.nan if r[k] is None else r[k] for r in rows])
                     for k in ("relative_null", "relative_null_lower", "relative_null_upper"))
        curves.append(P.Curve("random direction" if len(plan.results) == 1
                              else f"{label}: random direction", np.arange(len(y)), y, lo, hi,
                              color=len(names), style=2))
    return curves


def _sentence_section(figures: _Figures, i: int, smap: SentenceMap) -> None:
    T = len(smap.words)
    head = ["earlier word t \\ later word k"] + [f"{k}:{w}" for k, w in enumerate(smap.words)]
    rows = [[f"{t}:{smap.words[t]}"] + [_fmt(smap.matrix[t, k]) for k in range(T)] for t in range(T)]
    unk = f" Not in the vocabulary (read as <unk>): {', '.join(smap.unknown)}." if smap.unknown else ""
    figures.add(f"sentence_{i + 1}", f"Sentence view {i + 1}",
                f"{smap.measure_label} for every pair of an earlier word t (rows) and a later word k "
                f"(columns): how strongly the input at t still moves the {smap.state} state at k. "
                f"Computed exactly for this sentence from the zero state.{unk}",
                plot_sentence_map(smap), (head, rows))
    if smap.ablation is not None:
        rows = [[f"{t}:{smap.words[t]}"] + [_fmt(smap.ablation[t, k]) for k in range(T)]
                for t in range(T)]
        figures.add(f"sentence_{i + 1}_ablation", f"Sentence view {i + 1}: gradients and ablation",
                    f"Left, the gradient map above; right, {smap.ablation_label} for the same "
                    "cells: how far the prediction made at k moves when the word at t is "
                    "replaced.", plot_sentence_pair(smap.matrix, smap.ablation, smap.words,
                                                    gradient_label=smap.measure_label,
                                                    ablation_label="KL (nats)"), (head, rows))


# --- extra figures and labels ---------------------------------------------------------------

def _check_extra(extra: ExtraFigure) -> ExtraFigure:
    """Checked before any figure is drawn, so a wrong path fails at once."""
    image = Path(extra.image)
    if not image.is_file():
        raise ReportError(f"extra figure not found: {image}")
    if image.suffix.lower() not in IMAGE_TYPES:
        raise ReportError(f"extra figure {image}: unknown image type {image.suffix!r}; "
                          f"use one of {', '.join(sorted(IMAGE_TYPES))}")
    table = Path(extra.table) if extra.table is not None else None
    if table is not None and not table.is_file():
        raise ReportError(f"table of extra figure {image.name} not found: {table}")
    return ExtraFigure(image, extra.title, extra.caption, table, extra.lead)


def _extra_figure(extra: ExtraFigure, key: str, fig_dir: Path) -> PageFigure:
    data = extra.image.read_bytes()
    copied = fig_dir / f"{key}{extra.image.suffix.lower()}"
    shutil.copyfile(extra.image, copied)
    files = [copied]
    if copied.suffix != ".svg":
        files.append(_svg_wrapping(data, IMAGE_TYPES[copied.suffix], fig_dir / f"{key}.svg", extra.image))
    head: list[str] = []
    rows: list[list[str]] = []
    if extra.table is not None:
        with open(extra.table, newline="", encoding="utf-8") as handle:
            lines = list(csv.reader(handle))
        head, rows = (lines[0], lines[1:]) if lines else ([], [])
        files.append(fig_dir / f"{key}.csv")
        shutil.copyfile(extra.table, files[-1])
    return PageFigure(key, extra.title, extra.caption, data, files, head, rows,
                      IMAGE_TYPES[extra.image.suffix.lower()])


def _svg_wrapping(data: bytes, mime: str, path: Path, source: Path) -> Path:
    """An SVG of a carried raster image: the same pixels embedded at their own size (a
    figure made elsewhere has no vector form to recover), so that ``figures/`` holds an
    SVG of every figure, as for the report's own."""
    import io
    import xml.sax.saxutils as sax

    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            width, height = im.size
    except Exception as exc:  # noqa: BLE001  (any unreadable image: one clear message)
        raise ReportError(f"extra figure {source}: cannot read the image ({exc})") from exc
    href = f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
    path.write_text(
        '<?xml version="1.0" encoding="utf-8"?>\n'
        f'<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}">\n'
        f"<title>{sax.escape(source.name)}</title>\n"
        f'<image width="{width}" height="{height}" href="{href}" xlink:href="{href}"/>\n</svg>\n',
        encoding="utf-8")
    return path


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
