"""Which memory measure finds a planted property's distance?

For each setting and seed: generate a property language (``stategrad.synth``: binary
features of carrier words that the word exactly K steps later must agree with, next to
identity triggers), train an LSTM on it (``stategrad.lm.train``, as ``stategrad train``),
compute the state gradients of the validation text for the hidden and the cell state, and
per property (difference ``n`` of the carriers' value classes ``_v1 - _v0``, class of all
carriers) locate:

- ``absolute`` / ``absolute_ratio`` = |Gbar_d L n| (/ its delay-0 value; the two have
  the same falls and bends), the papers' ``relative`` = |Gbar_d L n| / s_1 and the
  subspace ``cosine``: the delay of their largest bend down (``largest_bend``: most
  negative second difference of the curve, or of its log) and of their largest fall
  ratio (``largest_fall``, from delay 1 or 2); the 10%-of-delay-0 span of
  ``absolute_ratio``;
- the papers' memory span: first delay where the carriers' memory curve (sum of singular
  values of Gbar_d L) falls below 10% of delay 0.

A planted distance K counts as recovered when the located delay is within one step of K.
One JSON per run under ``--out`` (a finished run is skipped: the script resumes), and a
summary table at the end.

    python experiments/synthetic_validation/properties.py --out /tmp/props --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from stategrad.analysis import (
    class_difference_vector,
    embedding_matrix,
    embedding_stats_for_model,
    largest_bend,
    largest_fall,
    memory_curves,
    relative_memory,
)
from stategrad.data import read_tokens
from stategrad.demo import target_scores
from stategrad.gradients import compute_state_gradients
from stategrad.lm import TrainConfig, load_trained, train
from stategrad.synth import generate_corpus, preset, property_class

#: name -> (synth overrides, properties (K, carriers), frozen planted embeddings)
SETTINGS = {
    # the demo's language with two properties added
    "demo+p4p9": (dict(), [(4, 8), (9, 8)], True),
    # another vocabulary and other distances; learned embeddings
    "f40+p3p7p12": (dict(n_fillers=40, embedding_dim=40), [(3, 6), (7, 10), (12, 6)], False),
}


def train_config(data: Path, out: Path, seed: int, dim: int, frozen: bool, epochs: int) -> TrainConfig:
    model = {"cell": "lstm", "hidden_size": 64, "embedding_size": dim, "init_scale": 0.1}
    if frozen:
        model.update(pretrained_embeddings=str(data / "embeddings.npz"), fixed_embeddings=True)
    return TrainConfig.from_dict({
        "data": {"path": str(data)}, "model": model,
        "training": {"optimizer": "adam", "learning_rate": 0.005, "max_epoch": epochs,
                     "max_max_epoch": epochs, "batch_size": 20, "num_steps": 35,
                     "seed": seed + 1, "threads": 1},
        "output": {"save_path": str(out)}}, source="experiment")


def locate(result, stats, W, classes, carrier: str) -> dict:
    v = class_difference_vector(W, classes, f"{carrier}_v1", f"{carrier}_v0")
    table = relative_memory(result, v, stats, c=carrier)
    span = memory_curves(result, normalize=stats, classes=[carrier], fraction=0.1).curves[0].span
    return {
        "span10_papers": span.delay,
        "curves": {k: table.curve(k).tolist() for k in
                   ("absolute", "absolute_ratio", "relative", "cosine", "relative_null",
                    "absolute_floor")},
        "signal": [bool(r["absolute_signal"]) for r in table.rows],
    }


def run(name: str, seed: int, out: Path, epochs: int) -> dict:
    overrides, props, frozen = SETTINGS[name]
    config = preset("demo", seed=seed, **overrides)
    config = preset("demo", seed=seed, **overrides,
                    triggers=(*config.triggers, *(property_class(k, n) for k, n in props)))
    t0 = time.perf_counter()
    corpus = generate_corpus(config, out / "data", overwrite=True)
    summary = train(train_config(out / "data", out / "model", seed, config.embedding_dim, frozen,
                                 epochs), overwrite=True, progress=False, echo=None)
    model = load_trained(summary.best_checkpoint or summary.last_checkpoint)
    t_train = time.perf_counter() - t0
    valid = read_tokens(corpus.path("valid"), model.vocab)
    classes = corpus.class_set(model.vocab)
    stats = embedding_stats_for_model(model, corpus.path("train"))
    W = embedding_matrix(model)
    scores = target_scores(model, corpus, valid)
    row = {"setting": name, "seed": seed, "train_seconds": round(t_train, 1),
           "cross_entropy": scores.cross_entropy, "accuracy": scores.accuracy,
           "valid_ppl": summary.best_valid_ppl,
           "ideal_ce": corpus.metadata["empirical"]["valid"]["cross_entropy_nats"], "states": {}}
    for state in ("hidden", "cell"):
        result = compute_state_gradients(model, valid, max_delay=20, state=state,
                                         classes=classes, block_size=1000,
                                         progress=False)
        row["states"][state] = {f"trigger_p{k}": {"distance": k, **locate(
            result, stats, W, classes, f"trigger_p{k}")} for k, _ in props}
    row["seconds"] = round(time.perf_counter() - t0, 1)
    return row


def locators(p: dict) -> dict[str, int | None]:
    """Every candidate locator of one property, from its stored curves."""
    c = {k: np.asarray(v, dtype=np.float64) for k, v in p["curves"].items()}
    signal = np.asarray(p["signal"], dtype=bool) if "signal" in p else None
    out = {}
    for key in ("absolute", "relative", "cosine"):
        out[f"bend {key}"] = largest_bend(c[key], signal=signal)  # the default: from d=3
        out[f"bend {key} from d=2"] = largest_bend(c[key], signal=signal, start=2)
        out[f"log bend {key}"] = largest_bend(c[key], signal=signal, log=True)
        out[f"fall {key}"] = largest_fall(c[key], signal=signal)
        out[f"fall {key} from d=2"] = largest_fall(c[key], signal=signal, start=2)
    below = np.flatnonzero(c["absolute_ratio"][1:] < 0.1)
    out["10% span absolute_ratio"] = int(below[0]) + 1 if below.size else None
    if "span10_papers" in p:  # not stored by the demo
        out["10% span papers (memory curve)"] = p["span10_papers"]
    return out


def demo_rows(dirs: list[Path]) -> list[dict]:
    """The property curves that ``stategrad demo`` runs stored in their summary.json, as
    rows of this script (setting "demo", no papers' span)."""
    rows = []
    for d in dirs:
        summary = json.loads((d / "summary.json").read_text())
        m = summary["measures"]
        states = {}
        for state, props in m["property_memory"].items():
            states[state] = {}
            for name, prop in props.items():
                curves = prop["curves"]
                signal = [a is not None and f is not None and a > f for a, f in
                          zip(curves["absolute"], curves["absolute_floor"], strict=True)]
                states[state][name] = {"distance": prop["distance"], "curves": curves,
                                       "signal": signal}
        rows.append({"setting": "demo", "seed": summary["settings"]["seed"], "states": states})
    return rows


def summarise(rows: list[dict]) -> None:
    print("| setting | state | locator | within 1 of K | located - K (per seed and property) |")
    print("|---|---|---|---|---|")
    for name in dict.fromkeys(r["setting"] for r in rows):
        sel = [r for r in rows if r["setting"] == name]
        for state in ("hidden", "cell"):
            found: dict[str, list] = {}
            for r in sel:
                for p in r["states"][state].values():
                    for key, got in locators(p).items():
                        found.setdefault(key, []).append(
                            None if got is None else got - p["distance"])
            for key, offs in found.items():
                hits = sum(o is not None and abs(o) <= 1 for o in offs)
                text = " ".join("-" if o is None else f"{o:+d}" for o in offs)
                print(f"| {name} ({len(sel)} seeds) | {state} | {key} | {hits}/{len(offs)} | {text} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("property-validation"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS))
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--demo-runs", type=Path, nargs="*", default=[],
                        help="Output folders of `stategrad demo` runs: their stored property "
                             "curves join the table as the setting 'demo'.")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = demo_rows(args.demo_runs)
    for name in args.settings:
        for seed in args.seeds:
            path = args.out / f"{name}-seed{seed}.json"
            if path.exists():
                rows.append(json.loads(path.read_text()))
                continue
            row = run(name, seed, args.out / f"{name}-seed{seed}", args.epochs)
            path.write_text(json.dumps(row, indent=1) + "\n")
            rows.append(row)
            print(f"{name} seed {seed}: {row['seconds']} s", flush=True)
    summarise(rows)


if __name__ == "__main__":
    main()
