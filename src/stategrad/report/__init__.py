"""Figures and the HTML report; they draw what :mod:`stategrad.analysis` computes.

Other subpackages, the command line and the public API import from here, never from
the modules inside, so the modules can be split without breaking them."""

from __future__ import annotations

from .ablation_view import plot_memory_and_ablation, plot_sentence_pair
from .extras import ExtraFigure
from .html import build_report
from .plots import Curve, plot_curves
from .sentence_view import SentenceMap, plot_sentence_map, sentence_map, sentence_map_from_gradients
from .style import OKABE_ITO, ReportError, save_figure, write_figure

__all__ = [
    "Curve",
    "ExtraFigure",
    "OKABE_ITO",
    "ReportError",
    "SentenceMap",
    "build_report",
    "plot_curves",
    "plot_memory_and_ablation",
    "plot_sentence_map",
    "plot_sentence_pair",
    "save_figure",
    "sentence_map",
    "sentence_map_from_gradients",
    "write_figure",
]
