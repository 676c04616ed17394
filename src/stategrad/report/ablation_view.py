"""Context ablation beside state gradients: the memory curve and the ablation curve of
each class on one figure (two y axes: each keeps its own units), the per-class
correlation of the two over delays, the context-length curves, and the sentence view's
ablation map beside its gradient map.

Alignment: the gradient curve is drawn against delay d (the state ``s_{t+d}``); the
ablation at distance d' (the prediction of ``w_{t+d'}``, made from ``s_{t+d'-1}``) is
drawn at d = d' - 1, so both points of a column concern the same state.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from ..ablation import AblationResult
from ..analysis import ablation_curves, memory_ablation_correlation, memory_curve_arrays
from ..gradients import GradientResult
from .style import HEATMAP_CMAP, OKABE_ITO, STYLE, ReportError, new_figure

X_LABEL = "delay d (state s_{t+d}; ablation: loss of w_{t+d+1})"
QUANTITY_LABELS = {"loss_increase": "loss increase (nats)", "kl": "KL(p_orig || p_ablated) (nats)"}


def _panel_grid(n: int) -> tuple[int, int]:
    cols = min(n, 3)
    return (n + cols - 1) // cols, cols


def plot_memory_and_ablation(memory: dict, ablation: dict, *, quantity: str = "loss_increase",
                             memory_label: str = "sum of singular values") -> Figure:
    """One panel per class (the classes both have): the memory curve on the left axis, the
    mean ablation effect on the right axis, with their bands where given."""
    names = [n for n in memory if n in ablation]
    if not names:
        raise ReportError("the gradient and the ablation results share no class")
    rows, cols = _panel_grid(len(names))
    fig = new_figure(width=3.0 * cols + 0.8, height=2.4 * rows + 0.4)
    g_color, a_color = OKABE_ITO[0], OKABE_ITO[1]
    with matplotlib.rc_context(STYLE):
        for i, name in enumerate(names):
            ax = fig.add_subplot(rows, cols, i + 1)
            m, a = memory[name], ablation[name]
            ax.plot(m.delays, m.totals, color=g_color, marker="o", markersize=3)
            if m.lower is not None:
                ax.fill_between(m.delays, m.lower, m.upper, color=g_color, alpha=0.2, linewidth=0)
            ax.set_ylabel(memory_label, color=g_color)
            ax.set_xlabel(X_LABEL if i >= len(names) - cols else "delay d")
            ax.set_title(name)
            right = ax.twinx()
            x = a.axis - 1
            right.plot(x, a.mean, color=a_color, marker="s", markersize=3, linestyle="--")
            if a.lower is not None:
                right.fill_between(x, a.lower, a.upper, color=a_color, alpha=0.2, linewidth=0)
            right.axhline(0.0, color=a_color, linewidth=0.5, alpha=0.5)
            right.set_ylabel(QUANTITY_LABELS[quantity], color=a_color)
    return fig


def plot_context_length(curves: dict, quantity: str = "loss_increase") -> Figure:
    """The mean effect of seeing only k words against k, one line per class."""
    fig = new_figure()
    with matplotlib.rc_context(STYLE):
        ax = fig.add_subplot()
        for i, (name, c) in enumerate(curves.items()):
            color = OKABE_ITO[i % len(OKABE_ITO)]
            ax.plot(c.axis, c.mean, label=name, color=color)
            if c.lower is not None:
                ax.fill_between(c.axis, c.lower, c.upper, color=color, alpha=0.2, linewidth=0)
        ax.set_xlabel("context length k (words seen)")
        ax.set_ylabel(QUANTITY_LABELS[quantity] + " vs whole text")
        ax.legend()
    return fig


def plot_correlations(rows: list[dict]) -> Figure:
    fig = new_figure()
    with matplotlib.rc_context(STYLE):
        ax = fig.add_subplot()
        x = np.arange(len(rows))
        for j, key in enumerate(("pearson", "spearman")):
            vals = [np.nan if r[key] is None else r[key] for r in rows]
            ax.bar(x + (j - 0.5) * 0.4, vals, width=0.4, label=key, color=OKABE_ITO[j])
        ax.set_xticks(x, labels=[r["class"] for r in rows], rotation=30)
        ax.set_ylabel("correlation over delays")
        ax.set_xlabel("class")
        ax.axhline(0.0, color="black", linewidth=0.5)
        ax.set_ylim(-1.05, 1.05)
        ax.legend()
    return fig


def plot_sentence_pair(gradient: np.ndarray, ablation: np.ndarray, words: Sequence[str], *,
                       gradient_label: str, ablation_label: str) -> Figure:
    """The gradient map and the ablation map of a sentence side by side (same cells:
    earlier word t, later state k)."""
    T = len(words)
    side = min(max(3.0, 0.9 + 0.22 * T), 8.0)
    fig = new_figure(width=2 * side + 1.0, height=side + 0.8)
    with matplotlib.rc_context(STYLE):
        for i, (matrix, label) in enumerate(((gradient, gradient_label),
                                              (ablation, ablation_label))):
            ax = fig.add_subplot(1, 2, i + 1)
            image = ax.imshow(np.ma.masked_invalid(matrix), cmap=HEATMAP_CMAP,
                              interpolation="nearest")
            ax.set_xticks(range(T), labels=list(words), rotation=90)
            ax.set_yticks(range(T), labels=list(words))
            ax.set_xlabel("later word k (state)")
            ax.set_ylabel("earlier word t (input)")
            ax.set_title("state gradients" if i == 0 else "ablation")
            fig.colorbar(image, ax=ax, label=label, shrink=0.8)
    return fig


def _fmt(v) -> str:
    return "" if v is None or not np.isfinite(v) else f"{v:.4g}"


Add = Callable[[str, str, str, Figure, tuple], None]


def ablation_sections(add: Add, result: GradientResult, ablation: AblationResult, *,
                      classes: Sequence[str], ci: str, level: float, n_boot: int, seed: int,
                      band_text: str) -> None:
    """The report's ablation figures, added with ``add(key, title, caption, fig, table)``."""
    interval = ci if ci != "none" and ablation.has_blocks else None
    kw = dict(interval=interval, level=level, n_boot=n_boot, seed=seed)
    names = [c for c in classes if c in ablation.classes]
    if ablation.mode != "ablation":
        curves = ablation_curves(ablation, "loss_increase", classes=names, **kw)
        head = ["class", "context", "count", "loss increase"]
        rows = [[n, str(k), str(c), _fmt(v)] for n, cu in curves.items()
                for k, c, v in zip(cu.axis, cu.counts, cu.mean, strict=True)]
        add("context_length", "Context length",
            "Mean loss increase of a word seen with only its last k words (the rest cut, from "
            "the initial state) over its loss with the whole text, per class of the word.",
            plot_context_length(curves), (head, rows))
        return
    if not names:
        raise ReportError(f"the ablation result has none of the classes shown ({classes})")
    g_interval = ci if ci != "none" and result.has_blocks else None
    memory = memory_curve_arrays(result, classes=names, interval=g_interval, level=level,
                                 n_boot=n_boot, seed=seed)
    curves = ablation_curves(ablation, "loss_increase", classes=names, **kw)
    replace = ablation.metadata.get("replace")
    head = ["class", "delay", "sum of singular values", "distance", "loss increase", "count"]
    rows = []
    for n in names:
        by_delay = dict(zip((int(d) for d in memory[n].delays), memory[n].totals, strict=True))
        c = curves[n]
        for dist, cnt, v in zip(c.axis, c.counts, c.mean, strict=True):
            rows.append([n, str(dist - 1), _fmt(by_delay.get(int(dist) - 1)), str(dist), _fmt(v),
                         str(cnt)])
    add("memory_vs_ablation", "Memory curves and context ablation",
        "Per class: the memory curve (sum of singular values of Gbar_d, left axis, solid) and "
        f"the mean loss increase when the word is replaced ({replace}; right axis, dashed), "
        "drawn at delay d = distance - 1 so that both concern the state s_{t+d}. Two axes: "
        "the measures have different units; read the shapes, not the heights. "
        f"{band_text}", plot_memory_and_ablation(memory, curves), (head, rows))
    corr = memory_ablation_correlation(memory, ablation, "loss_increase")
    head = ["class", "delays", "pearson", "spearman"]
    rows = [[r["class"], str(r["delays"]), _fmt(r["pearson"]), _fmt(r["spearman"])]
            for r in corr.rows]
    add("memory_ablation_correlation", "Correlation of the two memory measures",
        "Per class: correlation over delays of the memory curve at delay d - 1 and the mean "
        "loss increase of ablation at distance d. A high value says both measures fall off "
        "alike; a low one that the state keeps moving with a word the model no longer uses "
        "(or the reverse).", plot_correlations(corr.rows), (head, rows))
