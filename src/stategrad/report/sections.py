"""The sections of the HTML report: each draws what :mod:`stategrad.analysis` computes for
the results of a :class:`Plan` and adds its figures (PNG, SVG and the numbers behind them as
CSV) to a :class:`Figures`, in the order the page shows them."""

from __future__ import annotations

import csv
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..gradients import GradientResult
from . import plots as P
from .ablation_view import plot_sentence_pair
from .page import PageFigure
from .sentence_view import SentenceMap, plot_sentence_map
from .style import ReportError

Table = tuple[list[str], list[list[str]]]


@dataclass
class Plan:
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


class Figures:
    """The report's figures, written to ``fig_dir`` (created; PNG, SVG and CSV) as they are added."""

    def __init__(self, fig_dir: Path):
        self.fig_dir = fig_dir
        self.fig_dir.mkdir(parents=True, exist_ok=True)
        self.items: list[PageFigure] = []

    def add(self, key: str, title: str, caption: str, fig, table: Table) -> None:
        files = P.save_figure(fig, self.fig_dir / key)
        svg = (self.fig_dir / f"{key}.svg").read_bytes()
        files.append(write_csv(self.fig_dir / f"{key}.csv", *table))
        self.items.append(PageFigure(key, title, caption, svg, files, *table))


def fmt(v: float) -> str:
    return "" if not np.isfinite(v) else f"{v:.4g}"


def plain_label(label: str) -> str:
    """A figure label without matplotlib's TeX markup, for tables and CSV headers:
    ``$s_{1}$`` -> ``s_1``."""
    if "$" not in label:
        return label
    return re.sub(r"\$([^$]*)\$",
                  lambda m: m.group(1).replace("{", "").replace("}", "").replace("\\", ""), label)


def curve_table(curves: Sequence[P.Curve], xname: str, with_band: bool) -> Table:
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
                row.append(fmt(float(a[idx[0]])) if idx.size and a is not None else "")
        rows.append(row)
    return head, rows


def write_csv(path: Path, head: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(head)
        w.writerows(rows)
    return path


def compare_section(figures: Figures, plan: Plan, L: np.ndarray | None,
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
                curve_table(curves, "delay", True))


def spectral_sections(figures: Figures, plan: Plan, L: np.ndarray | None, top_k: int,
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
                curve_table(curves, "delay", plan.has_band))
    entries = [(lab, P.sv_replicates(r, normalize=L, classes=["all"], ci=plan.ci,
                                     n_boot=plan.n_boot, seed=plan.seed))
               for r, lab in zip(plan.results, plan.labels, strict=True)]
    curves = P.topk_curves(entries, top_k, level=plan.level)
    k_shown = min([top_k] + [min(x.hidden_size, x.embedding_size) for x in plan.results])
    figures.add(f"topk_{variant}", f"Top {k_shown} singular values{sfx}",
                f"The {k_shown} largest singular values of {what} (all words) against delay. "
                f"{plan.band_text}",
                P.plot_curves(curves, ylabel="singular value" + sfx, log_scale=plan.log_scale),
                curve_table(curves, "delay", plan.has_band))
    curves = P.spectrum_curves(entries, spectrum_delays, level=plan.level)
    figures.add(f"spectra_{variant}", f"Singular value spectra{sfx}",
                f"All singular values of {what} (all words) by rank at delays "
                f"{', '.join(map(str, spectrum_delays))}; log scale. {plan.band_text}",
                P.plot_curves(curves, xlabel="rank", ylabel="singular value" + sfx, log_scale=True),
                curve_table(curves, "rank", plan.has_band))
    _heatmap_section(figures, plan, [P.memory_matrix(rep) for _, rep in reports], variant, what,
                     normalised=L is not None)


def _heatmap_section(figures: Figures, plan: Plan, mats: list[np.ndarray], variant: str,
                     what: str, normalised: bool) -> None:
    several = len(plan.results) > 1
    head = ["delay"] + [f"{lab}: {c}" if several else c for lab in plan.labels for c in plan.classes]
    rows = [[str(d)] + [fmt(m[j, d]) if d < m.shape[1] else "" for m in mats
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


def identity_section(figures: Figures, plan: Plan, L: np.ndarray | None, embeddings,
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
                curve_table(curves, "delay", plan.has_band))


def direction_sections(figures: Figures, plan: Plan, L: np.ndarray | None,
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
                curve_table(curves, "delay", plan.has_band))
    curves = P.direction_curves(entries, names, kind="relative", level=plan.level)
    curves += _null_curves(plan, vecs, names, L, class_name, subspace_k)
    figures.add("relative_memory", "Relative memory (as in the papers)",
                f"|{what} n| / s_1({what}) against delay for each difference vector v, {norm_note}; "
                f"{words}. Dividing by s_1 cancels a fall that every direction shares, so it "
                f"can stay flat where the property is forgotten. Dotted ('random direction'): "
                f"the mean for a uniformly random unit direction, with the central "
                f"{100 * plan.level:g}% of its values as band. {plan.band_text}",
                P.plot_curves(curves, ylabel="relative memory"),
                curve_table(curves, "delay", plan.has_band))
    curves = P.direction_curves(entries, names, kind="cosine", level=plan.level)
    figures.add("subspace_cosine", "Subspace cosine (as in the papers)",
                f"|V_k^T n|: cosine between n and the top {subspace_k} right singular vectors of "
                f"{what} against delay ({norm_note}). {plan.band_text}",
                P.plot_curves(curves, ylabel=f"cosine with top-{subspace_k} subspace"),
                curve_table(curves, "delay", plan.has_band))


def _null_curves(plan: Plan, vecs: np.ndarray, names: Sequence[str], L: np.ndarray | None,
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


def sentence_section(figures: Figures, i: int, smap: SentenceMap) -> None:
    T = len(smap.words)
    head = ["earlier word t \\ later word k"] + [f"{k}:{w}" for k, w in enumerate(smap.words)]
    rows = [[f"{t}:{smap.words[t]}"] + [fmt(smap.matrix[t, k]) for k in range(T)] for t in range(T)]
    unk = f" Not in the vocabulary (read as <unk>): {', '.join(smap.unknown)}." if smap.unknown else ""
    figures.add(f"sentence_{i + 1}", f"Sentence view {i + 1}",
                f"{smap.measure_label} for every pair of an earlier word t (rows) and a later word k "
                f"(columns): how strongly the input at t still moves the {smap.state} state at k. "
                f"Computed exactly for this sentence from the zero state.{unk}",
                plot_sentence_map(smap), (head, rows))
    if smap.ablation is not None:
        rows = [[f"{t}:{smap.words[t]}"] + [fmt(smap.ablation[t, k]) for k in range(T)]
                for t in range(T)]
        figures.add(f"sentence_{i + 1}_ablation", f"Sentence view {i + 1}: gradients and ablation",
                    f"Left, the gradient map above; right, {smap.ablation_label} for the same "
                    "cells: how far the prediction made at k moves when the word at t is "
                    "replaced.", plot_sentence_pair(smap.matrix, smap.ablation, smap.words,
                                                    gradient_label=smap.measure_label,
                                                    ablation_label="KL (nats)"), (head, rows))
