"""Step 5: the second edition's tables, from the small per-model results of analyse.py.

    python experiments/study2/tables.py [--results DIR] [--out FILE.md] [--delays 1,2,5]

The statistics (paired jackknife over the text's 20 blocks, bias-corrected centres, t
intervals) are those of ``measures.py``.  A configuration with several seeds gets two
spreads side by side: the text-based interval of the mean over seeds (how much another
text would move it) and the model-to-model standard deviation over seeds (how much
another training run would); ``configs.py`` compares configurations with both.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np
from measures import (
    Measures,
    band,
    floor_reached,
    fmt,
    interval,
    models,
    ppl,
    seed_mean,
    seed_measures,
    seed_states,
    states,
    timings,
)
from scipy import stats

from configs import SEL_CLASSES, config_tables

HERE = Path(__file__).resolve().parent
DELAYS = (1, 2, 5, 10, 20, 50)


# --- tables --------------------------------------------------------------------------------

def _epoch_seconds(folder: Path) -> list[float]:
    """The training time of each epoch as the trainer logged it (metrics.csv), which,
    unlike timings.tsv, keeps the epochs run before an interruption and resume."""
    path = folder / "metrics.csv"
    if not path.is_file():
        return []
    with open(path) as f:
        return [float(row["seconds"]) for row in csv.DictReader(f)]


def _resumed(folder: Path, step: str) -> bool:
    """Whether a step's log says it resumed: timings.tsv then holds only its last part."""
    return any("resuming from" in p.read_text() for p in folder.glob(f"{step}_*.log"))


def perplexity_table(grid) -> list[str]:
    lines = ["| model | seed | valid | test | epochs | train (min) | gradients (min) | ablation (min) | analysis (min) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for (cell, hidden, data), seeds in sorted(grid.items()):
        for seed, folder in sorted(seeds.items()):
            t, epochs = timings(folder), _epoch_seconds(folder)
            train = sum(epochs) if epochs else t.get("train", 0)
            grads = (">=" if _resumed(folder, "gradients") else "") + f"{t.get('gradients', 0) / 60:.0f}"
            lines.append(f"| {cell} {hidden}h {data} | {seed} | {fmt(ppl(folder / 'ppl_valid.txt'), 4)} | "
                         f"{fmt(ppl(folder / 'ppl_test.txt'), 4)} | {len(epochs) or None} | {train / 60:.0f} | "
                         f"{grads} | {t.get('ablation', 0) / 60:.1f} | {t.get('analyse', 0) / 60:.0f} |")
    return lines


def _kept(s: np.ndarray, d: int) -> str:
    """S(d) / S(0), or n/a where the run stops before delay d (the Mamba-style LM's 0-49)."""
    return fmt(s[d] / s[0], 3) if d < len(s) else "n/a"


def decay_table(grid) -> list[str]:
    """Power law or exponential: R^2 of log S(d) against log d and against d, class all,
    delays 1..D-1 (the papers: 'quick but not exponential'); and the per-step retention.
    The fit stops before the first delay at which S(d) is within its noise floor (or 0: a
    float32 gradient underflows near 1e-45), where log S(d) is noise, not memory.  Rows
    for PTB valid (state) and for the model's held-out text (sec20_state, brownheld_state),
    with how much of delay 0 is left at delays 10 and 50 (on held-out text these are
    the only numbers that compare models trained on different text)."""
    lines = ["| model | state | seed | delays fitted | R^2 power law | R^2 exponential | log-log slope | "
             "retention d 1-5 | d 20-50 | S(10)/S(0) | S(50)/S(0) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for (cell, hidden, data), seeds in sorted(grid.items()):
        for seed, folder in sorted(seeds.items()):
            for state in states(folder) + states(folder, "held"):
                m = Measures(folder, state)
                s = m.stat("sv_type")[0][:, m.column("all")]
                floor = m.data["sv_type_floor"][:, m.column("all")] if "sv_type_floor" in m.data else 0 * s
                end = 1 + int(np.sum(~floor_reached(s[1:], floor[1:])))
                if end < 6:  # too few delays above the floor for a fit and the retention over 1-5
                    lines.append(f"| {cell} {hidden}h {data} | {state} | {seed} | 1-{end - 1} | n/a | n/a | n/a | n/a "
                                 f"| n/a | {_kept(s, 10)} | {_kept(s, 50)} |")
                    continue
                d = np.arange(1, end)
                y = np.log(s[1:end])
                r_pow = stats.linregress(np.log(d), y)
                r_exp = stats.linregress(d, y)
                late = (s[50] / s[20]) ** (1 / 30) if end > 50 else np.nan
                lines.append(f"| {cell} {hidden}h {data} | {state} | {seed} | 1-{end - 1} | {r_pow.rvalue ** 2:.3f} | "
                             f"{r_exp.rvalue ** 2:.3f} | {r_pow.slope:.2f} | {(s[5] / s[1]) ** 0.25:.3f} | "
                             f"{fmt(late, 3)} | {_kept(s, 10)} | {_kept(s, 50)} |")
    return lines


def class_table(grid, key: str, classes: list[str], ratio: bool) -> list[str]:
    """Per configuration and state: the statistic of each class at DELAYS (mean over seeds,
    text interval, seed SD), with ~ where it is not above its noise floor in some seed."""
    what = f"{key} relative to delay 0" if ratio else key
    lines = [f"**{what}** (mean over seeds [95% text interval], seed SD in parentheses; "
             "~: within the noise floor in at least one seed)", ""]
    for (cell, hidden, data), seeds in sorted(grid.items()):
        for state in seed_states(seeds):
            ms = seed_measures(seeds, state)
            get = (lambda m: m.ratio(key)) if ratio else (lambda m: m.stat(key))
            est, reps, sd = seed_mean(ms, get)
            est, lo, hi = band(est, reps)
            floor_hit = np.any([m.data[key] <= m.data[f"{key}_floor"] for m in ms], axis=0) \
                if f"{key}_floor" in ms[0].data else np.zeros_like(est, bool)
            lines += [f"*{cell} {hidden}h {data}, {state} state, {len(ms)} seed(s)*", "",
                      "| class | n (d=0) | " + " | ".join(f"d={d}" for d in DELAYS) + " |",
                      "|---|---|" + "---|" * len(DELAYS)]
            for name in classes:
                if name not in ms[0].classes:
                    continue
                j = ms[0].column(name)
                n = int(ms[0].data["counts"][0, j])
                cells = [f"{interval(est[d, j], lo[d, j], hi[d, j])} ({fmt(sd[d, j], 2)})"
                         + ("~" if floor_hit[d, j] else "") if d < len(est) else "n/a" for d in DELAYS]
                lines.append(f"| {name} | {n} | " + " | ".join(cells) + " |")
            lines.append("")
    return lines


def paired_cells(ms: list[Measures], get) -> list[str]:
    """Cells of a paired difference per delay: mean over seeds [95% paired text interval],
    * where the interval excludes 0 and every seed has the same sign.  ``get(m)`` gives a
    model's (estimate (D,), filled replicates (B, D)) of the difference."""
    est, reps, _ = seed_mean(ms, get)
    est, lo, hi = band(est, reps)
    signs = np.array([np.sign(get(m)[0]) for m in ms])
    same = np.all(signs == signs[0], axis=0)
    return [interval(est[d], lo[d], hi[d]) + ("*" if (lo[d] > 0 or hi[d] < 0) and same[d] else "")
            if d < len(est) else "n/a" for d in DELAYS]


def state_table(grid) -> list[str]:
    """The LSTM's cell state minus its hidden state: all words' S(d) / S(0), paired on the
    blocks, for the seeds that have both."""
    lines = ["**Cell state - hidden state** (all words, S(d) / S(0); mean over seeds [95% paired "
             "text interval])", "", "| model | seeds | " + " | ".join(f"d={d}" for d in DELAYS) + " |",
             "|---|---|" + "---|" * len(DELAYS)]
    for (cell, hidden, data), seeds in sorted(grid.items()):
        both = {k: f for k, f in seeds.items() if {"cell", "hidden"} <= set(states(f))}
        if not both:
            continue
        pairs = [(Measures(f, "cell"), Measures(f, "hidden")) for f in both.values()]

        def get(m):
            est, reps = m.ratio("sv_type")
            j = m.column("all")
            return est[:, j], reps[:, :, j]
        est = np.mean([get(c)[0] - get(h)[0] for c, h in pairs], axis=0)
        reps = np.mean([get(c)[1] - get(h)[1] for c, h in pairs], axis=0)
        est, lo, hi = band(est, reps)
        lines.append(f"| {cell} {hidden}h {data} | {len(pairs)} | "
                     + " | ".join(interval(est[d], lo[d], hi[d]) for d in DELAYS) + " |")
    return lines + [""]


def paired_class_table(grid, key: str, pairs: list[tuple[str, str]], ratio: bool) -> list[str]:
    """Paired differences A - B of a class statistic, at DELAYS, per configuration."""
    lines = [f"**Paired differences of {key}{' / delay 0' if ratio else ''}** "
             "(mean over seeds [95% paired text interval]; * where the interval excludes 0 "
             "and every seed has the same sign)", ""]
    for (cell, hidden, data), seeds in sorted(grid.items()):
        for state in seed_states(seeds):
            ms = seed_measures(seeds, state)
            lines += [f"*{cell} {hidden}h {data}, {state} state, {len(ms)} seed(s)*", "",
                      "| A - B | " + " | ".join(f"d={d}" for d in DELAYS) + " |",
                      "|---|" + "---|" * len(DELAYS)]
            for a, b in pairs:
                if a not in ms[0].classes or b not in ms[0].classes:
                    continue

                def get(m, a=a, b=b):
                    est, reps = m.ratio(key) if ratio else m.stat(key)
                    return (est[:, m.column(a)] - est[:, m.column(b)],
                            reps[:, :, m.column(a)] - reps[:, :, m.column(b)])
                lines.append(f"| {a} - {b} | " + " | ".join(paired_cells(ms, get)) + " |")
            lines.append("")
    return lines


def property_table(grid) -> list[str]:
    """The amount of each property kept, |Gbar_d L n| relative to delay 0, against a random
    direction's; and the papers' relative memory with its random-direction mean."""
    lines = ["**Properties**: |Gbar_d L n| / |Gbar_0 L n| (mean over seeds [95% text interval], seed SD) "
             "and the same ratio for random whitened directions (r, mean of 50); the papers' "
             "relative memory |Gbar_d L n| / s_1 beside the mean (r) and 95th percentile (r95) of "
             "the same for 50 random whitened directions (with several seeds: in how many seeds the "
             "property is beyond its own seed's r95)", ""]
    for (cell, hidden, data), seeds in sorted(grid.items()):
        for state in seed_states(seeds):
            ms = seed_measures(seeds, state)
            lines += [f"*{cell} {hidden}h {data}, {state} state, {len(ms)} seed(s)*", "",
                      "| property | " + " | ".join(f"d={d}" for d in DELAYS) + " |",
                      "|---|" + "---|" * len(DELAYS)]
            for p, name in enumerate(ms[0].props):
                def get(m, p=p):
                    est, reps = m.prop("abs")
                    return est[:, p] / est[0, p], reps[:, :, p] / reps[:, :1, p]
                est, reps, sd = seed_mean(ms, get)
                est, lo, hi = band(est, reps)
                rels = np.array([m.prop("rel")[0][:, p] for m in ms])
                rnd = np.mean([(m.data["prop_null_abs"] / m.data["prop_null_abs"][:1]).mean(axis=1)
                               for m in ms], axis=0)
                null = np.mean([m.data["prop_null_rel"].mean(axis=1) for m in ms], axis=0)
                q95s = np.array([np.quantile(m.data["prop_null_rel"], 0.95, axis=1) for m in ms])
                rel, q95 = rels.mean(axis=0), q95s.mean(axis=0)
                # A mean over seeds can sit above the mean r95 on the strength of one seed:
                # say in how many seeds the property is beyond its own random 95th percentile.
                above = (rels > q95s).sum(axis=0)
                seeds_above = [f"; {n}/{len(ms)} seeds above" if len(ms) > 1 else "" for n in above]
                cells = [f"{interval(est[d], lo[d], hi[d])} (SD {fmt(sd[d], 2)}; r {fmt(rnd[d], 2)}); "
                         f"rel {fmt(rel[d], 2)} (r {fmt(null[d], 2)}, r95 {fmt(q95[d], 2)}{seeds_above[d]})"
                         if d < len(est) else "n/a" for d in DELAYS]
                lines.append(f"| {name} | " + " | ".join(cells) + " |")
            lines.append("")
    return lines


def weighting_table(grid, classes: list[str]) -> list[str]:
    """How much the normalisation's weighting (type: the papers'; token) moves the numbers:
    the class order at each delay (Spearman rho between the two) and the 10% spans."""
    lines = ["**Type vs token weighting of the normalisation** (class order by sum of singular "
             "values at delay d: Spearman rho between the two weightings; spans at 10% of delay 0)", "",
             "| model | state | seed | " + " | ".join(f"rho d={d}" for d in DELAYS) +
             " | spans type | spans token |", "|---|---|---|" + "---|" * len(DELAYS) + "---|---|"]
    for (cell, hidden, data), seeds in sorted(grid.items()):
        for seed, folder in sorted(seeds.items()):
            for state in states(folder):
                m = Measures(folder, state)
                cols = [m.column(c) for c in classes if c in m.classes]
                t, k = m.stat("sv_type")[0][:, cols], m.stat("sv_token")[0][:, cols]
                rho = [stats.spearmanr(t[d], k[d])[0] if d < len(t) else np.nan for d in DELAYS]
                spans = []
                for s in (t, k):
                    below = s < 0.1 * s[:1]
                    spans.append(",".join(str(int(np.argmax(below[:, i]))) if below[:, i].any() else ">D"
                                          for i in range(len(cols))))
                lines.append(f"| {cell} {hidden}h {data} | {state} | {seed} | " +
                             " | ".join(fmt(r, 2) for r in rho) + f" | {spans[0]} | {spans[1]} |")
    return lines


def raw_table(grid, classes: list[str]) -> list[str]:
    """Raw vs normalised on real text: the class order by the sum of singular values of
    Gbar_d (raw) and of Gbar_d L (type-weighted), Spearman rho per delay, and which class
    leads under each."""
    lines = ["**Raw vs normalised** (class order by sum of singular values at delay d: "
             "Spearman rho between Gbar_d and Gbar_d L over 13 classes; the leading one of the 7 large classes under each)", "",
             "| model | state | seed | " + " | ".join(f"rho d={d}" for d in DELAYS) +
             " | leader raw (d=1, 20) | leader normalised (d=1, 20) |",
             "|---|---|---|" + "---|" * len(DELAYS) + "---|---|"]
    for (cell, hidden, data), seeds in sorted(grid.items()):
        for seed, folder in sorted(seeds.items()):
            for state in states(folder):
                m = Measures(folder, state)
                names = [c for c in classes if c in m.classes]
                cols = [m.column(c) for c in names]
                raw, norm = m.data["sv_raw"][:, cols], m.stat("sv_type")[0][:, cols]
                rho = [stats.spearmanr(raw[d], norm[d])[0] if d < len(raw) else np.nan for d in DELAYS]
                large = [i for i, c in enumerate(names) if c in SEL_CLASSES]  # small classes are noisy
                lead = [", ".join(names[large[int(np.argmax(x[d, large]))]] for d in (1, 20) if d < len(x))
                        for x in (raw, norm)]
                lines.append(f"| {cell} {hidden}h {data} | {state} | {seed} | " +
                             " | ".join(fmt(r, 2) for r in rho) + f" | {lead[0]} | {lead[1]} |")
    return lines


def frequency_table(grid) -> list[str]:
    """Section 20, token classes: rare (rank 1001+) minus frequent (rank 1-100) words of the
    same part of speech, paired on the blocks: the sum of singular values (absolute) and
    its ratio to delay 0 (relative decay).  The papers: rare words are remembered better
    and longer."""
    lines = ["**Rare minus frequent words within a part of speech** (held-out text: WSJ "
             "section 20, or the held-out Brown files for Brown models; gold tags; mean over seeds [95% paired text interval]; * excludes 0 with every seed "
             "of the same sign)", ""]
    for (cell, hidden, data), seeds in sorted(grid.items()):
        held = sorted({s for f in seeds.values() for s in states(f, "held")})
        for state in held:  # the seeds that have this held-out text analysed
            ms = [Measures(f, state) for f in seeds.values()
                  if (f / f"measures_{state}.npz").is_file()]
            lines += [f"*{cell} {hidden}h {data}, {state} state, {len(ms)} seed(s)*", "",
                      "| class: rare - frequent | n (d=0) | measure | " + " | ".join(f"d={d}" for d in DELAYS) + " |",
                      "|---|---|---|" + "---|" * len(DELAYS)]
            for pos in ("NOUN", "VERB", "ADJ", "ADV"):
                a, b = f"{pos}@1001+", f"{pos}@1-100"
                if a not in ms[0].classes or b not in ms[0].classes:
                    continue
                n = [int(ms[0].data["counts"][0, ms[0].column(c)]) for c in (a, b)]
                for ratio in (False, True):
                    def get(m, a=a, b=b, ratio=ratio):
                        est, reps = m.ratio("sv_type") if ratio else m.stat("sv_type")
                        return (est[:, m.column(a)] - est[:, m.column(b)],
                                reps[:, :, m.column(a)] - reps[:, :, m.column(b)])
                    lines.append(f"| {pos} | {n[0]} / {n[1]} | {'/ delay 0' if ratio else 'sum'} | "
                                 + " | ".join(paired_cells(ms, get)) + " |")
            lines.append("")
    return lines


def ablation_table(grid, classes: list[str]) -> list[str]:
    """Context ablation (ablation.json): the KL divergence of the prediction at t + d when
    the word at t is replaced by <unk>, per class, with its 95% jackknife interval; and,
    per model, Spearman's rho between the classes' KL at distance d and their identity
    memory at delay d - 1 (the state the prediction is made from) in the state the softmax
    reads."""
    lines = ["**Context ablation** (KL at t + d, nats; word at t replaced by <unk>; 95% "
             "jackknife interval; float64; per seed)", ""]
    for (cell, hidden, data), seeds in sorted(grid.items()):
        for seed, folder in sorted(seeds.items()):
            path = folder / "ablation.json"
            if not path.is_file():
                continue
            rows = {(r["class"], r["distance"]): r for r in json.loads(path.read_text())}
            lines += [f"*{cell} {hidden}h {data}, seed {seed}*", "",
                      "| class | " + " | ".join(f"d={d}" for d in DELAYS) + " |",
                      "|---|" + "---|" * len(DELAYS)]
            for name in classes:
                cells = [interval(rows[name, d]["kl"], rows[name, d]["kl_lower"], rows[name, d]["kl_upper"])
                         if (name, d) in rows and rows[name, d]["kl"] is not None else "n/a" for d in DELAYS]
                lines.append(f"| {name} | " + " | ".join(cells) + " |")
            # The state the softmax reads; the prediction at t + d is made from the state
            # after t + d - 1, whose gradient is that of delay d - 1.  Absolute, as the KL
            # is: a class that enters strongly and keeps it matters more downstream.
            state = next(s for s in ("hidden", "output") if s in states(folder))
            m = Measures(folder, state)
            ident = m.stat("identity")[0]
            names = [c for c in classes if c != "all" and c in m.classes]
            rho = []
            for d in DELAYS:
                kl = [rows.get((c, d), {}).get("kl") for c in names]
                ok = [i for i, k in enumerate(kl) if k is not None and d - 1 < len(ident)
                      and np.isfinite(ident[d - 1, m.column(names[i])])]
                rho.append(stats.spearmanr([kl[i] for i in ok], [ident[d - 1, m.column(names[i])] for i in ok])[0]
                           if len(ok) > 2 else np.nan)
            lines += ["", f"Spearman rho over classes between KL at distance d and identity memory "
                      f"at delay d - 1 ({state} state): "
                      + ", ".join(f"d={d}: {fmt(r, 2)}" for d, r in zip(DELAYS, rho, strict=True)), ""]
    return lines


GROUPED = ["all", "nouns", "verbs", "adjectives", "adverbs", "determiners", "prepositions",
           "pronouns", "numbers", "conjunctions", "modals", "to", "particles", "possessives"]
FINE = ["NN", "NNS", "NNP", "VB", "VBD", "VBZ", "VBP", "VBN", "VBG", "JJ", "JJR", "RB",
        "IN", "DT", "PRP", "CD", "CC", "MD", "TO"]
NOUN_PAIRS = [("nouns", "verbs"), ("nouns", "adjectives"), ("nouns", "adverbs"),
              ("nouns", "determiners"), ("nouns", "prepositions"), ("NN", "VB"), ("NNS", "NN"),
              ("NNP", "NN")]


def main() -> None:
    global DELAYS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default=HERE / "results", type=Path)
    parser.add_argument("--out", default=None, type=Path, help="markdown file (default: print)")
    parser.add_argument("--delays", default=",".join(map(str, DELAYS)),
                        help="delays the tables show, comma separated")
    args = parser.parse_args()
    DELAYS = tuple(int(d) for d in args.delays.split(","))
    grid = models(args.results)
    analysed = {k: {s: f for s, f in v.items() if states(f)} for k, v in grid.items()}
    analysed = {k: v for k, v in analysed.items() if v}
    parts = ["## Perplexity and wall time", "", *perplexity_table(grid), "",
             "## Decay of the memory curve (class all, type-weighted normalisation)", "",
             *decay_table(analysed), "",
             "## Memory per class", "",
             *class_table(analysed, "sv_type", GROUPED, ratio=False),
             *class_table(analysed, "identity", GROUPED + FINE, ratio=True),
             *paired_class_table(analysed, "sv_type", NOUN_PAIRS, ratio=False),
             *paired_class_table(analysed, "identity", NOUN_PAIRS, ratio=True),
             *state_table(analysed),
             "## Configurations compared (architecture, size, data)", "",
             *config_tables(analysed, DELAYS),
             "## Frequency within part of speech", "", *frequency_table(analysed),
             "## Properties", "", *property_table(analysed),
             "## Context ablation", "", *ablation_table(analysed, GROUPED),
             "## Normalisation weighting", "", *weighting_table(analysed, GROUPED[1:]), "",
             "## Raw vs normalised", "", *raw_table(analysed, GROUPED[1:]), ""]
    text = "\n".join(parts)
    if args.out:
        args.out.write_text(text)
        print(f"wrote {args.out}")
    else:
        print(text)


if __name__ == "__main__":
    main()
