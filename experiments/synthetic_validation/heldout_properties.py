"""Held-out property languages, end to end through the command line.

The acceptance check of the property measure, done as a new user would: on languages
unlike the demo's (other vocabulary sizes and Zipf exponents, other embedding and hidden
sizes, trained embeddings, other distances), each seed runs

    stategrad synth -> stategrad train (TOML) -> stategrad gradients (hidden, cell)
    -> stategrad embedding-stats -> stategrad relative-memory --json

and per state and property locates the planted distance K as the recommended measure
does, by the ``located_delay`` relative-memory writes: the largest bend down of
``absolute`` = |Gbar_d L n| from delay 3 among delays whose value is above
``absolute_floor`` (``stategrad.analysis.locate_property``).  Within one step
of K counts as found.  Whether the model learned the agreement is checked separately
(accuracy of the agreeing word at its due position, cross-entropy against the ideal model
of ``synth.json``); a property the model did not learn is reported as "not learned", not
as a miss of the measure.

Intermediate files go under ``--work`` (a finished run is reused); the small summary
goes to ``--json``.

    python experiments/synthetic_validation/heldout_properties.py --work /tmp/heldout
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from stategrad.analysis import locate_property

HERE = Path(__file__).resolve().parent
STATES = ("hidden", "cell")
#: the demo's learning threshold (accuracy of the planted word at due positions)
MIN_ACCURACY = 0.9

#: Languages never used to choose the locator.  synth: options of `stategrad synth`;
#: properties: (K, carriers); model: embedding and hidden size (embeddings trained).
LANGUAGES = {
    "f30z13-p2p6p11": dict(
        synth=["--fillers", "30", "--filler-zipf", "1.3", "--noise", "0.05",
               "--trigger", "k=4,n=5,rate=0.04"],
        properties=[(2, 4), (6, 6), (11, 8)], model=(16, 32), max_delay=17),
    "f300z08-p4p8": dict(
        synth=["--fillers", "300", "--filler-zipf", "0.8", "--noise", "0",
               "--trigger", "k=7,n=8,rate=0.04"],
        properties=[(4, 12), (8, 6)], model=(48, 96), max_delay=14),
}


def sg(*args: str, log: Path, makes: Path | None = None) -> None:
    """Run one stategrad command (single-threaded), its output appended to ``log``;
    skipped when the file it ``makes`` exists (an interrupted run resumes)."""
    if makes is not None and makes.exists():
        return
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    with log.open("a") as f:
        f.write("$ stategrad " + " ".join(args) + "\n")
        f.flush()
        done = subprocess.run([sys.executable, "-m", "stategrad", *args], stdout=f,
                              stderr=subprocess.STDOUT, env=env)
    if done.returncode:
        sys.exit(f"Error: stategrad {args[0]} failed (exit {done.returncode}); see {log}")


def train_toml(data: Path, out: Path, emb: int, hidden: int, seed: int, epochs: int) -> str:
    return f"""[data]
path = "{data}"

[model]
cell = "lstm"
embedding_size = {emb}
hidden_size = {hidden}
init_scale = 0.1

[training]
optimizer = "adam"
learning_rate = 0.005
lr_decay = 0.5
max_epoch = {max(epochs - 3, 1)}
max_max_epoch = {epochs}
batch_size = 20
num_steps = 35
max_grad_norm = 5.0
seed = {seed + 1}
threads = 1

[output]
save_path = "{out}"
"""


def learned(model: Path, data: Path) -> dict:
    """Accuracy of the planted word at its due position, and the cross-entropy of the
    whole validation text against the ideal model's on it."""
    import torch

    from stategrad.data import read_tokens
    from stategrad.demo import target_scores
    from stategrad.lm import load_trained
    from stategrad.synth import load_corpus

    torch.set_num_threads(1)
    lm = load_trained(model)
    corpus = load_corpus(data)
    scores = target_scores(lm, corpus, read_tokens(corpus.path("valid"), lm.vocab))
    ideal = corpus.metadata["empirical"]["valid"]["cross_entropy_nats"]
    return {"cross_entropy": scores.cross_entropy, "ideal_cross_entropy": ideal,
            "gap": scores.cross_entropy - ideal, "accuracy": scores.accuracy,
            "due_positions": scores.due_positions}


def locate(table: dict) -> dict:
    """The recommended measure's location, as relative-memory wrote it (the largest bend
    down of ``absolute`` from delay 3 among the delays above its noise floor), and the
    same rule from delay 2."""
    rows = table["rows"]
    return {"located": table["located_delay"],
            # the earlier default, for distances below 3 (not the verdict)
            "located_from_2": locate_property(rows, start=2),
            "floor_given": any(r.get("absolute_floor") is not None for r in rows),
            "absolute": [round(r["absolute"], 6) for r in rows],
            "absolute_ratio": [round(r["absolute_ratio"], 4) for r in rows]}


def lstm_states(lm, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hidden and cell state after each token, in float64 numpy from the zero state (an
    independent re-implementation of the one-layer LSTM, checked against torch's)."""
    import torch

    rnn, emb = lm.module.rnn, lm.module.embedding.weight.detach().double().numpy()
    w_ih, w_hh = (getattr(rnn, k).detach().double().numpy() for k in ("weight_ih_l0", "weight_hh_l0"))
    bias = (rnn.bias_ih_l0 + rnn.bias_hh_l0).detach().double().numpy()
    pre = emb[tokens] @ w_ih.T + bias
    H = w_hh.shape[1]
    hs, cs = np.empty((len(tokens), H)), np.empty((len(tokens), H))
    h, c = np.zeros(H), np.zeros(H)
    for t in range(len(tokens)):
        z = pre[t] + w_hh @ h
        i, f, o = (1 / (1 + np.exp(-z[k * H:(k + 1) * H])) for k in (0, 1, 3))
        c = f * c + i * np.tanh(z[2 * H:3 * H])
        h = o * np.tanh(c)
        hs[t], cs[t] = h, c
    with torch.no_grad():
        n = min(len(tokens), 500)
        ref, _ = rnn(torch.as_tensor(emb[tokens[:n]])[:, None].float())
    assert np.abs(ref[:, 0].double().numpy() - hs[:n]).max() < 1e-4, "numpy LSTM != torch"
    return hs, cs


def carriers(lm, classes: dict, prop: str, tokens: np.ndarray, span: int):
    """Positions t of the property's carriers (with t + span inside the text) and their
    values (0/1)."""
    index = {w: i for i, w in enumerate(lm.vocab.words)}
    pos, val = [], []
    for value in (0, 1):
        ids = [index[w] for w in classes[f"{prop}_v{value}"] if w in index]
        t = np.flatnonzero(np.isin(tokens, ids))
        t = t[(t >= 1) & (t + span < len(tokens))]
        pos.append(t)
        val.append(np.full(len(t), value))
    return np.concatenate(pos), np.concatenate(val)


def probe(d: Path, props: list[tuple[int, int]], max_delay: int, fit_tokens: int = 100_000) -> dict:
    """Does the state still hold a property's value at delay d?  A logistic probe fitted
    on the training text's carriers (state at t + d -> value) and scored on the validation
    text's; and the effect of swapping each validation carrier for one of the other value
    (text after it unchanged) on the state at t + d, mean |s' - s| over carriers, relative
    to delay 0.  After delay K the probe can also read the value off the agreeing word
    (it encodes it); the swap keeps that word and so isolates the carrier's own trace."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from stategrad.data import read_tokens
    from stategrad.lm import load_trained

    lm = load_trained(d / "model" / "best.pt")
    classes = json.loads((d / "data" / "synth.json").read_text())["classes"]
    fit = read_tokens(d / "data" / "train.txt", lm.vocab)[:fit_tokens]
    test = read_tokens(d / "data" / "valid.txt", lm.vocab)
    states = {"fit": lstm_states(lm, fit), "test": lstm_states(lm, test)}
    out = {}
    for k, _ in props:
        prop = f"trigger_p{k}"
        (tf, yf), (tt, yt) = (carriers(lm, classes, prop, fit, max_delay),
                              carriers(lm, classes, prop, test, max_delay))
        swap = swapped(lm, classes, prop, test[tt])
        effect = swap_effect(lm, test, tt, swap, states["test"], max_delay)
        out[prop] = {"K": k, "carriers_fit": len(tf), "carriers_test": len(tt)}
        for si, state in enumerate(STATES):
            acc = []
            for delay in range(max_delay):
                clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
                clf.fit(states["fit"][si][tf + delay], yf)
                acc.append(round(float(clf.score(states["test"][si][tt + delay], yt)), 4))
            e = effect[si]
            out[prop][state] = {"probe_accuracy": acc,
                                "swap_effect_ratio": np.round(e / e[0], 4).tolist()}
    return out


def swapped(lm, classes: dict, prop: str, words: np.ndarray) -> np.ndarray:
    """Each carrier replaced by the carrier of the other value next to it in the class
    (trig0 <-> trig1, trig2 <-> trig3, ...)."""
    index = {w: i for i, w in enumerate(lm.vocab.words)}
    ordered = classes[prop]
    partner = {index[ordered[i]]: index[ordered[i ^ 1]] for i in range(len(ordered))}
    return np.array([partner[int(w)] for w in words])


def swap_effect(lm, tokens, starts, swap, states, max_delay) -> list[np.ndarray]:
    """Mean |s'_{t+d} - s_{t+d}| over carriers t, per delay, hidden and cell: the text from
    t run from the state at t - 1, with token t swapped, against the original run."""
    import torch

    rnn, emb = lm.module.rnn, lm.module.embedding.weight.detach().double()
    seq = tokens[starts[:, None] + np.arange(max_delay)]  # (N, D)
    alt = seq.copy()
    alt[:, 0] = swap
    h0 = torch.as_tensor(states[0][starts - 1])[None]
    c0 = torch.as_tensor(states[1][starts - 1])[None]
    lstm = torch.nn.LSTM(rnn.input_size, rnn.hidden_size, batch_first=True).double()
    lstm.load_state_dict({k: v.double() for k, v in rnn.state_dict().items()})
    diffs = [np.zeros(max_delay), np.zeros(max_delay)]
    with torch.no_grad():
        runs = []
        for toks in (seq, alt):
            h, c = h0, c0
            hs, cs = [], []
            for delay in range(max_delay):  # step by step: torch returns no cell sequence
                _, (h, c) = lstm(emb[torch.as_tensor(toks[:, delay:delay + 1])], (h, c))
                hs.append(h[0].numpy())
                cs.append(c[0].numpy())
            runs.append((np.stack(hs, 1), np.stack(cs, 1)))  # (N, D, H)
    for si in (0, 1):
        diffs[si] = np.linalg.norm(runs[1][si] - runs[0][si], axis=2).mean(axis=0)
    return diffs


def run(name: str, seed: int, work: Path, epochs: int, train_tokens: int,
        valid_tokens: int) -> dict:
    lang = LANGUAGES[name]
    emb, hidden = lang["model"]
    d = work / f"{name}-seed{seed}"
    d.mkdir(parents=True, exist_ok=True)
    log = d / "commands.log"
    t = {}
    t0 = time.perf_counter()
    props = [a for k, n in lang["properties"] for a in ("--property", f"k={k},n={n}")]
    sg("synth", str(d / "data"), *lang["synth"], *props, "--train-tokens", str(train_tokens),
       "--valid-tokens", str(valid_tokens), "--test-tokens", "2000", "--embedding-dim", "0",
       "--seed", str(seed), "--force", log=log, makes=d / "data" / "synth.json")
    (d / "train.toml").write_text(train_toml(d / "data", d / "model", emb, hidden, seed, epochs))
    t["synth"] = time.perf_counter() - t0
    model = d / "model" / "best.pt"
    sg("train", str(d / "train.toml"), "--overwrite", "--no-progress", log=log, makes=model)
    t["train"] = time.perf_counter() - t0 - sum(t.values())
    sg("embedding-stats", "--model", str(model), "--text", str(d / "data" / "train.txt"),
       "--out", str(d / "stats.npz"), log=log, makes=d / "stats.npz")
    out = {"language": name, "seed": seed, "embedding_size": emb, "hidden_size": hidden,
           "learning": learned(model, d / "data"), "states": {}}
    for state in STATES:
        grads = d / f"{state}.h5"
        sg("gradients", "--model", str(model), "--text", str(d / "data" / "valid.txt"),
           "--state", state, "--max-delay", str(lang["max_delay"]), "--class-map",
           str(d / "data" / "classes.tsv"), "--block-size", "500", "--threads", "1", "--no-progress",
           "--out", str(grads), log=log, makes=grads)
        out["states"][state] = {}
        for k, _ in lang["properties"]:
            p = f"trigger_p{k}"
            js = d / f"{state}-{p}.json"
            sg("relative-memory", str(grads), "--normalize", str(d / "stats.npz"), "--model",
               str(model), "--diff", f"{p}_v1", f"{p}_v0", "--class", p, "--json", str(js),
               log=log, makes=js)
            out["states"][state][p] = {"distance": k, **locate(json.loads(js.read_text()))}
    t["gradients+analysis"] = time.perf_counter() - t0 - sum(t.values())
    out["seconds"] = {k: round(v, 1) for k, v in t.items()}
    return out


def verdict(located: int | None, k: int, accuracy: float) -> str:
    if accuracy < MIN_ACCURACY:
        return "not learned"
    return "found" if located is not None and abs(located - k) <= 1 else "missed"


def verdicts(runs: list[dict]) -> list[dict]:
    """One line per language, seed, state and property: the default locator's verdict,
    and that of the bend searched from delay 2 (for reference: the default cannot place a
    distance below 3, and K = 2 is planted here)."""
    lines = []
    for r in runs:
        for state, props in r["states"].items():
            for p, v in props.items():
                acc, k = r["learning"]["accuracy"][p], v["distance"]
                lines.append({"language": r["language"], "seed": r["seed"], "state": state,
                              "property": p, "K": k, "located": v["located"],
                              "located_from_2": v["located_from_2"],
                              "accuracy": round(acc, 4),
                              "verdict": verdict(v["located"], k, acc),
                              "verdict_from_2": verdict(v["located_from_2"], k, acc)})
    return lines


def count(lines: list[dict], key: str) -> dict[str, int]:
    out = {v: sum(x[key] == v for x in lines) for v in ("found", "missed", "not learned")}
    out["learned"] = out["found"] + out["missed"]
    return out


def report(runs: list[dict], lines: list[dict]) -> dict:
    for r in runs:
        lr = r["learning"]
        print(f"{r['language']} seed {r['seed']}: CE {lr['cross_entropy']:.4f} vs ideal "
              f"{lr['ideal_cross_entropy']:.4f} (gap {lr['gap']:+.4f}); seconds {r['seconds']}")
    print("| language | seed | state | property | K | located | within 1 | "
          "located from d=2 | accuracy |")
    print("|---|---|---|---|---|---|---|---|---|")
    for x in lines:
        print(f"| {x['language']} | {x['seed']} | {x['state']} | {x['property']} | {x['K']} | "
              f"{x['located']} | {x['verdict']} | {x['located_from_2']} | {x['accuracy']:.3f} |")
    totals = {}
    for state in STATES:
        sel = [x for x in lines if x["state"] == state]
        totals[state] = {"default": count(sel, "verdict"),
                         "default, K >= 3": count([x for x in sel if x["K"] >= 3], "verdict"),
                         "from d=2": count(sel, "verdict_from_2")}
        for what, t in totals[state].items():
            print(f"{state}, {what}: found {t['found']}/{t['learned']} learned properties "
                  f"({t['not learned']} not learned)")
    return totals


def report_probe(runs: list[dict]) -> None:
    print("| language | seed | property | state | probe accuracy d=0, K-1, K+1, K+2, K+3, "
          "last | swap effect at K+1, K+2, K+3, last / at K-1 |")
    print("|---|---|---|---|---|---|")
    for r in runs:
        for prop, p in r["probe"].items():
            k = p["K"]
            for state in STATES:
                acc, eff = p[state]["probe_accuracy"], p[state]["swap_effect_ratio"]
                at = [k - 1, k + 1, k + 2, k + 3, len(acc) - 1]
                print(f"| {r['language']} | {r['seed']} | {prop} | {state} | "
                      + " ".join(f"{acc[i]:.2f}" for i in [0, *at]) + " | "
                      + " ".join(f"{eff[i] / eff[k - 1]:.2f}" for i in at[1:]) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True,
                        help="Folder for corpora, models and gradients (reused when rerun).")
    parser.add_argument("--json", type=Path, default=HERE / "results" / "heldout_properties.json")
    parser.add_argument("--languages", nargs="+", default=list(LANGUAGES),
                        choices=list(LANGUAGES))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--train-tokens", type=int, default=200_000)
    parser.add_argument("--valid-tokens", type=int, default=10_000)
    parser.add_argument("--probe", action="store_true",
                        help="Also probe each state for the value at every delay, and swap "
                             "carriers (does the state still hold the value after K?).")
    args = parser.parse_args()
    runs = []
    for name in args.languages:
        for seed in args.seeds:
            done = args.work / f"{name}-seed{seed}" / "run.json"
            if done.exists():
                runs.append(json.loads(done.read_text()))
                continue
            r = run(name, seed, args.work, args.epochs, args.train_tokens, args.valid_tokens)
            done.write_text(json.dumps(r, indent=1) + "\n")
            runs.append(r)
            print(f"{name} seed {seed}: {r['seconds']}", flush=True)
    if args.probe:
        for r in runs:
            d = args.work / f"{r['language']}-seed{r['seed']}"
            lang = LANGUAGES[r["language"]]
            r["probe"] = probe(d, lang["properties"], lang["max_delay"])
    lines = verdicts(runs)
    totals = report(runs, lines)
    if args.probe:
        report_probe(runs)
    settings = {k: getattr(args, k) for k in ("epochs", "train_tokens", "valid_tokens")}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"settings": settings, "languages": LANGUAGES,
                                     "runs": runs, "verdicts": lines, "totals": totals},
                                    indent=1) + "\n")


if __name__ == "__main__":
    main()
