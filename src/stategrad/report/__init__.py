"""Figures and the HTML report; they draw what :mod:`stategrad.analysis` computes.

Other subpackages, the command line and the public API import from here, never from
the modules inside, so the modules can be split without breaking them."""

from __future__ import annotations

from .html import ExtraFigure, ReportError, build_report, plot_sentence_map, sentence_map
from .plots import OKABE_ITO, Curve, plot_curves, save_figure, write_figure

__all__ = [
    "Curve",
    "ExtraFigure",
    "OKABE_ITO",
    "ReportError",
    "build_report",
    "plot_curves",
    "plot_sentence_map",
    "save_figure",
    "sentence_map",
    "write_figure",
]
