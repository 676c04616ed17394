"""The generic engine path (any recurrent-protocol model) against the fused path, same LSTM.

Both paths compute the same state gradients of the same nn.LSTM (cell state, D delays,
a dozen classes plus "all"): the fused path folds each step's derivative into the
weights, the generic one pushes the tangents through the model's step with
``torch.func.jvp`` vmapped over them (``cells="generic"``).  Measured in one run:

1. Jacobians/s of each path, a fused and a generic run per repeat (paired, so that a
   shared machine's load affects both alike), and the median of the per-repeat ratios;
2. peak memory (max RSS of a fresh process) of the generic path at two text lengths:
   flat in the text length.

    python benchmarks/generic_engine.py              # E=64, H=256 (engine_throughput's shape), D=50
    python benchmarks/generic_engine.py --device cuda --delays 200 --positions 400

Figures are medians over repeats; the machine may be shared, so read the ratios.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

import numpy as np
import torch
from engine_throughput import make_classes, make_model, sync


def rates(args) -> tuple[list[float], list[float]]:
    """Jacobians/s of the fused and the generic path, one of each per repeat."""
    from stategrad.gradients import compute_state_gradients

    model = make_model(args.vocab, args.embedding, args.hidden)
    classes = make_classes(args.vocab, args.classes)
    tokens = np.random.default_rng(1).integers(0, args.vocab, size=args.positions + args.delays)

    def run(cells: str, stop: int) -> float:
        sync(args.device)
        t0 = time.perf_counter()
        res = compute_state_gradients(model, tokens, max_delay=args.delays, classes=classes,
                                      device=args.device, stop=stop, cells=cells)
        sync(args.device)
        return int(res.counts[:, 0].sum()) / (time.perf_counter() - t0)

    run("fused", 5), run("generic", 5)  # warm-up
    fused, generic = [], []
    for _ in range(args.repeats):
        fused.append(run("fused", args.positions))
        generic.append(run("generic", args.positions))
    return fused, generic


def peak_memory(tokens: int, args) -> float:
    """Max RSS (MiB) of a fresh process running the generic path over ``tokens`` tokens."""
    code = f"""
import resource, sys, numpy as np, torch
sys.path.insert(0, {sys.path[0]!r})
from engine_throughput import make_model, make_classes
from stategrad.gradients import compute_state_gradients
torch.set_num_threads({torch.get_num_threads()})
m = make_model({args.vocab}, {args.embedding}, {args.hidden})
c = make_classes({args.vocab}, {args.classes})
t = np.random.default_rng(2).integers(0, {args.vocab}, size={tokens})
compute_state_gradients(m, t, max_delay={args.memory_delays}, classes=c, cells="generic",
                        device={args.device!r})
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1]) / 1024


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--embedding", type=int, default=64)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--vocab", type=int, default=10_000)
    p.add_argument("--delays", type=int, default=50)
    p.add_argument("--classes", type=int, default=12)
    p.add_argument("--positions", type=int, default=60)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--memory-tokens", default="500,2000")
    p.add_argument("--memory-delays", type=int, default=2)
    p.add_argument("--skip-memory", action="store_true")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int)
    p.add_argument("--json", help="also write the figures to this file")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"LSTM E={args.embedding} H={args.hidden} V={args.vocab}, cell state, D={args.delays}, "
          f"{args.classes} classes + all, {args.positions} start positions, {args.repeats} "
          f"repeats, {torch.get_num_threads()} threads, {args.device}")
    fused, generic = rates(args)
    ratios = [f / g for f, g in zip(fused, generic, strict=True)]
    figures = {"fused_jacobians_per_s": statistics.median(fused),
               "generic_jacobians_per_s": statistics.median(generic),
               "fused_over_generic": statistics.median(ratios)}
    print(f"fused:   {figures['fused_jacobians_per_s']:,.0f} Jacobians/s (median)")
    print(f"generic: {figures['generic_jacobians_per_s']:,.0f} Jacobians/s (median)")
    print(f"fused / generic: {figures['fused_over_generic']:.2f} (median of paired ratios "
          f"{', '.join(f'{r:.2f}' for r in ratios)})")
    if not args.skip_memory:
        lengths = [int(n) for n in args.memory_tokens.split(",")]
        peaks = {n: peak_memory(n, args) for n in lengths}
        figures["generic_peak_rss_mib"] = peaks
        print("generic peak RSS: " + ", ".join(f"{n:,} tokens {m:.0f} MiB" for n, m in peaks.items())
              + f" (ratio {peaks[lengths[-1]] / peaks[lengths[0]]:.2f} for "
              f"{lengths[-1] / lengths[0]:.0f}x the text)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures | {"arguments": vars(args)}, f, indent=1)


if __name__ == "__main__":
    main()
