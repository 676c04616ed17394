"""Step 6: the second edition's figures, from the per-model results of analyse.py.

    python experiments/study2/figures.py [--results DIR] [--out DIR]

One figure per caption, every class the text discusses in the figure it cites, class
names spelled out, log-log axes where the claim is a power law.  Bands are 95% jackknife
intervals over the 20 blocks of PTB valid of the mean over seeds; thin lines are the
single seeds (the model-to-model spread).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from measures import Measures, band, models, seed_mean, states  # noqa: E402

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


def _curve(ax, measures, get, color, label, log=True):
    est, reps, _ = seed_mean(measures, get)
    est, lo, hi = band(est, reps)
    d = np.arange(len(est))
    sl = slice(1, None) if log else slice(None)
    ax.plot(d[sl], est[sl], color=color, label=label, lw=1.8)
    ax.fill_between(d[sl], lo[sl], hi[sl], color=color, alpha=0.2, lw=0)
    if len(measures) > 1:
        for m in measures:
            ax.plot(d[sl], get(m)[0][sl], color=color, lw=0.5, alpha=0.6)


def memory_classes(grid, out: Path, key: str, ratio: bool, what: str) -> list[Path]:
    """Per configuration and state: the memory curve of each class (log-log)."""
    paths = []
    for (cell, hidden, data), seeds in sorted(grid.items()):
        for state in states(next(iter(seeds.values()))):
            ms = [Measures(f, state) for f in seeds.values()]
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
            fig.tight_layout()
            path = out / f"{key}{'_ratio' if ratio else ''}_{cell}{hidden}_{data}_{state}.png"
            fig.savefig(path, dpi=120)
            plt.close(fig)
            paths.append(path)
    return paths


def properties(grid, out: Path) -> list[Path]:
    """Per configuration and state: the amount of each property kept relative to delay 0,
    with the random-direction mean of the same ratio (grey)."""
    paths = []
    for (cell, hidden, data), seeds in sorted(grid.items()):
        for state in states(next(iter(seeds.values()))):
            ms = [Measures(f, state) for f in seeds.values()]
            fig, ax = plt.subplots(figsize=(6.4, 4.4))
            for p, name in enumerate(ms[0].props):
                def get(m, p=p):
                    est, reps = m.prop("abs")
                    return est[:, p] / est[0, p], reps[:, :, p] / reps[:, :1, p]
                _curve(ax, ms, get, OKABE_ITO[(p + 1) % 8], NAMES.get(name, name))
            null = np.mean([(m.data["prop_null_abs"] / m.data["prop_null_abs"][:1]).mean(axis=1)
                            for m in ms], axis=0)
            ax.plot(np.arange(1, len(null)), null[1:], color="grey", lw=1.2, ls="--",
                    label="random direction (mean of 50)")
            ax.set(xscale="log", yscale="log", xlabel="delay d (steps)",
                   ylabel="|Gbar_d L n| / |Gbar_0 L n|",
                   title=f"{_label(cell, hidden, data, state)}, {len(ms)} seed(s)")
            ax.legend(fontsize=8, frameon=False)
            fig.tight_layout()
            path = out / f"properties_{cell}{hidden}_{data}_{state}.png"
            fig.savefig(path, dpi=120)
            plt.close(fig)
            paths.append(path)
    return paths


def architectures(grid, out: Path) -> list[Path]:
    """All words' memory curve of every configuration and state, relative to delay 1 (the
    Mamba-style LM's block output holds its residual connection at delay 0, so delay 0 is
    no common reference)."""
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    i = 0
    for (cell, hidden, data), seeds in sorted(grid.items()):
        for state in states(next(iter(seeds.values()))):
            ms = [Measures(f, state) for f in seeds.values()]
            j = ms[0].column("all")

            def get(m, j=j):
                est, reps = m.stat("sv_type")
                return est[:, j] / est[1, j], reps[:, :, j] / reps[:, 1:2, j]
            _curve(ax, ms, get, OKABE_ITO[i % 8], f"{cell.upper()} {hidden}h {data} {state} ({len(ms)})")
            i += 1
    ax.set(xscale="log", yscale="log", xlabel="delay d (steps)",
           ylabel="sum of singular values of Gbar_d L / delay 1",
           title="All words, PTB valid (seeds in brackets)")
    ax.legend(fontsize=8, frameon=False)
    fig.tight_layout()
    path = out / "architectures.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return [path]


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
             + properties(grid, args.out) + architectures(grid, args.out))
    for p in paths:
        print(f"wrote {p}")


if __name__ == "__main__":
    main()
