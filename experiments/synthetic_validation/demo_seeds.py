"""The demo over seeds: its criteria, the noise floors of identity memory, and where each
locator puts the planted properties, for the hidden and the cell state.

Reads the output folders of ``stategrad demo --seed S --out DIR`` runs and analyses them
again with the code installed (no training, no gradients: ``model.pt``, ``stats.npz``,
``gradients.h5`` and ``gradients-cell.h5`` are reused), so that a change of a measure
or criterion can be checked on several seeds in seconds.  Per property it also tries
locators for the cell state: the bend of |Gbar_d L n| (the default), its largest fall
ratio among values above the noise floor, the bend of its excess over the floor, and
the bend after whitening the state by its covariance over the validation text
(``state-stats`` / ``--whiten-state``).

    for s in 0 1 2; do stategrad demo --seed $s --out /tmp/demo-s$s; done
    python experiments/synthetic_validation/demo_seeds.py /tmp/demo-s0 /tmp/demo-s1 /tmp/demo-s2
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from stategrad.analysis import (
    class_difference_vector,
    embedding_matrix,
    largest_bend,
    largest_fall,
    load_embedding_stats,
    relative_memory,
    state_stats_for_model,
    whiten_result,
)
from stategrad.data import read_tokens
from stategrad.demo import DemoSettings, evaluate_criteria, measure, target_scores
from stategrad.demo.measures import identity_noise, property_classes, property_memory
from stategrad.gradients import load_result
from stategrad.lm import load_trained
from stategrad.synth import load_corpus


def cell_locators(result, stats, model, corpus, valid, state: str) -> dict[str, dict]:
    """Per property: where each candidate locator puts K in ``state``."""
    W = embedding_matrix(model)
    classes = corpus.class_set(model.vocab)
    Ws = state_stats_for_model(model, valid, state=state).whitening
    out = {}
    for name, k in property_classes(corpus).items():
        v = class_difference_vector(W, classes, f"{name}_v1", f"{name}_v0")
        t = relative_memory(result, v, stats, c=name)
        a, floor = t.curve("absolute"), t.curve("absolute_floor")
        signal = a > floor
        white = relative_memory(whiten_result(result, Ws), v, stats, c=name).curve("absolute")
        out[name] = {"K": k, "bend": largest_bend(a), "bend from 2": largest_bend(a, start=2),
                     "fall above floor": largest_fall(a, signal=signal, start=2),
                     "bend of excess": largest_bend(np.maximum(a - floor, 0.0)),
                     "bend whitened": largest_bend(white),
                     "ratio": [round(float(x), 3) for x in a / a[0]]}
    return out


def analyse(folder: Path) -> dict:
    summary = json.loads((folder / "summary.json").read_text())
    settings = DemoSettings(**{k: tuple(tuple(x) if isinstance(x, list) else x for x in v)
                               if isinstance(v, list) else v
                               for k, v in summary["settings"].items()
                               if k in DemoSettings.__dataclass_fields__})
    corpus = load_corpus(folder / "data")
    model = load_trained(folder / "model.pt")
    stats = load_embedding_stats(folder / "stats.npz")
    valid = read_tokens(corpus.path("valid"), model.vocab)
    results = {settings.state: load_result(folder / "gradients.h5")}
    for state in settings.property_states:
        if state != settings.state:
            results[state] = load_result(folder / f"gradients-{state}.h5")
    m = measure(results[settings.state], stats, model, corpus,
                target_scores(model, corpus, valid))
    m["property_memory"] = {s: property_memory(results[s], stats, model, corpus)
                            for s in settings.property_states}
    m["identity_noise"] = identity_noise(results[settings.state], stats, model, corpus)
    criteria = evaluate_criteria(m, settings)
    return {"seed": settings.seed, "failed": [c.format() for c in criteria if not c.passed],
            "n_criteria": len(criteria),
            "noise": {c: {"noise_from": v["noise_from"],
                          "below 1..k-1": [d for d, a in enumerate(v["above"]) if a is False]}
                      for c, v in m["identity_noise"].items()},
            "clears": [c.format() for c in criteria if c.name.startswith("clears noise")],
            "locators": {s: cell_locators(results[s], stats, model, corpus, valid, s)
                         for s in settings.property_states}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", type=Path, nargs="+")
    parser.add_argument("--json", type=Path, help="Write the per-seed numbers here.")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = [analyse(f) for f in args.folders]
    for r in rows:
        print(f"seed {r['seed']}: {r['n_criteria'] - len(r['failed'])}/{r['n_criteria']} "
              "criteria pass" + "".join("\n  " + f for f in r["failed"]))
        for c in r["clears"]:
            print("  " + c)
        for c, v in r["noise"].items():
            print(f"  {c}: within its noise floor from delay {v['noise_from']}")
    keys = ["bend", "bend from 2", "fall above floor", "bend of excess", "bend whitened"]
    print("\n| state | locator | within 1 of K | located - K (per seed and property) |")
    print("|---|---|---|---|")
    for state in rows[0]["locators"]:
        for key in keys:
            offs = [None if p[key] is None else p[key] - p["K"]
                    for r in rows for p in r["locators"][state].values()]
            hits = sum(o is not None and abs(o) <= 1 for o in offs)
            text = " ".join("-" if o is None else f"{o:+d}" for o in offs)
            print(f"| {state} | {key} | {hits}/{len(offs)} | {text} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
