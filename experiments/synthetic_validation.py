"""Validate state gradients on the synthetic language with planted memory (k = 5 and 15).

For every variance profile (equal, unequal) and seed, this generates the demo corpus,
trains the demo LSTM, computes the state gradients of the hidden state (the criteria's
state) and of the cell state (for comparison) and evaluates the ground-truth criteria of
:mod:`stategrad.demo`.  It prints one table row per run and the spread over seeds of
every criterion value, and writes everything to ``--out/validation.json``.

    python experiments/synthetic_validation.py --out /tmp/synth-validation --seeds 0 1 2

Nothing is cached: every run generates, trains and differentiates from scratch.  About
a minute per run on one idle CPU core.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from stategrad.analysis import load_embedding_stats
from stategrad.data import read_tokens
from stategrad.demo import DemoSettings, evaluate_criteria, measure, run_demo, target_scores
from stategrad.gradients import compute_state_gradients
from stategrad.lm import load_trained
from stategrad.synth import load_corpus


def short(name: str) -> str:
    """A compact column name for a criterion."""
    for long, abbrev in (("learned: cross-entropy gap to the ideal model (nats)", "gap"),
                         ("learned: trigger_", "acc "), ("holds: trigger_", "hold "),
                         ("rises: trigger_", "rise "), ("falls: trigger_", "fall "),
                         ("filler forgotten", "filler r(3)"),
                         ("normalised ranking", "norm k15/k5"),
                         ("raw ranking wrong", "raw k15/k5"),
                         ("plain normalised", "plain norm k15/k5"), ("plain raw", "plain raw k15/k5")):
        if name.startswith(long):
            rest = name[len(long):].split(" ")[0] if long.endswith("_") else ""
            return abbrev + rest
    return name


def cell_criteria(out: Path, settings: DemoSettings) -> list:
    """The same criteria computed on the cell state of the model the run trained."""
    model = load_trained(out / "model.pt")
    corpus = load_corpus(out / "data")
    valid = read_tokens(corpus.path("valid"), model.vocab)
    result = compute_state_gradients(model, valid, max_delay=settings.max_delay, state="cell",
                                     classes=corpus.class_set(model.vocab))
    stats = load_embedding_stats(out / "stats.npz")
    m = measure(result, stats, model, corpus, target_scores(model, corpus, valid))
    return evaluate_criteria(m, settings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("synthetic-validation"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--variance", nargs="+", default=["equal", "unequal"])
    parser.add_argument("--epochs", type=int, default=DemoSettings.epochs)
    parser.add_argument("--no-cell", action="store_true", help="skip the cell-state comparison")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    for variance in args.variance:
        for seed in args.seeds:
            settings = replace(DemoSettings(), seed=seed, variance=variance, epochs=args.epochs)
            out = args.out / f"{variance}-seed{seed}"
            started = time.perf_counter()
            summary = run_demo(out, settings, echo=None, report=False)
            row = {"variance": variance, "seed": seed, "state": "hidden",
                   "passed": summary.passed, "seconds": round(time.perf_counter() - started, 1),
                   "values": {c.name: c.value for c in summary.criteria},
                   "failed": [c.name for c in summary.failed]}
            m = summary.measures
            spans = m["spans"]
            longest, shortest = max(spans, key=spans.get), min(spans, key=spans.get)
            d = spans[longest] - 1
            for variant in ("normalised", "raw"):
                full = m["memory_curve"][variant]
                row["values"][f"plain {variant} memory curve: {longest}/{shortest} at delay {d}"] = \
                    full[longest][d] / full[shortest][d]
            rows.append(row)
            print(f"{variance:8s} seed {seed} hidden: {'PASS' if row['passed'] else 'FAIL'} "
                  f"({row['seconds']} s) failed={row['failed']}", flush=True)
            if not args.no_cell:
                crit = cell_criteria(out, settings)
                rows.append({"variance": variance, "seed": seed, "state": "cell",
                             "passed": all(c.passed for c in crit), "seconds": None,
                             "values": {c.name: c.value for c in crit},
                             "failed": [c.name for c in crit if not c.passed]})
                print(f"{variance:8s} seed {seed} cell:   failed={rows[-1]['failed']}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "validation.json").write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")

    names = list(dict.fromkeys(n for r in rows for n in r["values"]))
    print()
    print("| run | " + " | ".join(short(n) for n in names) + " | all |")
    print("|---" * (len(names) + 2) + "|")
    for r in rows:
        cells = [f"{r['values'][n]:.3g}" if n in r["values"] else "-" for n in names]
        print(f"| {r['variance']} s{r['seed']} {r['state']} | " + " | ".join(cells)
              + f" | {'pass' if r['passed'] else 'FAIL'} |")
    print()
    for state in ("hidden", "cell"):
        for variance in args.variance:
            sel = [r for r in rows if r["state"] == state and r["variance"] == variance]
            if not sel:
                continue
            print(f"{state}, {variance}: min .. max over seeds")
            for n in names:
                v = np.array([r["values"].get(n, np.nan) for r in sel])
                if np.isnan(v).all():
                    continue
                print(f"  {n:<70s} {np.nanmin(v):8.4g} .. {np.nanmax(v):8.4g}")


if __name__ == "__main__":
    main()
