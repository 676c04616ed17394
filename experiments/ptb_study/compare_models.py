"""LSTM vs GRU: memory curves, spans and relative memory of two analysed models.

Usage: python compare_models.py FIG_DIR OUT_JSON LABEL=SUMMARY_JSON [LABEL=SUMMARY_JSON ...]

Each SUMMARY_JSON is the TABLES/summary.json that figures.py wrote for one model (its
curves per state and class with jackknife bands, spans and their jackknife range, and
the relative memory of the difference vectors).  Every (model, state) pair becomes one
line in the figures; OUT_JSON gets the side-by-side spans and ratios the write-up quotes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from figures import delay_axis, save  # noqa: E402  (beside this script)

from stategrad.report import OKABE_ITO

FRACTION = 0.1
CLASSES = ("all", "nouns", "verbs", "adjectives", "adverbs", "determiners", "prepositions",
           "pronouns", "numbers")
SHOWN = ("all", "nouns", "determiners", "prepositions")
STYLES = ("-", "--", ":", "-.")


def _series(runs: dict[str, dict]) -> list[tuple[str, str, str]]:
    """(label of the line, model label, state) for every state of every model."""
    return [(f"{label} {state}", label, state) for label, s in runs.items()
            for state in (s.get("states") or list(s["curves"]))]


def plot_memory(runs: dict[str, dict], path: Path) -> None:
    series = _series(runs)
    fig, axes = plt.subplots(1, 2, figsize=(7.2, 3.0))
    for k, (name, label, state) in enumerate(series):
        c = runs[label]["curves"][state]["all"]
        x = np.arange(len(c["sum"]))
        axes[0].plot(x, c["sum"], color=OKABE_ITO[k], linewidth=1.1, label=name)
        axes[0].fill_between(x, np.asarray(c["lower"], float), np.asarray(c["upper"], float),
                             color=OKABE_ITO[k], alpha=0.18, linewidth=0)
        for i, cls in enumerate(SHOWN):
            cc = runs[label]["curves"][state][cls]
            y = np.asarray(cc["sum"], float) / cc["sum"][0]
            axes[1].plot(x, y, color=OKABE_ITO[k], linestyle=STYLES[i], linewidth=1.0,
                         label=f"{name}: {cls}" if k == 0 or i == 0 else None)
    axes[0].set_ylabel("sum of s.v. of $\\bar G_d L$ (class all)")
    axes[1].set_ylabel("relative to d = 0")
    axes[1].axhline(FRACTION, color="grey", linewidth=0.6, linestyle=":")
    axes[1].set_ylim(1e-4, 1.5)
    for ax in axes:
        ax.set_yscale("log")
        delay_axis(ax, len(x) - 1)
    axes[0].legend(fontsize=6.5, frameon=False)
    axes[1].legend(fontsize=5.5, frameon=False, loc="lower left")
    save(fig, path)


def plot_relative(runs: dict[str, dict], path: Path) -> None:
    series = [s for s in _series(runs) if runs[s[1]]["directions"]]
    props = [p for p in runs[series[0][1]]["directions"][series[0][2]] if p != "share_top5"]
    fig, axes = plt.subplots(1, len(props), figsize=(3.6 * len(props), 2.8), squeeze=False)
    for ax, prop in zip(axes[0], props, strict=True):
        for k, (name, label, state) in enumerate(series):
            e = runs[label]["directions"][state][prop]["relative"]
            x = np.arange(len(e["estimate"]))
            ax.plot(x, e["estimate"], color=OKABE_ITO[k], linewidth=1.1, label=name)
            ax.fill_between(x, np.asarray(e["lower"], float), np.asarray(e["upper"], float),
                            color=OKABE_ITO[k], alpha=0.18, linewidth=0)
        delay_axis(ax, len(x) - 1)
        ax.set_ylim(0, 1)
        ax.set_title(prop, fontsize=9)
    axes[0][0].set_ylabel("relative memory $|\\bar G_d L n| / s_1$")
    axes[0][-1].legend(fontsize=6.5, frameon=False)
    save(fig, path)


def _span_text(c: dict) -> str:
    span = c["span"]
    text = ">199" if span == -1 else ("undefined" if span is None else str(span))
    lo, hi, never = c["span_jackknife_min"], c["span_jackknife_max"], c["span_jackknife_never"]
    parts = [f"{lo}-{hi}" if lo is not None and hi != lo else (str(lo) if lo is not None else "")]
    if never:
        parts.append(f"{never} never")
    return f"{text} [{', '.join(p for p in parts if p)}]"


def main(fig_dir: str, out_json: str, *specs: str) -> None:
    runs = {}
    for spec in specs:
        label, _, path = spec.partition("=")
        runs[label] = json.loads(Path(path).read_text())
    figs = Path(fig_dir)
    figs.mkdir(parents=True, exist_ok=True)
    plot_memory(runs, figs / "memory_lstm_vs_gru.png")
    plot_relative(runs, figs / "relative_memory_lstm_vs_gru.png")
    table: dict = {"spans": {}, "ratio_to_d0": {}, "relative": {}}
    for name, label, state in _series(runs):
        curves = runs[label]["curves"][state]
        table["spans"][name] = {c: _span_text(curves[c]) for c in CLASSES if c in curves}
        table["ratio_to_d0"][name] = {c: curves[c]["ratio_to_d0"] for c in CLASSES if c in curves}
        table["relative"][name] = {
            p: {w: {"at": e[w]["at"], "ci_at": e[w].get("ci_at")} for w in ("relative", "cosine")}
            for p, e in runs[label]["directions"].get(state, {}).items() if p != "share_top5"}
    Path(out_json).write_text(json.dumps(table, indent=1))
    names = list(table["spans"])
    print("class".ljust(14) + "".join(n.ljust(24) for n in names))
    for c in CLASSES:
        print(c.ljust(14) + "".join(table["spans"][n].get(c, "").ljust(24) for n in names))
    print("\nS(d)/S(0) of class all at d = 1, 10, 50")
    for n in names:
        r = table["ratio_to_d0"][n]["all"]
        print(f"  {n:<16} {r['1']:.3f} {r['10']:.4f} {r['50']:.5f}")
    print(f"wrote {out_json} and figures in {figs}")


if __name__ == "__main__":
    main(*sys.argv[1:])
