"""State gradients of a Mamba-style LM through the generic engine: Jacobians/s and memory.

At a stated shape (default: vocabulary 1,000, d_model = E = 64, expand 2 so d_inner 128,
d_state 16, d_conv 4, one layer; the ``ssm`` state has d_inner x d_state = 2,048 entries):

1. Jacobians G(t, d) of the ``ssm`` (and ``conv``) state per second through the generic
   path (``torch.func.jvp`` of the model's pure step, vmapped over the D x E tangents),
   median over repeats, with the state size each Jacobian has;
2. peak memory (max RSS of a fresh process) for two text lengths, and their ratio:
   the pass carries D x E tangents of the state, never the text.

    python benchmarks/mamba_engine.py
    python benchmarks/mamba_engine.py --delays 50 --positions 400 --device cuda

Figures are medians; the machine may be shared, so read the ratios.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import numpy as np
import torch


def make_model(vocab: int, d_model: int, d_state: int, layers: int, seed: int = 0):
    from stategrad.lm import MambaLM, ModelSpec

    torch.manual_seed(seed)
    spec = ModelSpec(vocab_size=vocab, embedding_size=d_model, hidden_size=d_model,
                     num_layers=layers, cell="mamba", d_state=d_state, d_conv=4, expand=2)
    return MambaLM(spec).eval()


def rate(args, state: str) -> tuple[float, int]:
    """Median Jacobians/s over repeats and the Jacobians of one run."""
    from stategrad.gradients import compute_state_gradients

    model = make_model(args.vocab, args.d_model, args.d_state, args.layers)
    tokens = np.random.default_rng(1).integers(0, args.vocab, size=args.positions + args.delays)
    compute_state_gradients(model, tokens[: args.delays + 5], max_delay=args.delays, state=state,
                            device=args.device, stop=5, progress=False)  # warm-up
    rates, pairs = [], 0
    for _ in range(args.repeats):
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        res = compute_state_gradients(model, tokens, max_delay=args.delays, state=state,
                                      device=args.device, stop=args.positions, progress=False)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        pairs = int(res.counts[:, 0].sum())
        rates.append(pairs / (time.perf_counter() - t0))
    return statistics.median(rates), pairs


def peak_memory(tokens: int, args) -> float:
    """Max RSS (MiB) of a fresh process running the engine over ``tokens`` tokens."""
    code = f"""
import resource, numpy as np, torch
import sys; sys.path.insert(0, {repr(sys.path[0])})
from mamba_engine import make_model
from stategrad.gradients import compute_state_gradients
torch.set_num_threads({torch.get_num_threads()})
m = make_model({args.vocab}, {args.d_model}, {args.d_state}, {args.layers})
t = np.random.default_rng(2).integers(0, {args.vocab}, size={tokens})
compute_state_gradients(m, t, max_delay={args.memory_delays}, state="ssm", progress=False)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1]) / 1024


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--vocab", type=int, default=1000)
    p.add_argument("--d-model", type=int, default=64)
    p.add_argument("--d-state", type=int, default=16)
    p.add_argument("--layers", type=int, default=1)
    p.add_argument("--delays", type=int, default=20)
    p.add_argument("--positions", type=int, default=100)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--memory-tokens", type=int, nargs=2, default=[200, 800])
    p.add_argument("--memory-delays", type=int, default=10)
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", help="also write the figures to this file")
    args = p.parse_args()
    d_inner = 2 * args.d_model
    print(f"Mamba LM: V={args.vocab}, d_model=E={args.d_model}, d_inner={d_inner}, "
          f"d_state={args.d_state}, layers={args.layers}; D={args.delays}, "
          f"{args.positions} positions, {args.device}, {torch.get_num_threads()} threads")
    figures: dict = {"shape": vars(args)}
    for state, size in (("ssm", d_inner * args.d_state), ("conv", d_inner * 3)):
        r, pairs = rate(args, state)
        print(f"{state:>5} state ({size:,} x {args.d_model} per Jacobian): {r:,.0f} Jacobians/s "
              f"(median of {args.repeats}, {pairs:,} Jacobians each)")
        figures[f"{state}_jacobians_per_s"] = r
    small, large = args.memory_tokens
    mem = {n: peak_memory(n, args) for n in (small, large)}
    for n, m in mem.items():
        print(f"peak memory, {n:,} tokens (D={args.memory_delays}): {m:,.1f} MiB")
    print(f"ratio {large:,} / {small:,} tokens: {mem[large] / mem[small]:.3f} "
          "(1.0 = flat in text length)")
    figures["peak_memory_mib"] = mem
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=1)
    print(f"(this process: max RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MiB)")


if __name__ == "__main__":
    main()
