"""Configurations compared: architecture, hidden size, data size and data type, each
against its reference, with both spreads a reader needs.

A configuration is (cell, hidden size, training data); its seeds are separate training
runs.  Every model is analysed on the same 20 blocks of PTB valid, in the state that its
softmax reads (the hidden state; the LSTM's cell state is compared in the class tables).
Three summaries of the memory curves S_c(d) (sum of singular values of Gbar_d L,
type-weighted L) per model:

- ``memory``: the all-words curve relative to delay 0, S_all(d) / S_all(0): how much of
  what enters the state is left after d steps (the papers' "average memory");
- ``selectiveness``: the standard deviation over the seven large word classes of
  log(S_c(d) / S_c(0)): how unequally the classes are kept, whatever they enter with
  (0: every class keeps the same share); read only up to the first delay at which one of
  the seven is within its noise floor;
- ``selectiveness_abs``: the same of log S_c(d): how unequally they are represented at
  delay d, which also counts how strongly they enter.

A difference between two configurations gets two checks: its paired text interval (the
jackknife of the difference of the seed means, so the text's blocks cancel), and the
model-to-model yardstick t_df * s_p * sqrt(1/n_a + 1/n_b), where s_p is the seeds' SD
pooled over the two configurations compared (df: their seeds minus one each); a
configuration with one seed borrows its reference's spread instead of having none.
Only the two configurations compared are pooled because training runs do not move every
configuration alike (the LSTM's seeds spread its absolute selectiveness six times as far
as the GRU's): a spread borrowed from other architectures would be the wrong yardstick.
"""

from __future__ import annotations

import numpy as np
from measures import Measures, band, floor_reached, fmt, interval, ppl, seed_mean
from scipy import stats

SEL_CLASSES = ("nouns", "verbs", "adjectives", "adverbs", "determiners", "prepositions", "pronouns")
REFERENCE_CELL = "lstm"
#: The Mamba-style LM is left out: its block output holds the residual connection at delay
#: 0, so "relative to delay 0" does not mean there what it means for the others.
CELLS = ("lstm", "gru", "rnn")


def memory(m: Measures) -> tuple[np.ndarray, np.ndarray]:
    est, reps = m.ratio("sv_type")
    j = m.column("all")
    return est[:, j], reps[:, :, j]


def _spread(est: np.ndarray, reps: np.ndarray, m: Measures) -> tuple[np.ndarray, np.ndarray]:
    """SD over the seven classes of the log statistic; NaN from the first delay at which
    one of them is within its noise floor (its value there is noise, not memory)."""
    cols = [m.column(c) for c in SEL_CLASSES if c in m.classes]
    noise = floor_reached(m.data["sv_type"][:, cols], m.data["sv_type_floor"][:, cols])
    with np.errstate(invalid="ignore", divide="ignore"):
        sel, reps_sel = (np.log(est[:, cols]).std(axis=-1, ddof=1),
                         np.log(reps[:, :, cols]).std(axis=-1, ddof=1))
    return np.where(noise, np.nan, sel), np.where(noise, np.nan, reps_sel)


def selectiveness(m: Measures) -> tuple[np.ndarray, np.ndarray]:
    return _spread(*m.ratio("sv_type"), m)


def selectiveness_abs(m: Measures) -> tuple[np.ndarray, np.ndarray]:
    return _spread(*m.stat("sv_type"), m)


SUMMARIES = {"memory": (memory, "all words: S(d) / S(0)"),
             "selectiveness": (selectiveness, "selectiveness: SD over 7 classes of log S_c(d) / S_c(0)"),
             "selectiveness_abs": (selectiveness_abs, "SD over 7 classes of log S_c(d)")}


def comparable(grid) -> dict[tuple, list[Measures]]:
    """Configuration -> its seeds' measures of the state the softmax reads."""
    return {cfg: [Measures(f, "hidden") for f in seeds.values() if (f / "measures_hidden.npz").is_file()]
            for cfg, seeds in sorted(grid.items()) if cfg[0] in CELLS}


def reference(cfg: tuple, configs: dict) -> tuple | None:
    """What a configuration is compared with: the same cell at 128 units on all of WSJ
    (for size and data), or the LSTM's (for another cell)."""
    cell, _, _ = cfg
    for ref in ((cell, 128, "wsj100"), (REFERENCE_CELL, 128, "wsj100")):
        if ref != cfg and configs.get(ref):
            return ref
    return None


def pooled_sd(configs: dict, get, among=None) -> tuple[np.ndarray | None, int]:
    """The seeds' SD pooled over the configurations ``among`` (default: all) that have
    two or more seeds, and its df."""
    num, df = 0.0, 0
    for cfg, ms in configs.items():
        if among is not None and cfg not in among:
            continue
        if len(ms) > 1:
            values = np.array([get(m)[0] for m in ms])
            num = num + values.var(axis=0, ddof=1) * (len(ms) - 1)
            df += len(ms) - 1
    return (np.sqrt(num / df), df) if df else (None, 0)


def _label(cfg: tuple) -> str:
    cell, hidden, data = cfg
    return f"{cell.upper()} {hidden}h {data}"


def summary_table(configs: dict, grid, key: str, delays) -> list[str]:
    get, what = SUMMARIES[key]
    lines = [f"**{what}** (mean over seeds (seed SD) [95% text interval])", "",
             "| configuration | seeds | valid perplexity (PTB; Brown: held-out Brown) | " + " | ".join(f"d={d}" for d in delays) + " |",
             "|---|---|---|" + "---|" * len(delays)]
    for cfg, ms in configs.items():
        if not ms:
            continue
        est, reps, sd = seed_mean(ms, get)
        est, lo, hi = band(est, reps)
        pp = [ppl(f / "ppl_valid.txt") for f in grid[cfg].values()]
        pp = [p for p in pp if p is not None]
        cells = [f"{fmt(est[d])} ({fmt(sd[d], 2)}) [{fmt(lo[d])}, {fmt(hi[d])}]" if d < len(est)
                 else "n/a" for d in delays]
        lines.append(f"| {_label(cfg)} | {len(ms)} | {fmt(np.mean(pp), 4) if pp else 'n/a'} | "
                     + " | ".join(cells) + " |")
    return lines + [""]


def difference(configs: dict, cfg: tuple, ref: tuple, get) -> dict[str, np.ndarray]:
    """Configuration - reference of a summary per delay: the difference of the seed means
    (bias-corrected), its paired text interval, the model-to-model yardstick and whether
    both checks call it a difference (``differs``)."""
    a, ra, _ = seed_mean(configs[cfg], get)
    b, rb, _ = seed_mean(configs[ref], get)
    est, lo, hi = band(a - b, ra - rb)
    sp, df = pooled_sd(configs, get, among=(cfg, ref))
    if sp is None:
        yard = np.full_like(est, np.nan)
    else:
        yard = stats.t.ppf(0.975, df) * sp * np.sqrt(1 / len(configs[cfg]) + 1 / len(configs[ref]))
    differs = ((lo > 0) | (hi < 0)) & np.isfinite(yard) & (np.abs(est) > yard)
    return {"estimate": est, "lower": lo, "upper": hi, "yardstick": yard, "differs": differs, "df": df}


def difference_table(configs: dict, key: str, delays) -> list[str]:
    get, what = SUMMARIES[key]
    lines = [f"**Differences of {what}** (configuration - reference: mean over seeds [95% paired "
             "text interval] +- the model-to-model yardstick t * s_p * sqrt(1/n_a + 1/n_b), s_p "
             "pooled over the seeds of the two configurations (df in the seeds column); * where the "
             "interval excludes 0 and the difference exceeds the yardstick)", "",
             "| configuration - reference | seeds (df) | " + " | ".join(f"d={d}" for d in delays) + " |",
             "|---|---|" + "---|" * len(delays)]
    for cfg, ms in configs.items():
        ref = reference(cfg, configs)
        if not ms or ref is None:
            continue
        r = difference(configs, cfg, ref, get)
        cells = [f"{interval(r['estimate'][d], r['lower'][d], r['upper'][d])} +- "
                 f"{fmt(r['yardstick'][d], 2)}{'*' if r['differs'][d] else ''}"
                 if d < len(r["estimate"]) else "n/a" for d in delays]
        lines.append(f"| {_label(cfg)} - {_label(ref)} | {len(ms)} vs {len(configs[ref])} ({r['df']}) | "
                     + " | ".join(cells) + " |")
    return lines + [""]


def config_tables(grid, delays) -> list[str]:
    configs = comparable(grid)
    out = []
    for key in SUMMARIES:
        out += summary_table(configs, grid, key, delays) + difference_table(configs, key, delays)
    return out
