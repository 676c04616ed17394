"""Step 6: the second edition's figures, from the per-model results of analyse.py.

    python experiments/study2/figures.py [--results DIR] [--out DIR]

One figure per caption, every class the text discusses in the figure it cites, class
names spelled out, log-log axes where the claim is a power law.  Bands are 95% jackknife
intervals over the 20 blocks of PTB valid of the mean over seeds; thin lines are the
single seeds (the model-to-model spread).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from measures import band, models, seed_mean, seed_measures, seed_states, states  # noqa: E402

from configs import SUMMARIES, comparable  # noqa: E402

HERE = Path(__file__).resolve().parent
# Okabe-Ito without its yellow, which is unreadable on white.
OKABE_ITO = ["#000000", "#E69F00", "#56B4E9", "#009E73", "#0072B2", "#D55E00", "#CC79A7", "#999999"]
NAMES = {"nouns": "nouns", "verbs": "verbs", "adjectives": "adjectives", "adverbs": "adverbs",
         "determiners": "determiners", "prepositions": "prepositions", "pronouns": "pronouns",
         "all": "all words", "nns_nn": "number (NNS - NN)", "vbd_vbzp": "tense (VBD - VBZ/VBP)",
         "nnp_nn": "proper vs common noun (NNP - NN)", "jjr_jj": "comparative (JJR - JJ)",
         "vbn_vbd": "participle vs past (VBN - VBD)"}
CLASSES = ["all", "nouns", "verbs", "adjectives", "adverbs", "determiners", "prepositions", "pronouns"]


def _label(cell: str, hidden: int, data: str, state: str) -> str:
    return f"{cell.upper()} {hidden}h ({data}), {state} state"


def _save(fig, path: Path) -> Path:
    """Lay out, write at 120 dpi and close a figure; its path."""
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _curve(ax, measures, get, color, label, log=True, ls="-", nonneg=False):
    est, reps, _ = seed_mean(measures, get)
    est, lo, hi = band(est, reps)
    if nonneg:  # a bias-corrected SD can fall below 0 where it is near 0; an SD cannot
        est, lo = np.maximum(est, 0), np.maximum(lo, 0)
    d = np.arange(len(est))
    sl = slice(1, None) if log else slice(None)
    ax.plot(d[sl], est[sl], color=color, label=label, lw=1.8, ls=ls)
    ax.fill_between(d[sl], lo[sl], hi[sl], color=color, alpha=0.2, lw=0)
    if len(measures) > 1:
        for m in measures:
            ax.plot(d[sl], get(m)[0][sl], color=color, lw=0.5, alpha=0.6)


def memory_classes(grid, out: Path, key: str, ratio: bool, what: str) -> list[Path]:
    """Per configuration and state: the memory curve of each class (log-log)."""
    paths = []
    for (cell, hidden, data), seeds in sorted(grid.items()):
        for state in seed_states(seeds):
            ms = seed_measures(seeds, state)
            fig, ax = plt.subplots(figsize=(6.4, 4.4))
            for i, name in enumerate(CLASSES):
                if name not in ms[0].classes or (key == "identity" and name == "all"):
                    continue
                j = ms[0].column(name)

                def get(m, j=j):
                    est, reps = m.ratio(key) if ratio else m.stat(key)
                    return est[:, j], reps[:, :, j]
                _curve(ax, ms, get, OKABE_ITO[i % 8], NAMES.get(name, name))
            ax.set(xscale="log", yscale="log", xlabel="delay d (steps)",
                   ylabel=what + (" / delay 0" if ratio else ""),
                   title=f"{_label(cell, hidden, data, state)}, {len(ms)} seed(s)")
            ax.legend(fontsize=8, ncol=2, frameon=False)
            paths.append(_save(fig, out / f"{key}{'_ratio' if ratio else ''}_{cell}{hidden}_{data}_{state}.png"))
    return paths


def properties(grid, out: Path) -> list[Path]:
    """Per configuration and state: the amount of each property kept relative to delay 0,
    with the random directions' mean and 5-95% range of the same ratio (grey)."""
    paths = []
    for (cell, hidden, data), seeds in sorted(grid.items()):
        for state in seed_states(seeds):
            ms = seed_measures(seeds, state)
            fig, ax = plt.subplots(figsize=(6.4, 4.4))
            for p, name in enumerate(ms[0].props):
                def get(m, p=p):
                    est, reps = m.prop("abs")
                    return est[:, p] / est[0, p], reps[:, :, p] / reps[:, :1, p]
                _curve(ax, ms, get, OKABE_ITO[(p + 1) % 8], NAMES.get(name, name))
            ratios = np.concatenate([m.data["prop_null_abs"] / m.data["prop_null_abs"][:1] for m in ms], axis=1)
            d = np.arange(1, len(ratios))
            ax.plot(d, ratios[1:].mean(axis=1), color="grey", lw=1.2, ls="--",
                    label="random direction (mean of 50 per seed)")
            ax.fill_between(d, *np.quantile(ratios[1:], [0.05, 0.95], axis=1), color="grey",
                            alpha=0.12, lw=0, label="random directions, 5-95%")
            ax.set(xscale="log", yscale="log", xlabel="delay d (steps)",
                   ylabel="|Gbar_d L n| / |Gbar_0 L n|",
                   title=f"{_label(cell, hidden, data, state)}, {len(ms)} seed(s)")
            ax.legend(fontsize=8, frameon=False)
            paths.append(_save(fig, out / f"properties_{cell}{hidden}_{data}_{state}.png"))
    return paths


def architectures(grid, out: Path) -> list[Path]:
    """All words' memory curve of every configuration and state, relative to delay 1 (the
    Mamba-style LM's block output holds its residual connection at delay 0, so delay 0 is
    no common reference)."""
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    i = 0
    for (cell, hidden, data), seeds in sorted(grid.items()):
        if (hidden, data) != (128, "wsj100"):  # sizes and data: configs_memory.png
            continue
        for state in seed_states(seeds):
            ms = seed_measures(seeds, state)
            j = ms[0].column("all")

            def get(m, j=j):
                est, reps = m.stat("sv_type")
                return est[:, j] / est[1, j], reps[:, :, j] / reps[:, 1:2, j]
            label = f"{cell.upper()} {hidden}h {data} {state} ({len(ms)})"
            # As in configs_memory.png: the vanilla RNN's exponential decay leaves the axes
            # (the legend says where) instead of squashing the other curves into their top.
            below = np.nonzero(seed_mean(ms, get)[0][1:] < MEMORY_FLOOR)[0]
            if below.size:
                label += f", below {MEMORY_FLOOR:g} from d = {below[0] + 1}"
            _curve(ax, ms, get, OKABE_ITO[i % 8], label, ls=CELL_STYLE.get(cell, "-"))
            i += 1
    ax.set(xscale="log", yscale="log", xlabel="delay d (steps)",
           ylabel="sum of singular values of Gbar_d L / delay 1",
           title="Architectures, 128 units, all of WSJ; PTB valid (seeds in brackets)")
    ax.set_ylim(MEMORY_FLOOR, 2)
    ax.legend(fontsize=8, frameon=False)
    return [_save(fig, out / "architectures.png")]


def raw_vs_normalised(grid, out: Path) -> list[Path]:
    """Per configuration and state: each class's memory curve without normalisation (left)
    and with the type-weighted normalisation (right), absolute (relative to delay 0 the two
    hardly differ: the normalisation moves how strongly each class enters), so that a change
    of the class order shows.  No bands on the left: the raw sums were kept without
    replicates."""
    paths = []
    for (cell, hidden, data), seeds in sorted(grid.items()):
        for state in seed_states(seeds):
            ms = seed_measures(seeds, state)
            fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
            for i, name in enumerate(CLASSES):
                if name not in ms[0].classes:
                    continue
                j = ms[0].column(name)
                raw = np.mean([m.data["sv_raw"][:, j] for m in ms], axis=0)
                d = np.arange(len(raw))
                axes[0].plot(d[1:], raw[1:], color=OKABE_ITO[i % 8], lw=1.8, label=NAMES.get(name, name))

                def get(m, j=j):
                    est, reps = m.stat("sv_type")
                    return est[:, j], reps[:, :, j]
                _curve(axes[1], ms, get, OKABE_ITO[i % 8], NAMES.get(name, name))
            axes[0].set(title="raw: Gbar_d", ylabel="sum of singular values")
            axes[1].set(title="normalised: Gbar_d L (type-weighted)", ylabel="sum of singular values")
            for ax in axes:
                ax.set(xscale="log", yscale="log", xlabel="delay d (steps)")
            axes[1].legend(fontsize=8, ncol=2, frameon=False)
            fig.suptitle(f"{_label(cell, hidden, data, state)}, {len(ms)} seed(s)")
            paths.append(_save(fig, out / f"raw_vs_normalised_{cell}{hidden}_{data}_{state}.png"))
    return paths


def ablation(grid, out: Path) -> list[Path]:
    """Per configuration: identity memory relative to delay 0 (left, gradients, the state
    the softmax reads) beside the KL of the prediction at t + d when the word at t is
    replaced by <unk> (right, behaviour), same classes and colours.  Bands: 95% jackknife
    (right: of the first seed, with one thin line per further seed)."""
    paths = []
    for (cell, hidden, data), seeds in sorted(grid.items()):
        runs = [json.loads((f / "ablation.json").read_text()) for f in seeds.values()
                if (f / "ablation.json").is_file()]
        # The state the softmax reads; the Mamba-style LM's block output holds its residual
        # connection at delay 0, so its curve is taken relative to delay 1 instead.
        state = next((s for s in ("hidden", "output") if s in seed_states(seeds)), None)
        if not runs or state is None:
            continue
        ms = seed_measures(seeds, state)
        ref = 1 if state == "output" else 0
        fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
        for i, name in enumerate(CLASSES[1:], start=1):
            if name not in ms[0].classes:
                continue
            j = ms[0].column(name)

            def get(m, j=j, ref=ref):
                est, reps = m.stat("identity")
                return est[:, j] / est[ref, j], reps[:, :, j] / reps[:, ref:ref + 1, j]
            color, label = OKABE_ITO[i % 8], NAMES.get(name, name)
            _curve(axes[0], ms, get, color, label)
            for k, rows in enumerate(runs):
                rows = sorted((r for r in rows if r["class"] == name and r["kl"] is not None),
                              key=lambda r: r["distance"])
                d = [r["distance"] for r in rows]
                if k == 0:
                    axes[1].plot(d, [r["kl"] for r in rows], color=color, lw=1.8, label=label)
                    axes[1].fill_between(d, [r["kl_lower"] for r in rows], [r["kl_upper"] for r in rows],
                                         color=color, alpha=0.2, lw=0)
                else:
                    axes[1].plot(d, [r["kl"] for r in rows], color=color, lw=0.5, alpha=0.6)
        axes[0].set(title=f"gradients: identity memory, {state} state",
                    ylabel=f"identity memory / delay {ref}")
        axes[1].set(title="behaviour: word replaced by <unk>", ylabel="KL at t + d (nats)")
        for ax in axes:
            ax.set(xscale="log", yscale="log", xlabel="delay / distance d (steps)")
        axes[1].legend(fontsize=8, ncol=2, frameon=False)
        fig.suptitle(f"{cell.upper()} {hidden}h ({data}), PTB valid, {len(ms)} seed(s)")
        paths.append(_save(fig, out / f"ablation_{cell}{hidden}_{data}.png"))
    return paths


#: Lower edge of the configurations' memory axis; line style per cell (colours repeat).
MEMORY_FLOOR = 1e-5
CELL_STYLE = {"lstm": "-", "gru": "--", "rnn": ":"}


def configurations(grid, out: Path) -> list[Path]:
    """Every configuration of LSTM, GRU and vanilla RNN in the state its softmax reads: the
    all-words memory relative to delay 0 (log-log), and the selectiveness (configs.py)."""
    configs = comparable(grid)
    paths = []
    for key, ylabel, floor in (("memory", "all words: S(d) / S(0)", MEMORY_FLOOR),
                               ("selectiveness", "SD over 7 classes of log S_c(d) / S_c(0)", None)):
        get = SUMMARIES[key][0]
        fig, ax = plt.subplots(figsize=(7.2, 4.8))
        for i, (cfg, ms) in enumerate(c for c in configs.items() if c[1]):
            cell, hidden, data = cfg
            label = f"{cell.upper()} {hidden}h {data} ({len(ms)})"
            if floor is not None:
                # An exponential decay would squash every other curve into the top of the
                # axes; it leaves them instead, and the legend says where.
                est = seed_mean(ms, get)[0]
                below = np.nonzero(est[1:] < floor)[0]
                if below.size:
                    label += f", below {floor:g} from d = {below[0] + 1}"
            _curve(ax, ms, get, OKABE_ITO[i % 8], label, ls=CELL_STYLE.get(cell, "-"),
                   nonneg=floor is None)
        ax.set(xscale="log", yscale="linear" if floor is None else "log", xlabel="delay d (steps)",
               ylabel=ylabel, title="Configurations, hidden state, PTB valid (seeds in brackets)")
        if floor is not None:
            ax.set_ylim(floor, 1)
        ax.legend(fontsize=7.5, frameon=False)
        paths.append(_save(fig, out / f"configs_{key}.png"))
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default=HERE / "results", type=Path)
    parser.add_argument("--out", default=HERE.parents[1] / "docs/figures/study2", type=Path)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    grid = models(args.results)
    grid = {k: {s: f for s, f in v.items() if states(f)} for k, v in grid.items()}
    grid = {k: v for k, v in grid.items() if v}
    paths = (memory_classes(grid, args.out, "sv_type", False, "sum of singular values of Gbar_d L")
             + memory_classes(grid, args.out, "identity", True, "identity memory")
             + properties(grid, args.out) + architectures(grid, args.out)
             + raw_vs_normalised(grid, args.out) + ablation(grid, args.out)
             + configurations(grid, args.out))
    for p in paths:
        print(f"wrote {p}")


if __name__ == "__main__":
    main()
