"""Context ablation against the state gradient engine at the same shape.

Both take the same model (LSTM, V words, E = H) and text and the same number of delays:
the engine computes G(t, d) for d < D, the ablation the loss change and KL at
distances 1..D; both do D recurrent steps per start position.  Printed: the median
positions/s of each (start positions per second, every delay or distance included) and
their ratio (the target is ablation >= 0.5 x engine), plus a profile of the ablation's
parts (the state walk, the ablated runs, the comparison over V).

    python benchmarks/ablation_throughput.py                  # V 10000, H 200, D 20
    python benchmarks/ablation_throughput.py --hidden 650 --vocab 10000 --delays 40

Figures are medians over repeats in one run; the machine may be shared, so read the ratio.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import time

import numpy as np
import torch

from stategrad.ablation import compute_ablation
from stategrad.data import Vocabulary
from stategrad.gradients import compute_state_gradients
from stategrad.lm import RNNLM, LanguageModel, ModelSpec


def median_rate(fn, positions: int, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return positions / statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--vocab", type=int, default=10_000)
    ap.add_argument("--hidden", type=int, default=200)
    ap.add_argument("--delays", type=int, default=20)
    ap.add_argument("--tokens", type=int, default=1_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--profile", action="store_true", help="Also print the ablation's profile.")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    V, H, D, N = args.vocab, args.hidden, args.delays, args.tokens
    module = RNNLM(ModelSpec(V, H, H, cell="lstm")).eval()
    lm = LanguageModel(module, Vocabulary(["<unk>", "<eos>"] + [f"w{i}" for i in range(V - 2)]))
    tokens = np.random.default_rng(0).integers(0, V, N + D)
    starts = N  # both use the start positions 0 .. N-1 (the text has D more tokens)

    def engine():
        compute_state_gradients(lm, tokens, max_delay=D, state="cell", device=args.device,
                                stop=starts)

    def ablation():
        compute_ablation(lm, tokens, max_distance=D, replace="unk", device=args.device,
                         stop=starts)

    print(f"LSTM V={V} E=H={H}, D={D}, {N} start positions, {torch.get_num_threads()} threads")
    eng = median_rate(engine, starts, args.repeats)
    abl = median_rate(ablation, starts, args.repeats)
    print(f"engine    {eng:10.1f} positions/s (median of {args.repeats})")
    print(f"ablation  {abl:10.1f} positions/s (median of {args.repeats})")
    print(f"ratio ablation / engine: {abl / eng:.2f}  (target >= 0.5)")
    if args.profile:
        prof = cProfile.Profile()
        prof.runcall(ablation)
        pstats.Stats(prof).sort_stats("cumtime").print_stats(
            "ablation/(walk|modes|run)", 12)


if __name__ == "__main__":
    main()
