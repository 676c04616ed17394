"""How the wall time of a state gradient run scales with local worker processes.

Runs the same job (an LSTM, cell state, random Zipf-like text) under ``torchrun``
with 1, 2, ... processes on this machine, one CPU thread each, and prints the time
of the distributed run (from the result's metadata: slices, boundary states,
reduction, writing) and the wall time of the whole launch (with interpreter and
torch start-up), and the speed-up against one process::

    python benchmarks/distributed_scaling.py --procs 1 2 --json scaling.json

Each worker is ``python -m torch.distributed.run --standalone --nproc-per-node N
benchmarks/distributed_scaling.py --worker ...``; the results of all runs are
checked to agree with each other (float64).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def worker(a: argparse.Namespace) -> None:
    import torch

    from stategrad.data import ClassSet
    from stategrad.gradients import EngineOptions, compute_state_gradients_distributed
    from stategrad.lm import RNNLM, ModelSpec

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = RNNLM(ModelSpec(vocab_size=a.vocab, embedding_size=a.E, hidden_size=a.H,
                            num_layers=1, cell="lstm", init_scale=0.1)).eval()
    rng = np.random.default_rng(2)
    tokens = np.minimum(rng.zipf(1.2, size=a.positions) - 1, a.vocab - 1)
    member = np.random.default_rng(1).random((a.vocab, a.classes + 1)) < 0.15
    member[:, 0] = True
    classes = ClassSet(["all"] + [f"c{i}" for i in range(a.classes)], member)
    run = compute_state_gradients_distributed(
        model, tokens, EngineOptions(max_delay=a.D, dtype=torch.float64), classes,
        out_path=a.output, slices_per_rank=a.slices_per_rank,
        echo=lambda message: None)
    if run.rank == 0:
        Path(a.output + ".json").write_text(json.dumps({
            "seconds": run.seconds,
            "ranks": [{"rank": r.rank, "slices": len(r.computed), "positions": r.positions,
                       "busy_s": r.seconds} for r in run.reports]}))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--procs", type=int, nargs="+", default=[1, 2])
    p.add_argument("--threads", type=int, default=1, help="CPU threads per process")
    p.add_argument("--positions", type=int, default=6000)
    p.add_argument("--E", type=int, default=16)
    p.add_argument("--H", type=int, default=64)
    p.add_argument("--D", type=int, default=50)
    p.add_argument("--vocab", type=int, default=2000)
    p.add_argument("--classes", type=int, default=4)
    p.add_argument("--slices-per-rank", type=int, default=4)
    p.add_argument("--json", default=None)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--output", default=None, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.worker:
        worker(a)
        return 0

    from stategrad.gradients import load_result

    shared = ["--threads", str(a.threads), "--positions", str(a.positions), "--E", str(a.E),
              "--H", str(a.H), "--D", str(a.D), "--vocab", str(a.vocab), "--classes",
              str(a.classes), "--slices-per-rank", str(a.slices_per_rank)]
    rows, results = [], []
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads))
    with tempfile.TemporaryDirectory() as tmp:
        for n in a.procs:
            out = str(Path(tmp) / f"n{n}.h5")
            cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                   f"--nproc-per-node={n}", str(Path(__file__).resolve()), "--worker",
                   "--output", out, *shared]
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, env=env)
            wall = time.perf_counter() - t0
            info = json.loads(Path(out + ".json").read_text())
            results.append(load_result(out))
            rows.append({"procs": n, "run_s": info["seconds"], "launch_wall_s": wall,
                         "ranks": info["ranks"]})
            print(f"{n} process(es): run {info['seconds']:.2f} s, whole launch {wall:.2f} s; "
                  + ", ".join(f"rank {r['rank']} {r['slices']} slices / {r['busy_s']:.2f} s busy"
                              for r in info["ranks"]), flush=True)
    ref = results[0]
    worst = max(float(np.abs(r.sums - ref.sums).max() / np.abs(ref.sums).max()) for r in results)
    base = rows[0]["run_s"]
    for row in rows:
        row["speedup"] = base / row["run_s"]
        print(f"{row['procs']} process(es): speed-up {row['speedup']:.2f}x "
              f"(efficiency {row['speedup'] / row['procs'] * rows[0]['procs']:.0%})")
    print(f"largest relative difference between the runs' sums: {worst:.1e}")
    if a.json:
        Path(a.json).write_text(json.dumps({"cpus": os.cpu_count(), "args": vars(a), "rows": rows,
                                            "max_relative_difference": worst}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
