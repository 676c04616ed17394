"""Engine throughput against the machine's own matrix-multiply rate and the original's algorithm.

Everything is measured in one run on the machine it runs on, and reported as ratios:

1. the float32 matrix-multiply rate for the engine's dominant product shapes,
   (D E x H) @ (H x 2H) -- what the engine computes -- and (D E x H) @ (H x 4H), the
   plain product of the method's cost model; the ceiling is the better rate divided
   by the nominal 8 E H^2 flops per Jacobian;
2. the engine (LSTM cell state, D delays, a dozen classes plus "all") in Jacobians/s;
3. the original's algorithm written in PyTorch: per time step one forward pass over
   the segment and one backward pass per state component, each giving one row of
   G(t, tau - t) for every position of the segment;
4. peak memory (max RSS of a fresh process) for two text lengths;
5. the projected time for PTB valid (73,760 tokens) at D delays.

    python benchmarks/engine_throughput.py            # the baseline shape, D = 200
    python benchmarks/engine_throughput.py --device cuda

Figures are medians over repeats; the machine may be shared, so read the ratios.
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

PTB_VALID_TOKENS = 73_760


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def median_time(fn, repeats: int, device: str) -> float:
    fn()
    sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def matmul_rate(rows: int, inner: int, cols: int, device: str, repeats: int) -> float:
    a = torch.randn(rows, inner, device=device)
    b = torch.randn(inner, cols, device=device)
    out = torch.empty(rows, cols, device=device)
    t = median_time(lambda: torch.mm(a, b, out=out), repeats, device)
    return 2 * rows * inner * cols / t


def make_model(V: int, E: int, H: int, seed: int = 0):
    from stategrad.lm import RNNLM, ModelSpec

    torch.manual_seed(seed)
    return RNNLM(ModelSpec(vocab_size=V, embedding_size=E, hidden_size=H, init_scale=0.1)).eval()


def make_classes(V: int, n: int, seed: int = 0):
    from stategrad.data import ClassSet

    rng = np.random.default_rng(seed)
    member = rng.random((V, n + 1)) < 0.15
    member[:, 0] = True
    return ClassSet(["all"] + [f"class{i}" for i in range(n)], member)


def engine_rate(args, matmul_probe) -> tuple[float, float, int, float]:
    """Median Jacobians/s, positions/s, Jacobians per run, and the median of the per-repeat
    ratios engine / ceiling, the ceiling measured right before each repeat (on a shared
    machine the paired ratio is steadier than either figure)."""
    from stategrad.gradients import compute_state_gradients

    model = make_model(args.vocab, args.embedding, args.hidden)
    classes = make_classes(args.vocab, args.classes)
    rng = np.random.default_rng(1)
    # Text long enough that every counted pair completes: positions + D - 1 steps.
    tokens = rng.integers(0, args.vocab, size=args.positions + args.delays)
    compute_state_gradients(model, tokens[: args.delays + 20], max_delay=args.delays,
                            classes=classes, device=args.device, stop=20)  # warm-up
    rates, ratios, pairs = [], [], 0
    for _ in range(args.repeats_engine):
        ceiling = matmul_probe()
        sync(args.device)
        t0 = time.perf_counter()
        res = compute_state_gradients(model, tokens, max_delay=args.delays, classes=classes,
                                      device=args.device, stop=args.positions)
        sync(args.device)
        elapsed = time.perf_counter() - t0
        pairs = int(res.counts[:, 0].sum())
        rates.append(pairs / elapsed)
        ratios.append(rates[-1] / ceiling)
    rate = statistics.median(rates)
    return rate, rate * args.positions / pairs, pairs, statistics.median(ratios)


def original_rate(args) -> float:
    """One time step tau of the original: forward over the segment up to tau, then one
    backward pass per component of c_tau; each gives a row of G(t, tau - t) for all t."""
    model = make_model(args.vocab, args.embedding, args.hidden).to(args.device)
    tau = args.delays - 1
    tokens = torch.randint(0, args.vocab, (tau + 1,), device=args.device)

    def one_time_step() -> None:
        x = model.embedding(tokens).detach().requires_grad_(True)
        _, (h, c) = model.rnn(x.unsqueeze(1))
        target = c[-1, 0]
        for j in range(args.hidden):
            torch.autograd.grad(target[j], x, retain_graph=j < args.hidden - 1)

    t = median_time(one_time_step, args.repeats_original, args.device)
    return args.delays / t  # Jacobians (delays 0..D-1 of one tau) per second


def peak_memory(tokens: int, args) -> float:
    """Max RSS (MiB) of a fresh process running the engine over ``tokens`` tokens."""
    code = f"""
import resource, numpy as np, torch
import sys; sys.path.insert(0, {repr(sys.path[0])})
from engine_throughput import make_model, make_classes
from stategrad.gradients import compute_state_gradients
torch.set_num_threads({torch.get_num_threads()})
m = make_model({args.vocab}, {args.embedding}, {args.hidden})
c = make_classes({args.vocab}, {args.classes})
t = np.random.default_rng(2).integers(0, {args.vocab}, size={tokens})
compute_state_gradients(m, t, max_delay={args.memory_delays}, classes=c)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1]) / 1024


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--embedding", type=int, default=64)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--vocab", type=int, default=10_000)
    p.add_argument("--delays", type=int, default=200)
    p.add_argument("--classes", type=int, default=12)
    p.add_argument("--positions", type=int, default=400)
    p.add_argument("--repeats-engine", type=int, default=3)
    p.add_argument("--repeats-original", type=int, default=3)
    p.add_argument("--repeats-matmul", type=int, default=15)
    p.add_argument("--memory-tokens", default="10000,100000")
    p.add_argument("--memory-delays", type=int, default=2,
                   help="delays for the memory runs (they cover every token of the text)")
    p.add_argument("--skip-memory", action="store_true")
    p.add_argument("--memory-only", action="store_true", help="only the peak-memory runs")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int)
    p.add_argument("--json", help="also write the figures to this file")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    D, E, H = args.delays, args.embedding, args.hidden
    print(f"shape: E={E} H={H} V={args.vocab} D={D}, {args.classes} classes + all, "
          f"device {args.device}, {torch.get_num_threads()} threads, torch {torch.__version__}")

    figures: dict = {}
    if args.memory_only:
        args.skip_memory = False
    else:
        figures = throughput(args)
    if not args.skip_memory and args.device == "cpu":
        sizes = [int(s) for s in args.memory_tokens.split(",")]
        mem = {n: peak_memory(n, args) for n in sizes}
        for n, m in mem.items():
            print(f"peak memory, {n:,} tokens (D={args.memory_delays}): {m:,.0f} MiB")
        ratio = mem[sizes[-1]] / mem[sizes[0]]
        print(f"  ratio {sizes[-1]:,} / {sizes[0]:,} tokens = {ratio:.3f}  (target <= 1.10)")
        figures["peak_memory_mib"] = mem
        figures["peak_memory_ratio"] = ratio
    print(f"(this process: max RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MiB)")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(figures, handle, indent=2)


def throughput(args) -> dict:
    D, E, H = args.delays, args.embedding, args.hidden

    def ceiling_now() -> float:
        best = max(matmul_rate(D * E, H, 2 * H, args.device, args.repeats_matmul),
                   matmul_rate(D * E, H, 4 * H, args.device, args.repeats_matmul))
        return best / (8 * E * H * H)

    rate_2h = matmul_rate(D * E, H, 2 * H, args.device, args.repeats_matmul)
    rate_4h = matmul_rate(D * E, H, 4 * H, args.device, args.repeats_matmul)
    best = max(rate_2h, rate_4h)
    ceiling = best / (8 * E * H * H)
    print(f"matmul (DE x H)@(H x 2H): {rate_2h / 1e9:8.1f} GFLOP/s")
    print(f"matmul (DE x H)@(H x 4H): {rate_4h / 1e9:8.1f} GFLOP/s")
    print(f"ceiling at 8 E H^2 flops per Jacobian: {ceiling:,.0f} Jacobians/s")

    jac, pos, pairs, paired = engine_rate(args, ceiling_now)
    print(f"engine: {jac:,.0f} Jacobians/s ({pos:,.1f} positions/s, {pairs:,} Jacobians per run)")
    print(f"  engine / ceiling = {paired:.2f}  (median of per-repeat ratios, each against the "
          f"ceiling measured just before; target >= 0.80)")

    orig = original_rate(args)
    print(f"original algorithm: {orig:,.1f} Jacobians/s")
    print(f"  engine / original = {jac / orig:,.1f}x  (target >= 30x)")

    projected = PTB_VALID_TOKENS * D / jac
    print(f"projected PTB valid ({PTB_VALID_TOKENS:,} tokens) at D={D}: {projected / 60:,.1f} min "
          f"(original algorithm: {PTB_VALID_TOKENS * D / orig / 3600:,.1f} h)")

    figures = dict(matmul_2h_gflops=rate_2h / 1e9, matmul_4h_gflops=rate_4h / 1e9,
                   ceiling_jacobians_per_s=ceiling, engine_jacobians_per_s=jac,
                   engine_over_ceiling=paired, original_jacobians_per_s=orig,
                   engine_over_original=jac / orig, projected_ptb_valid_s=projected)
    return figures


if __name__ == "__main__":
    main()
