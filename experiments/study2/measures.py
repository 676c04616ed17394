"""The second edition's per-model results as arrays, and the statistics every table and
figure forms from them.

Every interval is a paired delete-one-block jackknife over the 20 blocks of the text that
every model was evaluated on: a difference (class - class, state - state, model - model,
property - property) is formed replicate by replicate, so the text's blocks cancel where
they affect both sides alike.  Centres are bias-corrected, intervals use Student t with
B - 1 degrees of freedom.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path

import numpy as np

from stategrad import analysis

NAME = re.compile(r"(?P<cell>[a-z]+)_(?P<hidden>\d+)h_s(?P<seed>\d+)_(?P<data>\w+)$")
LEVEL = 0.95


# --- paired jackknife ----------------------------------------------------------------------

def filled(est: np.ndarray, reps: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Replicates with the estimate where a block has no occurrence (leaving such a block
    out does not change the mean), so that every side of a difference has all B blocks."""
    return np.where(valid, reps, est[None])


def floor_reached(values: np.ndarray, floor: np.ndarray) -> np.ndarray:
    """Per delay (axis 0): True from the first delay at which any column is within its
    noise floor or not positive (a float32 gradient underflows to 0), where a log of it
    is noise, not memory."""
    hit = ((values <= floor) | (values <= 0)).reshape(len(values), -1).any(axis=1)
    return np.cumsum(hit) > 0


def band(est: np.ndarray, reps: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Jackknife (centre, lower, upper) of a statistic of any shape from its B filled
    replicates (axis 0), by stategrad's own jackknife (``Replicates.derive``).  The centre
    is the bias-corrected estimate B est - (B - 1) mean(reps): ratios and sums of singular
    values of block means are biased (upward for small classes), and the correction
    removes the O(1/n) part; the interval is centre +- t_(B-1) se."""
    shape, B = np.shape(est), reps.shape[0]
    flat = np.asarray(est, np.float64).reshape(1, -1, 1)
    r = analysis.Replicates(flat, np.asarray(reps, np.float64).reshape(B, 1, -1, 1),
                            np.ones((B, 1, flat.shape[1]), bool), [], "jackknife").derive(level=LEVEL)
    centre, se = r.bias_corrected.reshape(shape), r.se.reshape(shape)
    q = analysis.t_quantile(LEVEL, B - 1)
    return centre, centre - q * se, centre + q * se


class Measures:
    """One model's measures of one state (measures_<state>.npz) with its class names."""

    def __init__(self, folder: Path, state: str):
        self.data = np.load(folder / f"measures_{state}.npz")
        self.summary = json.loads((folder / f"summary_{state}.json").read_text())
        self.classes = self.summary["classes"]
        self.props = [p["name"] for p in self.summary.get("properties", [])]

    def stat(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        """(estimate (D, C), filled replicates (B, D, C)) of a per-class statistic."""
        d = self.data
        return d[key].astype(np.float64), filled(d[key], d[f"{key}_reps"], d[f"{key}_valid"]).astype(np.float64)

    def ratio(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        """The statistic relative to delay 0, formed within each replicate."""
        est, reps = self.stat(key)
        return est / est[:1], reps / reps[:, :1]

    def prop(self, key: str = "abs") -> tuple[np.ndarray, np.ndarray]:
        d = self.data
        valid = d["prop_valid"][..., None]
        return (d[f"prop_{key}"].astype(np.float64),
                filled(d[f"prop_{key}"], d[f"prop_{key}_reps"], valid).astype(np.float64))

    def column(self, name: str) -> int:
        return self.classes.index(name)


# --- reading the results -------------------------------------------------------------------

def ppl(path: Path) -> float | None:
    if not path.is_file():
        return None
    m = re.search(r"perplexity:?\s*([\d.]+)", path.read_text())
    return float(m.group(1)) if m else None


def models(results: Path) -> dict[tuple, dict[int, Path]]:
    """Configuration (cell, hidden, data) -> seed -> result folder, for finished models."""
    grid: dict[tuple, dict[int, Path]] = defaultdict(dict)
    for folder in sorted(results.iterdir()):
        m = NAME.match(folder.name)
        if m and (folder / "ppl_test.txt").is_file():
            grid[(m["cell"], int(m["hidden"]), m["data"])][int(m["seed"])] = folder
    return dict(grid)


def timings(folder: Path) -> dict[str, float]:
    out: dict[str, float] = defaultdict(float)
    path = folder / "timings.tsv"
    if path.is_file():
        for line in path.read_text().splitlines():
            step, seconds, *_ = line.split("\t")
            out[step.split()[0]] += float(seconds)
    return dict(out)


HELD_OUT = ("sec20_", "brownheld_")


def states(folder: Path, text: str = "") -> list[str]:
    """The states analysed on PTB valid (text "") or on held-out tagged text (text
    "held": WSJ section 20 or the held-out Brown files, whichever the model has)."""
    found = [p.stem[len("measures_"):] for p in folder.glob("measures_*.npz")]
    if not text:
        return sorted(s for s in found if not s.startswith(HELD_OUT))
    return sorted(s for s in found if s.startswith(HELD_OUT))


def seed_states(seeds: dict[int, Path]) -> list[str]:
    """The PTB-valid states any seed of a configuration has (the LSTM's cell state: the
    reference seed only)."""
    return sorted({s for f in seeds.values() for s in states(f)})


def seed_measures(seeds: dict[int, Path], state: str) -> list[Measures]:
    """The measures of ``state`` of every seed that has it."""
    return [Measures(f, state) for f in seeds.values() if (f / f"measures_{state}.npz").is_file()]


def seed_mean(measures: list[Measures], get) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean over seeds of a statistic, its filled replicates, and the seeds' SD."""
    pairs = [get(m) for m in measures]
    est = np.mean([p[0] for p in pairs], axis=0)
    reps = np.mean([p[1] for p in pairs], axis=0)
    sd = np.std([p[0] for p in pairs], axis=0, ddof=1) if len(pairs) > 1 else np.full_like(est, np.nan)
    return est, reps, sd



def fmt(x: float, digits: int = 3) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{x:.{digits}g}"


def interval(est, lo, hi, digits: int = 3) -> str:
    return f"{fmt(est, digits)} [{fmt(lo, digits)}, {fmt(hi, digits)}]"
