"""The look shared by every figure, and writing figures to files.

Every figure is a :class:`matplotlib.figure.Figure` made without pyplot (so no global
state and no GUI backend: files are rendered by Agg), sized for a paper column (3.4 in
wide) with 8 pt text and the colour-blind-safe Okabe-Ito palette.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from ..analysis import normalizer_matrix

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
#: After the eight colours, series are told apart by a marker as well (colour index 8-15
#: gets circles, 16-23 triangles, ...), so that up to 8 x (1 + len(MARKERS)) series --
#: e.g. 14 word classes -- never share a look.
MARKERS = ("o", "^", "s")
#: Above this ratio of the largest to the smallest positive value (two decades) an
#: automatically chosen axis is logarithmic: on a linear one every curve after the first
#: few delays lies flat on zero.
LOG_SPAN = 100.0
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


class ReportError(ValueError):
    """A report or sentence view that cannot be made as asked."""


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
    #: The noise floor (what no memory would give), drawn shaded from 0; None: none.
    floor: np.ndarray | None = None


def pen(color: int, style: int = 0) -> dict:
    """Keyword arguments of ``Axes.plot`` for colour index ``color`` and line style
    ``style``: distinct for every colour index below ``8 * (1 + len(MARKERS))``."""
    cycle = color // len(OKABE_ITO)
    kw = {"color": OKABE_ITO[color % len(OKABE_ITO)],
          "linestyle": LINESTYLES[style % len(LINESTYLES)]}
    if cycle:
        kw.update(marker=MARKERS[(cycle - 1) % len(MARKERS)], markersize=3, markevery=0.1)
    return kw


def auto_log(values, log_scale: bool | None) -> bool:
    """``log_scale`` when given; else True when the finite positive values span more than
    :data:`LOG_SPAN` (and there are no values at or below zero to hide)."""
    if log_scale is not None:
        return bool(log_scale)
    v = np.concatenate([np.asarray(a, dtype=np.float64).ravel() for a in values]) if values else np.array([])
    v = v[np.isfinite(v)]
    if v.size == 0 or (v <= 0).any():
        return False
    return float(v.max() / v.min()) > LOG_SPAN


def resolve_normalizer(normalize=None, L: np.ndarray | None = None) -> np.ndarray | None:
    """The matrix L from ``normalize`` (statistics, an L array or a stats file, see
    :func:`stategrad.analysis.normalizer_matrix`) or from the deprecated ``L=`` keyword."""
    if L is not None:
        if normalize is not None:
            raise TypeError("give normalize= or the deprecated L=, not both")
        warnings.warn("L= is deprecated; use normalize=", DeprecationWarning, stacklevel=3)
        normalize = L
    return normalizer_matrix(normalize)


def new_figure(width: float = COLUMN_WIDTH_IN, height: float = 2.4) -> Figure:
    with matplotlib.rc_context(STYLE):
        return Figure(figsize=(width, height), layout="constrained")


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
