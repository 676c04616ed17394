"""Figures and key numbers of the PTB study, from the results the step scripts wrote.

Usage: python figures.py RUN_DIR FIG_DIR [MODEL_NAME [GRAD_DIR [TABLES [MODEL [TAG [STATES
       [PREFIX]]]]]]]

Reads GRAD_DIR/<model>_<state>.h5 for each of STATES (default "cell hidden"; with per-block
sums), the embedding statistics RUN_DIR/analysis/<TAG>.embedding-stats.npz, the difference
vectors RUN_DIR/analysis/<TAG>_diff_*.npy and the training metrics; writes PNG figures
(names starting with PREFIX) to FIG_DIR and every number the write-up quotes to
TABLES/summary.json.
Confidence bands are 95% delete-one-block jackknife intervals (stategrad.analysis.uncertainty).
"""

from __future__ import annotations

import csv
import json
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from stategrad import analysis  # noqa: E402
from stategrad.gradients import load_result
from stategrad.report import OKABE_ITO

FRACTION = 0.1
REPORT_DELAYS = (0, 1, 2, 5, 10, 20, 50, 100, 199)
# Classes drawn in the per-class figure (all are in the tables).
SHOWN = ("all", "nouns", "verbs", "adjectives", "adverbs", "determiners", "prepositions",
         "pronouns", "numbers")
STYLES = ("-", "--", "-.", ":")


def class_curves(result, L: np.ndarray) -> dict:
    """Sum of singular values of Gbar_d L per class, its jackknife band, its span and the
    range of the span over the jackknife replicates (stategrad's memory --ci)."""
    report = analysis.memory_curves(result, normalize=L, fraction=FRACTION, interval="jackknife")
    out = {}
    for c in report.curves:
        est = np.array([np.nan if t is None else t for t in c.totals])
        span = c.span.delay if c.span.status == "falls" else (-1 if c.span.status == "never" else None)
        out[c.class_name] = {
            "count_d0": int(c.counts[0]),
            "sum": est.tolist(),
            "lower": [np.nan if x is None else x for x in c.lower],
            "upper": [np.nan if x is None else x for x in c.upper],
            "sv1": [np.nan if x is None else x for x in c.top1],
            "span": span,
            "span_jackknife_min": c.span_range[0],
            "span_jackknife_max": c.span_range[1],
            "span_jackknife_never": c.span_never,
            "at": {str(d): float(est[d]) for d in REPORT_DELAYS if d < len(est)},
            "ratio_to_d0": {str(d): float(est[d] / est[0]) for d in REPORT_DELAYS if d < len(est)},
        }
    return out


def direction_curves(result, L: np.ndarray, Z: np.ndarray, vectors: dict[str, np.ndarray]) -> dict:
    names = list(vectors)
    dirs = np.stack([analysis.whitened_direction(vectors[n], Z) for n in names])
    reps = analysis.replicates(result, analysis.direction_statistic(dirs, L, k=5),
                                  classes=["all"], method="jackknife")
    band = reps.derive()
    P = len(names)
    out = {}
    for p, name in enumerate(names):
        entry = {}
        for what, col in (("relative", p), ("cosine", P + p)):
            est = band.estimate[:, 0, col]
            entry[what] = {"estimate": est.tolist(), "lower": band.lower[:, 0, col].tolist(),
                           "upper": band.upper[:, 0, col].tolist(),
                           "at": {str(d): float(est[d]) for d in REPORT_DELAYS if d < len(est)},
                           "ci_at": {str(d): [float(band.lower[d, 0, col]),
                                              float(band.upper[d, 0, col])]
                                     for d in REPORT_DELAYS if d < len(est)}}
        out[name] = entry
    out["share_top5"] = band.estimate[:, 0, 2 * P].tolist()
    return out


def delay_axis(ax, max_delay: int = 199) -> None:
    """Delays on a linear scale up to 10 and logarithmic beyond, as in every study figure."""
    ax.set_xscale("symlog", linthresh=10)
    ax.set_xlim(0, max_delay)
    ax.set_xlabel("delay d")


def save(fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def _band(ax, x, entry, lower="lower", upper="upper", **kw):
    lo, hi = np.asarray(entry[lower], float), np.asarray(entry[upper], float)
    ax.fill_between(x, lo, hi, alpha=0.18, linewidth=0, color=kw.get("color"))


def plot_classes(curves: dict[str, dict], path: Path) -> None:
    states = list(curves)
    fig, axes = plt.subplots(1, len(states), figsize=(3.6 * len(states), 3.0), sharey=True,
                             squeeze=False)
    axes = axes[0]
    for ax, state in zip(axes, states, strict=True):
        for i, name in enumerate(SHOWN):
            c = curves[state][name]
            y = np.asarray(c["sum"], float) / c["sum"][0]
            x = np.arange(len(y))
            color = OKABE_ITO[i % len(OKABE_ITO)]
            ax.plot(x, y, color=color, linestyle=STYLES[i // len(OKABE_ITO)], linewidth=1.1,
                    label=f"{name} (n={c['count_d0']})")
            lo = np.asarray(c["lower"], float) / c["sum"][0]
            hi = np.asarray(c["upper"], float) / c["sum"][0]
            ax.fill_between(x, lo, hi, alpha=0.15, linewidth=0, color=color)
        ax.axhline(FRACTION, color="grey", linewidth=0.6, linestyle=":")
        ax.set_yscale("log")
        # below 1e-4 of the delay-0 value the curves carry no visible information
        ax.set_ylim(1e-4, 1.5)
        delay_axis(ax)
        ax.set_title(f"{state} state", fontsize=9)
    axes[0].set_ylabel("sum of s.v. of $\\bar G_d L$ / value at d=0")
    axes[-1].legend(fontsize=6, loc="lower left", frameon=False)
    save(fig, path)


def plot_cell_vs_hidden(curves: dict[str, dict], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(3.6, 2.8))
    for i, name in enumerate(("all", "nouns", "determiners")):
        for state, ls in (("cell", "-"), ("hidden", "--")):
            c = curves[state][name]
            x = np.arange(len(c["sum"]))
            color = OKABE_ITO[i]
            ax.plot(x, c["sum"], color=color, linestyle=ls, linewidth=1.1, label=f"{name}, {state}")
            _band(ax, x, c, color=color)
    ax.set_yscale("log")
    delay_axis(ax)
    ax.set_ylabel("sum of singular values of $\\bar G_d L$")
    ax.legend(fontsize=6, frameon=False)
    save(fig, path)


def plot_relative(directions: dict[str, dict], path: Path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(7.2, 2.8))
    states = list(directions)
    props = [n for n in directions[states[0]] if n != "share_top5"]
    for ax, what in zip(axes, ("relative", "cosine"), strict=True):
        for i, name in enumerate(props):
            for state, ls in zip(states, ("-", "--"), strict=False):
                e = directions[state][name][what]
                x = np.arange(len(e["estimate"]))
                color = OKABE_ITO[i]
                ax.plot(x, e["estimate"], color=color, linestyle=ls, linewidth=1.1,
                        label=f"{name}, {state}")
                _band(ax, x, e, color=color)
        delay_axis(ax)
        ax.set_ylim(0, 1)
    axes[0].set_ylabel("relative memory $|\\bar G_d L n| / s_1$")
    axes[1].set_ylabel("cosine with top-5 right s.v. subspace")
    axes[1].legend(fontsize=6, frameon=False)
    save(fig, path)


def plot_frequency(curves: dict[str, dict], path: Path) -> None:
    """Absolute and relative memory per training-frequency band, cell and hidden state."""
    fig, axes = plt.subplots(1, 2, figsize=(7.2, 3.0))
    states = list(curves)
    names = [n for n in curves[states[0]] if n != "all"]
    for i, name in enumerate(names):
        for state, ls in zip(states, ("-", "--"), strict=False):
            c = curves[state][name]
            if c["count_d0"] == 0:
                continue
            x = np.arange(len(c["sum"]))
            color = OKABE_ITO[i % len(OKABE_ITO)]
            label = f"{name} (n={c['count_d0']}), {state}"
            axes[0].plot(x, c["sum"], color=color, linestyle=ls, linewidth=1.1, label=label)
            _band(axes[0], x, c, color=color)
            axes[1].plot(x, np.asarray(c["sum"], float) / c["sum"][0], color=color,
                         linestyle=ls, linewidth=1.1)
    for ax in axes:
        ax.set_yscale("log")
        delay_axis(ax)
    axes[1].set_ylim(1e-4, 1.5)
    axes[1].axhline(FRACTION, color="grey", linewidth=0.6, linestyle=":")
    axes[0].set_ylabel("sum of s.v. of $\\bar G_d L$")
    axes[1].set_ylabel("relative to d = 0")
    axes[0].legend(fontsize=5.5, frameon=False, loc="lower left")
    save(fig, path)


def plot_training(metrics: Path, path: Path, analysed_epoch: int | None = None) -> list[dict]:
    with open(metrics, newline="") as fh:
        rows = list(csv.DictReader(fh))
    ep = [int(r["epoch"]) for r in rows]
    fig, ax = plt.subplots(figsize=(3.6, 2.6))
    ax.plot(ep, [float(r["train_ppl"]) for r in rows], "o-", ms=3, label="train (WSJ, dropout on)",
            color=OKABE_ITO[0])
    ax.plot(ep, [float(r["valid_ppl"]) for r in rows], "s-", ms=3, label="PTB valid",
            color=OKABE_ITO[1])
    if analysed_epoch is not None and analysed_epoch < max(ep):
        ax.axvline(analysed_epoch, color="grey", linewidth=0.6, linestyle=":")
        ax.annotate(f"model analysed\n(epoch {analysed_epoch})", (analysed_epoch, ax.get_ylim()[1]),
                    fontsize=6, ha="left", va="top", xytext=(3, -3), textcoords="offset points")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("perplexity")
    ax.legend(fontsize=7, frameon=False)
    save(fig, path)
    return rows


def main(run_dir: str, fig_dir: str, model_name: str = "lstm_64e_256h",
         grad_dir: str | None = None, tables: str | None = None,
         model: str | None = None, tag: str | None = None, states: str = "cell hidden",
         prefix: str = "") -> None:
    run, figs = Path(run_dir), Path(fig_dir)
    grads = Path(grad_dir) if grad_dir else run / "gradients"
    tabs = Path(tables) if tables else run / "tables"
    tag = tag or model_name
    state_list = states.split()
    tabs.mkdir(parents=True, exist_ok=True)
    figs.mkdir(parents=True, exist_ok=True)
    stats = analysis.load_embedding_stats(run / "analysis" / f"{tag}.embedding-stats.npz")
    L, Z = stats.cholesky, stats.whitening
    vectors = {}
    for name, label in (("nns_nn", "NNS-NN"), ("vbd_vbz", "VBD-VBZ/VBP")):
        p = run / "analysis" / f"{tag}_diff_{name}.npy"
        if p.is_file():
            vectors[label] = np.load(p)
    summary: dict = {"model": model_name, "tag": tag, "states": state_list, "curves": {},
                     "directions": {}, "seconds": {}}
    for state in state_list:
        began = time.perf_counter()
        res = load_result(grads / f"{model_name}_{state}.h5")
        summary["metadata_" + state] = {k: res.metadata.get(k) for k in ("sampling", "block_size", "run")}
        summary["curves"][state] = class_curves(res, L)
        if vectors:
            summary["directions"][state] = direction_curves(res, L, Z, vectors)
        del res
        summary["seconds"][state] = round(time.perf_counter() - began, 1)
        print(f"{state}: {summary['seconds'][state]} s", flush=True)
    freq_paths = {state: grads / f"{model_name}_freq_{state}.h5" for state in state_list}
    if all(p.is_file() for p in freq_paths.values()):
        summary["frequency"] = {}
        for state, p in freq_paths.items():
            res = load_result(p)
            summary["frequency"][state] = class_curves(res, L)
            del res
        plot_frequency(summary["frequency"], figs / f"{prefix}memory_frequency.png")
    plot_classes(summary["curves"], figs / f"{prefix}memory_classes.png")
    if len(state_list) > 1:
        plot_cell_vs_hidden(summary["curves"], figs / f"{prefix}memory_cell_vs_hidden.png")
    if vectors:
        plot_relative(summary["directions"], figs / f"{prefix}relative_memory.png")
    metrics = run / "models" / model_name / "metrics.csv"
    if metrics.is_file():
        epoch = None
        if model:
            # the epoch of the analysed checkpoint, marked when training went on past it
            from stategrad.lm import read_checkpoint

            epoch = (read_checkpoint(model).get("training") or {}).get("epoch")
        summary["training"] = plot_training(metrics, figs / f"{prefix}training.png", epoch)
    out = tabs / "summary.json"
    out.write_text(json.dumps(summary, indent=1))
    print(f"wrote {out} and figures in {figs}")
    for state in state_list:
        print(f"\n{state}: class, n(d=0), S(0), S(1)/S(0), S(10)/S(0), S(50)/S(0), span (jackknife range)")
        for name, c in sorted(summary["curves"][state].items(),
                              key=lambda kv: -(kv[1]["span"] if kv[1]["span"] is not None else -99)):
            r = c["ratio_to_d0"]
            print(f"  {name:<13} {c['count_d0']:>5} {c['sum'][0]:8.3f} {r['1']:7.3f} {r['10']:7.4f} "
                  f"{r['50']:8.5f}  {c['span']} ({c['span_jackknife_min']}-{c['span_jackknife_max']},"
                  f" never {c['span_jackknife_never']})")


if __name__ == "__main__":
    main(*sys.argv[1:])
