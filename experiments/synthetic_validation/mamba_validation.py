"""A Mamba-style LM on the synthetic language with planted memory (k = 5 and 15).

For every seed: generate the demo corpus (unequal embedding variance, frozen planted
embeddings), train a one-layer Mamba-style LM on it with ``stategrad train`` (a TOML
config written here, ``model.cell = "mamba"``), score it on the planted targets, compute
the state gradients of its selective scan state (``ssm``; ``--states`` adds ``conv`` or
``output``) at the first ``--positions`` positions of the validation text, and measure identity memory as the demo does for the
LSTM (:func:`stategrad.demo.measure`).  It prints a table and writes
``--out/mamba_validation.json``.

    python experiments/synthetic_validation/mamba_validation.py --out /tmp/mamba-val --seeds 0 1

Nothing is cached: every run generates, trains and differentiates from scratch.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from stategrad.analysis import embedding_stats_for_model
from stategrad.data import read_tokens
from stategrad.demo import DemoSettings, measure, target_scores
from stategrad.gradients import compute_state_gradients
from stategrad.lm import load_trained
from stategrad.synth import generate_corpus

CONFIG = """\
[data]
path = "{data}"
[model]
cell = "mamba"
hidden_size = {d_model}
d_state = {d_state}
d_conv = 4
expand = 2
init_scale = 0.1
pretrained_embeddings = "{data}/embeddings.npz"
fixed_embeddings = true
[training]
optimizer = "adam"
learning_rate = {lr}
max_epoch = {epochs}
max_max_epoch = {epochs}
batch_size = 20
num_steps = 35
seed = {seed}
threads = {threads}
[output]
save_path = "{model}"
"""


def train_model(out: Path, args, seed: int) -> float:
    """Write the config and run ``stategrad train`` on it; returns the wall time."""
    settings = DemoSettings(seed=seed)
    corpus = generate_corpus(settings.synth_config(), out / "data", overwrite=True)
    d_model = corpus.metadata["config"]["embedding_dim"]
    config = out / "mamba.toml"
    config.write_text(CONFIG.format(data=out / "data", model=out / "model", d_model=d_model,
                                    d_state=args.d_state, lr=args.lr, epochs=args.epochs,
                                    seed=seed + 1, threads=args.threads))
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "stategrad", "train", str(config), "--overwrite",
                    "--no-progress"], check=True)
    return time.perf_counter() - started


def peak(curve: list[float], lo: int, hi: int) -> float:
    return float(np.nanmax(np.asarray(curve)[lo:hi]))


def summarise(m: dict, state: str) -> dict:
    """Hold/fall of each trigger class's normalised identity memory, filler decay."""
    curves = m["identity_memory"]["normalised"]
    row: dict = {}
    for name, k in m["spans"].items():
        c = np.asarray(curves[name])
        # held up to k - 1 (the target is read at k), gone after: ratio before/after
        row[f"{state} {name} hold(k-1)/d0"] = float(c[k - 1] / c[0])
        row[f"{state} {name} fall(k+2)/(k-1)"] = float(c[min(k + 2, len(c) - 1)] / c[k - 1])
    f = np.asarray(curves["filler"])
    row[f"{state} filler r(3)"] = float(f[3] / f[0])
    return row


def run_seed(args, seed: int) -> dict:
    out = Path(args.out) / f"seed{seed}"
    out.mkdir(parents=True, exist_ok=True)
    if args.reuse and (out / "model" / "best.pt").is_file():
        train_seconds = float("nan")  # trained by an earlier call
    else:
        train_seconds = train_model(out, args, seed)
    model = load_trained(out / "model" / "best.pt")
    from stategrad.synth import load_corpus

    corpus = load_corpus(out / "data")
    valid = read_tokens(corpus.path("valid"), model.vocab)
    scores = target_scores(model, corpus, valid)
    stats = embedding_stats_for_model(model, corpus.path("train"))
    row = {"seed": seed, "train_s": train_seconds,
           "cross_entropy": scores.cross_entropy,
           "ideal_cross_entropy": corpus.metadata["empirical"]["valid"]["cross_entropy_nats"],
           **{f"acc {k}": v for k, v in scores.accuracy.items()}}
    for state in args.states:
        started = time.perf_counter()
        result = compute_state_gradients(model, valid, max_delay=args.max_delay, state=state,
                                         classes=corpus.class_set(model.vocab), progress=False,
                                         stop=args.positions)
        row[f"{state}_gradients_s"] = time.perf_counter() - started
        m = measure(result, stats, model, corpus, scores)
        row.update(summarise(m, state))
        row[f"{state} identity_memory"] = m["identity_memory"]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--lr", type=float, default=0.005)
    parser.add_argument("--d-state", type=int, default=8)
    parser.add_argument("--max-delay", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--positions", type=int, default=3000,
                        help="start positions of the validation text to differentiate")
    parser.add_argument("--reuse", action="store_true",
                        help="keep a model an earlier call trained in --out")
    parser.add_argument("--states", nargs="+", default=["ssm"], choices=["ssm", "conv", "output"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = [run_seed(args, s) for s in args.seeds]
    for row in rows:
        print(" ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                       for k, v in row.items() if "identity_memory" not in k))
    (Path(args.out) / "mamba_validation.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
