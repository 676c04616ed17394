"""Figures of state gradient results, in the conventions of the field.

Every figure is a :class:`matplotlib.figure.Figure` made without pyplot, in the style of
:mod:`.style`.  The functions return the Figure, so the data drawn can be read back
(``fig.axes[0].lines``) and checked.

Two layers:

* data: :class:`Curve` lists made from what :mod:`stategrad.analysis` computes
  (:mod:`.curves`);
* drawing: :func:`plot_curves`, :func:`plot_heatmap`, :func:`plot_sentence`;

plus one-call helpers that take results directly (:func:`plot_memory_curves`,
:func:`plot_topk`, :func:`plot_spectra`, :func:`plot_class_heatmap`).
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from ..analysis import Replicates, normalizer_matrix
from ..gradients import GradientResult
from .curves import (  # noqa: F401  (the data layer, re-exported: figures are made from it)
    class_memory_matrix,
    default_spectrum_delays,
    direction_curves,
    direction_replicates,
    memory_matrix,
    memory_report_curves,
    memory_reports,
    paired_difference_curves,
    result_label,
    spectrum_curves,
    sv_replicates,
    topk_curves,
    whiten_directions,
)
from .style import (  # noqa: F401  (re-exported: the figures' look and files)
    COLUMN_WIDTH_IN,
    DELAY_LABEL,
    HEATMAP_CMAP,
    LINESTYLES,
    LOG_SPAN,
    MARKERS,
    NORMALISED_TITLE,
    OKABE_ITO,
    STYLE,
    SV_SUM_LABEL,
    Curve,
    PlotError,
    auto_log,
    new_figure,
    pen,
    save_figure,
    write_figure,
)

# --- drawing --------------------------------------------------------------------------------


def text_inches(text: str, size: float = 8.0) -> float:
    """The width of ``text`` set in the figures' font at ``size`` pt, in inches."""
    from matplotlib.textpath import TextPath

    with matplotlib.rc_context(STYLE):
        return TextPath((0, 0), text, size=size).get_extents().width / 72.0


def _legend_columns(fig: Figure, labels: Sequence[str]) -> int:
    """As many legend columns (at most 3) as fit the figure's width."""
    em = STYLE["legend.fontsize"] / 72.0
    column = max(text_inches(str(x)) for x in labels) + (2.2 + 0.8 + 2.0) * em
    return int(max(1, min(3, (fig.get_figwidth() - 0.1 + 2.0 * em) // column)))


def _legend(fig: Figure, ax, n: int) -> None:
    if n == 0:
        return
    with matplotlib.rc_context(STYLE):
        if n <= 4:
            ax.legend(frameon=False, handlelength=2.2)
        else:
            # Many series: a legend below the axes keeps the data readable at column width,
            # in as many columns as the labels leave room for.
            ncol = _legend_columns(fig, ax.get_legend_handles_labels()[1])
            fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center",
                       ncol=ncol, frameon=False, handlelength=2.2)
            fig.set_figheight(fig.get_figheight() + 0.16 * ((n + ncol - 1) // ncol))


def plot_curves(
    curves: Sequence[Curve],
    *,
    xlabel: str = DELAY_LABEL,
    ylabel: str = SV_SUM_LABEL,
    title: str | None = None,
    log_scale: bool | None = None,
    bands: bool = True,
    integer_x: bool = True,
) -> Figure:
    """Lines with shaded confidence bands.  ``log_scale`` True puts y on a log axis, False
    on a linear one; None (default) chooses log when the values span more than two
    decades (:data:`LOG_SPAN`)."""
    if not curves:
        raise PlotError("nothing to plot: no curves")
    fig = new_figure()
    with matplotlib.rc_context(STYLE):
        ax = fig.add_subplot()
        for c in curves:
            kw = pen(c.color, c.style)
            color = kw["color"]
            ax.plot(c.x, c.y, label=c.label, **kw)
            if bands and c.lower is not None and c.upper is not None and np.isfinite(c.lower).any():
                ax.fill_between(c.x, c.lower, c.upper, color=color, alpha=0.2, linewidth=0)
        _floors(ax, curves)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        if title:
            ax.set_title(title)
        if auto_log([c.y for c in curves], log_scale):
            ax.set_yscale("log")
        if integer_x:
            ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(True, linewidth=0.3, alpha=0.5)
        _legend(fig, ax, len(curves))
    return fig


def _heatmap_norm(matrices: Sequence[np.ndarray], log_scale: bool | None):
    """One colour scale for every panel (log when ``log_scale``, or when None and the
    values span more than two decades)."""
    from matplotlib.colors import LogNorm, Normalize

    finite = np.concatenate([m[np.isfinite(m)].ravel() for m in matrices])
    if finite.size == 0:
        raise PlotError("the heat map has no finite values (every cell empty?)")
    if auto_log([finite], log_scale):
        positive = finite[finite > 0]
        return LogNorm(positive.min(), positive.max()) if positive.size else Normalize()
    return Normalize(finite.min(), finite.max())


def plot_heatmap(
    matrices: Sequence[np.ndarray],
    row_labels: Sequence[str],
    *,
    titles: Sequence[str] | None = None,
    xlabel: str = DELAY_LABEL,
    colorbar_label: str = SV_SUM_LABEL,
    log_scale: bool | None = None,
) -> Figure:
    """One heat map per matrix (rows x delays), stacked, on one shared colour scale."""
    if not matrices:
        raise PlotError("nothing to plot: no matrices")
    rows = matrices[0].shape[0]
    height = 0.55 + len(matrices) * (0.35 + 0.16 * rows)
    # The colour bar (90% of the panels' height) must be as long as its label, which is
    # otherwise cut off at the top and bottom of a short figure.
    height = max(height, 0.55 + (text_inches(colorbar_label) + 0.15) / 0.9)
    fig = new_figure(height=min(max(height, 1.6), 9.0))
    norm = _heatmap_norm(matrices, log_scale)
    with matplotlib.rc_context(STYLE):
        axes = fig.subplots(len(matrices), 1, squeeze=False, sharex=True)[:, 0]
        image = None
        for i, (ax, m) in enumerate(zip(axes, matrices, strict=True)):
            image = ax.imshow(np.ma.masked_invalid(m), aspect="auto", cmap=HEATMAP_CMAP,
                              norm=norm, interpolation="nearest")
            ax.set_yticks(range(m.shape[0]), labels=list(row_labels))
            if titles:
                ax.set_title(titles[i])
            ax.xaxis.get_major_locator().set_params(integer=True)
            for spine in ax.spines.values():
                spine.set_visible(False)
        axes[-1].set_xlabel(xlabel)
        fig.colorbar(image, ax=list(axes), label=colorbar_label, shrink=0.9)
    return fig


def plot_sentence(
    matrix: np.ndarray,
    words: Sequence[str],
    *,
    colorbar_label: str = "Frobenius norm of G(t, k - t)",
    title: str | None = None,
) -> Figure:
    """How strongly each earlier word (row t) still moves the state at each later word
    (column k): entry [t, k] for k >= t; the lower triangle (no influence) stays blank."""
    T = len(words)
    if matrix.shape != (T, T):
        raise PlotError(f"sentence matrix is {matrix.shape} for {T} words")
    side = min(max(COLUMN_WIDTH_IN, 0.9 + 0.22 * T), 12.0)
    # Room for the colour bar's label beside the panel, which loses the height of the
    # (rotated) word labels and the axis label below it.
    words_in = max(text_inches(str(w)) for w in words) if T else 0.0
    need = (text_inches(colorbar_label) + 0.15) / 0.85 + words_in + 0.5 + (0.25 if title else 0.0)
    fig = new_figure(width=side, height=min(max(side * 0.85, need), 14.0))
    with matplotlib.rc_context(STYLE):
        ax = fig.add_subplot()
        image = ax.imshow(np.ma.masked_invalid(matrix), cmap=HEATMAP_CMAP, interpolation="nearest")
        ax.set_xticks(range(T), labels=list(words), rotation=90)
        ax.set_yticks(range(T), labels=list(words))
        ax.set_xlabel("later word k (state)")
        ax.set_ylabel("earlier word t (input)")
        if title:
            ax.set_title(title)
        for spine in ax.spines.values():
            spine.set_visible(False)
        fig.colorbar(image, ax=ax, label=colorbar_label, shrink=0.85)
    return fig


# --- one-call helpers -----------------------------------------------------------------------

def _labels(results, labels: Sequence[str] | None) -> tuple[list[GradientResult], list[str]]:
    if isinstance(results, GradientResult):
        results = [results]
    if labels is not None and len(labels) != len(results):
        raise PlotError(f"{len(labels)} labels for {len(results)} results")
    labels = list(labels) if labels is not None else [result_label(r, i) for i, r in enumerate(results)]
    return list(results), labels


def _floors(ax, curves: Sequence[Curve]) -> None:
    """Each curve's noise floor, hatched from the axis up (after every band, so the bands
    keep their order among the axes' collections)."""
    for c in curves:
        if c.floor is not None and np.isfinite(c.floor).any():
            ax.fill_between(c.x, 0, c.floor, facecolor="none", hatch="///", linewidth=0,
                            edgecolor=pen(c.color, c.style)["color"], alpha=0.35)


def _entries(results, labels, normalize, classes, ci: str, n_boot: int,
             seed: int) -> list[tuple[str, Replicates]]:
    results, labels = _labels(results, labels)
    return [(lab, sv_replicates(r, normalize=normalize, classes=classes, ci=ci,
                                n_boot=n_boot, seed=seed))
            for lab, r in zip(labels, results, strict=True)]


def plot_memory_curves(
    results: GradientResult | Sequence[GradientResult],
    *,
    labels: Sequence[str] | None = None,
    normalize=None,
    classes: Sequence[str] | None = None,
    ci: str = "jackknife",
    level: float = 0.95,
    log_scale: bool | None = None,
    n_boot: int = 200,
    seed: int = 0,
) -> Figure:
    """Memory curves (sum of singular values of ``Gbar_d`` or ``Gbar_d L`` against delay)
    of one or several results, overlaid on the same axes, with confidence bands."""
    results, labels = _labels(results, labels)
    L = normalizer_matrix(normalize)
    reports = memory_reports(results, labels, normalize=L, classes=classes, ci=ci, level=level,
                             n_boot=n_boot, seed=seed)
    # "(normalised)" in the title: appended to the y label it no longer fits a column figure.
    return plot_curves(memory_report_curves(reports), ylabel=SV_SUM_LABEL,
                       title=NORMALISED_TITLE if L is not None else None, log_scale=log_scale)


def plot_topk(
    results: GradientResult | Sequence[GradientResult],
    k: int = 5,
    *,
    class_name: str = "all",
    labels: Sequence[str] | None = None,
    normalize=None,
    ci: str = "jackknife",
    level: float = 0.95,
    log_scale: bool | None = None,
) -> Figure:
    L = normalizer_matrix(normalize)
    entries = _entries(results, labels, L, [class_name], ci, 200, 0)
    return plot_curves(topk_curves(entries, k, class_name=class_name, level=level),
                       ylabel="singular value" + (" (normalised)" if L is not None else ""),
                       log_scale=log_scale)


def plot_spectra(
    results: GradientResult | Sequence[GradientResult],
    delays: Sequence[int] | None = None,
    *,
    class_name: str = "all",
    labels: Sequence[str] | None = None,
    normalize=None,
    ci: str = "jackknife",
    level: float = 0.95,
    log_scale: bool = True,
) -> Figure:
    L = normalizer_matrix(normalize)
    entries = _entries(results, labels, L, [class_name], ci, 200, 0)
    if delays is None:
        delays = default_spectrum_delays(entries[0][1].estimate.shape[0])
    return plot_curves(spectrum_curves(entries, delays, class_name=class_name, level=level),
                       xlabel="rank", ylabel="singular value" + (" (normalised)" if L is not None else ""),
                       log_scale=log_scale)


def plot_class_heatmap(
    results: GradientResult | Sequence[GradientResult],
    *,
    labels: Sequence[str] | None = None,
    normalize=None,
    classes: Sequence[str] | None = None,
    log_scale: bool | None = None,
) -> Figure:
    results, labels = _labels(results, labels)
    L = normalizer_matrix(normalize)
    reports = memory_reports(results, labels, normalize=L, classes=classes, ci="none")
    mats = [memory_matrix(rep) for _, rep in reports]
    titles = labels if len(reports) > 1 else None
    row_labels = [c.class_name for c in reports[0][1].curves]
    return plot_heatmap(mats, row_labels, titles=titles, log_scale=log_scale,
                        colorbar_label=SV_SUM_LABEL + (" (norm.)" if L is not None else ""))
