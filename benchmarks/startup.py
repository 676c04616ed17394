"""Start-up time of the ``stategrad`` command: whole processes, as a user waits for them.

Times ``stategrad --help``, ``stategrad COMMAND --help`` for a few commands and
``stategrad inspect`` of a small result, each run several times in a fresh process,
and prints the medians and their ratio to a bare ``python -c pass`` (the interpreter's
own start, which no change here can remove).  The runs are interleaved, so load changes
on a shared machine hit every command alike.

    python benchmarks/startup.py              # about half a minute
    python benchmarks/startup.py --runs 15

Target: under 1 s for --help and inspect.
"""

from __future__ import annotations

import argparse
import collections
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def small_result(folder: Path) -> Path:
    """A result of a tiny LSTM over a short text, written by the engine."""
    import numpy as np
    import torch

    from stategrad.data import Vocabulary
    from stategrad.gradients import compute_state_gradients
    from stategrad.lm import RNNLM, ModelSpec, load_model, save_checkpoint

    words = ["the", "cat", "sat", "on", "mat"]
    vocab = Vocabulary.from_counts(collections.Counter({w: 9 - i for i, w in enumerate(words)}
                                                      | {"<eos>": 3}))
    torch.manual_seed(0)
    module = RNNLM(ModelSpec(vocab_size=len(vocab), embedding_size=8, hidden_size=16, cell="lstm"))
    save_checkpoint(folder / "model.pt", module, vocab, config={})
    tokens = np.array([vocab[w] for w in np.random.default_rng(0).choice(words, 200)])
    res = compute_state_gradients(load_model(folder / "model.pt"), tokens, max_delay=10)
    return res.save(folder / "result.h5")


def elapsed(argv: list[str]) -> float:
    env = dict(os.environ, PYTHONPATH=str(SRC))
    began = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, env=env)
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="Runs of each command.")
    args = parser.parse_args()
    command = [sys.executable, "-m", "stategrad"]
    with tempfile.TemporaryDirectory() as tmp:
        result = small_result(Path(tmp))
        cases = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "stategrad --help": command + ["--help"],
            "stategrad gradients --help": command + ["gradients", "--help"],
            "stategrad eval --help": command + ["eval", "--help"],
            "stategrad report --help": command + ["report", "--help"],
            "stategrad inspect RESULT": command + ["inspect", str(result)],
        }
        times: dict[str, list[float]] = {name: [] for name in cases}
        for argv in cases.values():  # one warm-up each: the file cache, .pyc files
            elapsed(argv)
        for _ in range(args.runs):
            for name, argv in cases.items():
                times[name].append(elapsed(argv))
    bare = statistics.median(times["python -c pass"])
    print(f"{'command':<30} {'median s':>9} {'min s':>7} {'x bare python':>14}  ({args.runs} runs)")
    for name, runs in times.items():
        median = statistics.median(runs)
        print(f"{name:<30} {median:>9.3f} {min(runs):>7.3f} {median / bare:>14.1f}")


if __name__ == "__main__":
    main()
