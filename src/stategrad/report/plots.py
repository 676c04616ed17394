"""Figures of state gradient results, in the conventions of the field.

Every figure is a :class:`matplotlib.figure.Figure` made without pyplot (so no
global state and no GUI backend: files are rendered by Agg), sized for a paper
column (3.4 in wide) with 8 pt text, labelled axes with units, a legend, and the
colour-blind-safe Okabe-Ito palette.  The functions return the Figure, so the
data drawn can be read back (``fig.axes[0].lines``) and checked.

Two layers:

* data: :class:`Curve` lists built from the singular value replicates of
  :mod:`stategrad.uncertainty` (:func:`memory_curves`, :func:`topk_curves`,
  :func:`spectrum_curves`, :func:`class_memory_matrix`, :func:`direction_curves`);
* drawing: :func:`plot_curves`, :func:`plot_heatmap`, :func:`plot_sentence`;

plus one-call helpers that take results directly (:func:`plot_memory_curves`,
:func:`plot_topk`, :func:`plot_spectra`, :func:`plot_class_heatmap`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from ..analysis import Replicates, replicates, singular_values, sv_sum
from ..gradients import GradientResult

#: Okabe & Ito (2008), ordered so that the first colours are the most distinct on white
#: paper; yellow last because it is faint on white.
OKABE_ITO = (
    "#0072B2",  # blue
    "#D55E00",  # vermillion
    "#009E73",  # bluish green
    "#CC79A7",  # reddish purple
    "#E69F00",  # orange
    "#56B4E9",  # sky blue
    "#000000",  # black
    "#F0E442",  # yellow
)
LINESTYLES = ("-", "--", ":", "-.")
COLUMN_WIDTH_IN = 3.4
#: A perceptually uniform map that reads in grey scale and for colour-blind readers.
HEATMAP_CMAP = "viridis"

STYLE = {
    "font.size": 8,
    "axes.titlesize": 8,
    "axes.labelsize": 8,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "legend.fontsize": 8,
    "legend.title_fontsize": 8,
    "figure.titlesize": 8,
    "axes.linewidth": 0.6,
    "lines.linewidth": 1.2,
    "xtick.major.width": 0.6,
    "ytick.major.width": 0.6,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "savefig.dpi": 300,
    "svg.hashsalt": "stategrad",  # stable SVG ids: the same figure gives the same file
}

DELAY_LABEL = "delay (tokens)"
SV_SUM_LABEL = "sum of singular values"
NORMALISED_TITLE = "normalised (Gbar_d L)"


class PlotError(ValueError):
    """A figure that cannot be drawn as asked."""


@dataclass
class Curve:
    """One line of a figure: x, y and an optional confidence band."""

    label: str
    x: np.ndarray
    y: np.ndarray
    lower: np.ndarray | None = None
    upper: np.ndarray | None = None
    color: int = 0  # index into OKABE_ITO
    style: int = 0  # index into LINESTYLES


# --- data -----------------------------------------------------------------------------------

def sv_replicates(
    result: GradientResult,
    *,
    L: np.ndarray | None = None,
    classes: Sequence[str | int] | None = None,
    ci: str = "jackknife",
    n_boot: int = 200,
    seed: int = 0,
) -> Replicates:
    """All singular values of ``Gbar_d`` (or ``Gbar_d L``) per delay and class, with their
    resampling replicates.  A result without blocks gets point estimates only."""
    method = ci if result.has_blocks else "none"
    return replicates(result, singular_values(L), classes=classes, method=method,
                      n_boot=n_boot, seed=seed)


def _series_label(result_label: str | None, class_name: str, n_results: int, n_classes: int) -> str:
    if n_results <= 1 or not result_label:
        return class_name
    if n_classes <= 1:
        return result_label
    return f"{result_label}: {class_name}"


def memory_curves(
    entries: Sequence[tuple[str, Replicates]],
    *,
    level: float = 0.95,
) -> list[Curve]:
    """Sum of singular values against delay: one curve per (result, class).

    Colour follows the class (the same class has the same colour in every result) and
    line style the result; with a single class the colour follows the result."""
    curves = []
    n_classes = max(len(r.classes) for _, r in entries)
    for i, (label, reps) in enumerate(entries):
        b = reps.derive(sv_sum, level=level)
        x = np.arange(b.estimate.shape[0])
        for j, name in enumerate(b.classes):
            curves.append(Curve(
                label=_series_label(label, name, len(entries), n_classes),
                x=x, y=b.estimate[:, j, 0], lower=b.lower[:, j, 0], upper=b.upper[:, j, 0],
                color=j if n_classes > 1 else i, style=i if n_classes > 1 else 0,
            ))
    return curves


def topk_curves(
    entries: Sequence[tuple[str, Replicates]],
    k: int = 5,
    *,
    class_name: str = "all",
    level: float = 0.95,
) -> list[Curve]:
    """The k largest singular values against delay for one class: colour = rank,
    line style = result."""
    if k < 1:
        raise PlotError(f"k must be at least 1, got {k}")
    curves = []
    for i, (label, reps) in enumerate(entries):
        if class_name not in reps.classes:
            raise PlotError(f"class {class_name!r} not among {reps.classes}")
        j = reps.classes.index(class_name)
        kk = min(k, reps.estimate.shape[-1])
        b = reps.derive(lambda v, kk=kk: v[..., :kk], level=level)
        x = np.arange(b.estimate.shape[0])
        for r in range(kk):
            name = f"$s_{{{r + 1}}}$"
            curves.append(Curve(
                label=name if len(entries) == 1 else f"{label}: {name}",
                x=x, y=b.estimate[:, j, r], lower=b.lower[:, j, r], upper=b.upper[:, j, r],
                color=r, style=i,
            ))
    return curves


def spectrum_curves(
    entries: Sequence[tuple[str, Replicates]],
    delays: Sequence[int],
    *,
    class_name: str = "all",
    level: float = 0.95,
) -> list[Curve]:
    """Singular values against their rank at chosen delays: colour = delay, style = result."""
    curves = []
    for i, (label, reps) in enumerate(entries):
        if class_name not in reps.classes:
            raise PlotError(f"class {class_name!r} not among {reps.classes}")
        j = reps.classes.index(class_name)
        b = reps.derive(None, level=level)
        D, K = b.estimate.shape[0], b.estimate.shape[-1]
        for c, d in enumerate(delays):
            if not 0 <= d < D:
                raise PlotError(f"delay {d} is outside the result's delays 0..{D - 1}")
            name = f"d = {d}"
            curves.append(Curve(
                label=name if len(entries) == 1 else f"{label}: {name}",
                x=np.arange(1, K + 1), y=b.estimate[d, j], lower=b.lower[d, j],
                upper=b.upper[d, j], color=c, style=i,
            ))
    return curves


def whiten_directions(vectors: np.ndarray, L: np.ndarray | None = None) -> np.ndarray:
    """Unit directions ``n = Z v / |Z v|`` (``Z = L^-1``) of difference vectors ``v`` (rows);
    without ``L`` simply ``v / |v|``."""
    v = np.atleast_2d(np.asarray(vectors, dtype=np.float64))
    if L is not None:
        from scipy.linalg import solve_triangular

        if v.shape[1] != L.shape[0]:
            raise PlotError(f"difference vectors have {v.shape[1]} components, the embedding {L.shape[0]}")
        v = solve_triangular(L, v.T, lower=True).T
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    if np.any(norms == 0):
        raise PlotError("a difference vector is zero: it has no direction")
    return v / norms


def direction_replicates(
    result: GradientResult,
    directions: np.ndarray,
    *,
    L: np.ndarray | None = None,
    class_name: str = "all",
    k: int = 5,
    ci: str = "jackknife",
    n_boot: int = 200,
    seed: int = 0,
) -> Replicates:
    """Relative memory, subspace cosine and top-k share (see
    :func:`stategrad.analysis.direction_statistic`) of whitened unit ``directions``."""
    from ..analysis import direction_statistic

    method = ci if result.has_blocks else "none"
    return replicates(result, direction_statistic(directions, L, k), classes=[class_name],
                      method=method, n_boot=n_boot, seed=seed)


def direction_curves(
    entries: Sequence[tuple[str, Replicates]],
    names: Sequence[str],
    *,
    kind: str = "relative",
    level: float = 0.95,
) -> list[Curve]:
    """``kind="relative"``: relative memory ``|Gbar n| / s_1``; ``"cosine"``: ``|V_k^T n|``.
    Colour = direction, line style = result."""
    P = len(names)
    offset = {"relative": 0, "cosine": P}.get(kind)
    if offset is None:
        raise PlotError(f"unknown direction measure {kind!r}; use 'relative' or 'cosine'")
    curves = []
    for i, (label, reps) in enumerate(entries):
        if reps.estimate.shape[-1] != 2 * P + 1:
            raise PlotError(f"{P} direction names for replicates of {(reps.estimate.shape[-1] - 1) // 2}")
        b = reps.derive(None, level=level)
        x = np.arange(b.estimate.shape[0])
        for p, name in enumerate(names):
            curves.append(Curve(
                label=name if len(entries) == 1 else f"{label}: {name}",
                x=x, y=b.estimate[:, 0, offset + p], lower=b.lower[:, 0, offset + p],
                upper=b.upper[:, 0, offset + p], color=p, style=i,
            ))
    return curves


def class_memory_matrix(reps: Replicates) -> np.ndarray:
    """Sum of singular values per class and delay: (classes, delays)."""
    return reps.derive(sv_sum).estimate[:, :, 0].T.copy()


def default_spectrum_delays(max_delay: int, n: int = 4) -> list[int]:
    """Delays spread roughly logarithmically: 0, 1, ... up to the last delay."""
    if max_delay <= n:
        return list(range(max_delay))
    raw = np.unique(np.round(np.geomspace(1, max_delay - 1, n - 1)).astype(int))
    return [0] + [int(d) for d in raw if d > 0]


# --- drawing --------------------------------------------------------------------------------

def _new_figure(width: float = COLUMN_WIDTH_IN, height: float = 2.4) -> Figure:
    with matplotlib.rc_context(STYLE):
        return Figure(figsize=(width, height), layout="constrained")


def _legend(fig: Figure, ax, n: int) -> None:
    if n == 0:
        return
    with matplotlib.rc_context(STYLE):
        if n <= 4:
            ax.legend(frameon=False, handlelength=2.2)
        else:
            # Many series: a legend below the axes keeps the data readable at column width.
            ncol = 2 if n <= 12 else 3
            fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center",
                       ncol=ncol, frameon=False, handlelength=2.2)
            fig.set_figheight(fig.get_figheight() + 0.16 * ((n + ncol - 1) // ncol))


def plot_curves(
    curves: Sequence[Curve],
    *,
    xlabel: str = DELAY_LABEL,
    ylabel: str = SV_SUM_LABEL,
    title: str | None = None,
    log_scale: bool = False,
    bands: bool = True,
    integer_x: bool = True,
) -> Figure:
    """Lines with shaded confidence bands.  ``log_scale`` puts y on a log axis."""
    if not curves:
        raise PlotError("nothing to plot: no curves")
    fig = _new_figure()
    with matplotlib.rc_context(STYLE):
        ax = fig.add_subplot()
        for c in curves:
            color = OKABE_ITO[c.color % len(OKABE_ITO)]
            style = LINESTYLES[c.style % len(LINESTYLES)]
            ax.plot(c.x, c.y, color=color, linestyle=style, label=c.label)
            if bands and c.lower is not None and c.upper is not None and np.isfinite(c.lower).any():
                ax.fill_between(c.x, c.lower, c.upper, color=color, alpha=0.2, linewidth=0)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        if title:
            ax.set_title(title)
        if log_scale:
            ax.set_yscale("log")
        if integer_x:
            ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(True, linewidth=0.3, alpha=0.5)
        _legend(fig, ax, len(curves))
    return fig


def plot_heatmap(
    matrices: Sequence[np.ndarray],
    row_labels: Sequence[str],
    *,
    titles: Sequence[str] | None = None,
    xlabel: str = DELAY_LABEL,
    colorbar_label: str = SV_SUM_LABEL,
    log_scale: bool = False,
) -> Figure:
    """One heat map per matrix (rows x delays), stacked, on one shared colour scale."""
    if not matrices:
        raise PlotError("nothing to plot: no matrices")
    from matplotlib.colors import LogNorm, Normalize

    rows = matrices[0].shape[0]
    height = 0.55 + len(matrices) * (0.35 + 0.16 * rows)
    fig = _new_figure(height=min(max(height, 1.6), 9.0))
    finite = np.concatenate([m[np.isfinite(m)].ravel() for m in matrices])
    if finite.size == 0:
        raise PlotError("the heat map has no finite values (every cell empty?)")
    if log_scale:
        positive = finite[finite > 0]
        norm = LogNorm(positive.min(), positive.max()) if positive.size else Normalize()
    else:
        norm = Normalize(finite.min(), finite.max())
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
    fig = _new_figure(width=side, height=side * 0.85)
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


def save_figure(fig: Figure, path_stem: str | os.PathLike,
                formats: Sequence[str] = ("png", "svg")) -> list[Path]:
    """Write ``stem.png``, ``stem.svg``, ... and return the paths."""
    stem = Path(path_stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    out = []
    with matplotlib.rc_context(STYLE):
        for fmt in formats:
            path = stem.with_name(f"{stem.name}.{fmt}")
            fig.savefig(path, format=fmt, metadata=_file_metadata(fmt))
            out.append(path)
    return out


def _file_metadata(fmt: str) -> dict[str, str | None]:
    # No creation date in SVG/PDF: the same data give byte-identical files.
    if fmt == "svg":
        return {"Date": None}
    if fmt == "pdf":
        return {"CreationDate": None}
    return {}


def write_figure(fig: Figure, path: str | os.PathLike) -> Path:
    """Write one file, the format taken from its suffix (png, svg, pdf)."""
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower()
    if fmt not in ("png", "svg", "pdf"):
        raise PlotError(f"cannot tell the figure format from {path.name!r}: use .png, .svg or .pdf")
    path.parent.mkdir(parents=True, exist_ok=True)
    with matplotlib.rc_context(STYLE):
        fig.savefig(path, format=fmt, metadata=_file_metadata(fmt))
    return path


# --- one-call helpers -----------------------------------------------------------------------

def _entries(results: Sequence[GradientResult], labels: Sequence[str] | None,
             L: np.ndarray | None, classes: Sequence[str] | None, ci: str,
             n_boot: int, seed: int) -> list[tuple[str, Replicates]]:
    if isinstance(results, GradientResult):
        results = [results]
    if labels is not None and len(labels) != len(results):
        raise PlotError(f"{len(labels)} labels for {len(results)} results")
    labels = list(labels) if labels is not None else [result_label(r, i) for i, r in enumerate(results)]
    return [(lab, sv_replicates(r, L=L, classes=classes, ci=ci, n_boot=n_boot, seed=seed))
            for lab, r in zip(labels, results, strict=True)]


def result_label(result: GradientResult, index: int = 0) -> str:
    """A short name for a result: its ``label`` metadata, else model cell + state."""
    meta = result.metadata
    if meta.get("label"):
        return str(meta["label"])
    parts = []
    model = meta.get("model")
    cell = None
    if isinstance(model, dict):
        cell = model.get("cell") or (model.get("spec") or {}).get("cell")
    cell = cell or meta.get("cell")
    if cell:
        parts.append(str(cell).upper().replace("RNN_TANH", "RNN"))
    if meta.get("state"):
        parts.append(str(meta["state"]))
    return " ".join(parts) if parts else f"result {index + 1}"


def plot_memory_curves(
    results: GradientResult | Sequence[GradientResult],
    *,
    labels: Sequence[str] | None = None,
    L: np.ndarray | None = None,
    classes: Sequence[str] | None = None,
    ci: str = "jackknife",
    level: float = 0.95,
    log_scale: bool = False,
    n_boot: int = 200,
    seed: int = 0,
) -> Figure:
    """Memory curves (sum of singular values of ``Gbar_d`` or ``Gbar_d L`` against delay)
    of one or several results, overlaid on the same axes, with confidence bands."""
    entries = _entries(results, labels, L, classes, ci, n_boot, seed)
    # "(normalised)" in the title: appended to the y label it no longer fits a column figure.
    return plot_curves(memory_curves(entries, level=level), ylabel=SV_SUM_LABEL,
                       title=NORMALISED_TITLE if L is not None else None, log_scale=log_scale)


def plot_topk(
    results: GradientResult | Sequence[GradientResult],
    k: int = 5,
    *,
    class_name: str = "all",
    labels: Sequence[str] | None = None,
    L: np.ndarray | None = None,
    ci: str = "jackknife",
    level: float = 0.95,
    log_scale: bool = False,
) -> Figure:
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
    L: np.ndarray | None = None,
    ci: str = "jackknife",
    level: float = 0.95,
    log_scale: bool = True,
) -> Figure:
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
    L: np.ndarray | None = None,
    classes: Sequence[str] | None = None,
    log_scale: bool = False,
) -> Figure:
    entries = _entries(results, labels, L, classes, "none", 0, 0)
    mats = [class_memory_matrix(reps) for _, reps in entries]
    titles = [lab for lab, _ in entries] if len(entries) > 1 else None
    return plot_heatmap(mats, entries[0][1].classes, titles=titles, log_scale=log_scale,
                        colorbar_label=SV_SUM_LABEL + (" (norm.)" if L is not None else ""))
