"""State gradient engine throughput on a GPU, against the GPU's own matrix-multiply rate.

Baseline shape (the defaults): LSTM cell state, E=64, H=256, V=10,000, D=200, 12 classes
plus "all".  It prints and (with --json) writes:

- engine throughput: start positions per second, and the nominal rate
  ``8 E H^2`` flops per Jacobian x D Jacobians per position;
- the device's rate for the engine's dominant product, (D*E x H) @ (H x 2H), in the
  same dtype (float32, and TF32 when allowed) -- the ceiling to compare with; the
  engine folds the gate coefficients so that product is 4 E H^2 flops per Jacobian,
  half the nominal work, so the engine can exceed 100 % of "nominal at matmul rate";
- the projected time of PTB valid (73,760 tokens) at the measured D;
- the error of float32 (and TF32) sums against float64 on the first --error-positions.

On a GPU host::

    python benchmarks/gpu_engine.py --device cuda --json gpu_engine.json

It runs on CPU too, for a smoke test with small shapes::

    python benchmarks/gpu_engine.py --device cpu --positions 64 --E 8 --H 32 --D 16 \\
        --vocab 500 --error-positions 32
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time

import numpy as np
import torch

from stategrad.comm import matmul_precision
from stategrad.data import ClassSet
from stategrad.gradients import EngineOptions, StateGradientEngine, precision_error
from stategrad.lm import RNNLM, ModelSpec

PTB_VALID_TOKENS = 73_760


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_rate(device: torch.device, D: int, E: int, H: int, dtype: torch.dtype,
                tf32: bool, seconds: float = 1.0) -> float:
    """Flop/s of (D*E x H) @ (H x 2H) on ``device``, out= a preallocated buffer, as the
    engine calls it."""
    a = torch.randn(D * E, H, device=device, dtype=dtype)
    b = torch.randn(H, 2 * H, device=device, dtype=dtype)
    out = torch.empty(D * E, 2 * H, device=device, dtype=dtype)
    with matmul_precision(tf32):
        for _ in range(3):
            torch.mm(a, b, out=out)
        sync(device)
        n, t0 = 0, time.perf_counter()
        while True:
            for _ in range(10):
                torch.mm(a, b, out=out)
            n += 10
            sync(device)
            if time.perf_counter() - t0 >= seconds:
                break
        elapsed = time.perf_counter() - t0
    return 2.0 * D * E * H * 2 * H * n / elapsed


def make_model(V: int, E: int, H: int) -> RNNLM:
    torch.manual_seed(0)
    spec = ModelSpec(vocab_size=V, embedding_size=E, hidden_size=H, num_layers=1, cell="lstm",
                     init_scale=0.1, forget_bias=1.0)
    return RNNLM(spec).eval()


def make_classes(V: int, n: int) -> ClassSet:
    member = np.random.default_rng(1).random((V, n + 1)) < 0.15
    member[:, 0] = True
    return ClassSet(["all"] + [f"class{i}" for i in range(n)], member)


def make_text(V: int, n: int) -> np.ndarray:
    # Zipf-like ids, as a word-level text has: frequent words are small ids.
    rng = np.random.default_rng(2)
    return np.minimum(rng.zipf(1.2, size=n) - 1, V - 1).astype(np.int64)


def engine_rate(model, tokens, opts: EngineOptions, classes, positions: int, tf32: bool
                ) -> tuple[float, float]:
    """(positions per second, seconds) of one pass over ``positions`` start positions,
    after a short warm-up pass."""
    device = torch.device(opts.device)
    with torch.no_grad(), matmul_precision(tf32):
        engine = StateGradientEngine(model, tokens, opts, classes)
        warm = min(positions, max(16, opts.max_delay))
        engine.run(0, warm, progress=False)
        sync(device)
        t0 = time.perf_counter()
        engine.run(0, positions, progress=False)
        sync(device)
        seconds = time.perf_counter() - t0
    return positions / seconds, seconds


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu (default cuda)")
    p.add_argument("--E", type=int, default=64)
    p.add_argument("--H", type=int, default=256)
    p.add_argument("--vocab", type=int, default=10_000)
    p.add_argument("--D", type=int, default=200)
    p.add_argument("--classes", type=int, default=12, help="classes besides 'all'")
    p.add_argument("--positions", type=int, default=4000, help="start positions timed")
    p.add_argument("--error-positions", type=int, default=1000,
                   help="start positions for the float64 comparison")
    p.add_argument("--no-tf32", action="store_true", help="skip the TF32 measurements")
    p.add_argument("--json", default=None, help="also write the numbers to this file")
    a = p.parse_args(argv)

    device = torch.device(a.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA device visible to PyTorch; use --device cpu for a smoke test", file=sys.stderr)
        return 2
    D, E, H = a.D, a.E, a.H
    model = make_model(a.vocab, E, H)
    classes = make_classes(a.vocab, a.classes)
    tokens = make_text(a.vocab, max(a.positions, a.error_positions) + D)
    opts = EngineOptions(max_delay=D, state="cell", device=str(device), dtype=torch.float32)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    variants = [False] if (a.no_tf32 or device.type != "cuda") else [False, True]
    nominal_per_position = 8.0 * E * H * H * D
    out: dict = {"device": str(device), "device_name": name, "torch": torch.__version__,
                 "shape": {"E": E, "H": H, "V": a.vocab, "D": D, "classes": a.classes + 1},
                 "positions": a.positions, "runs": {}}
    print(f"{name or device}: LSTM cell state, E={E}, H={H}, V={a.vocab}, D={D}, "
          f"{a.classes} classes + all, {a.positions} start positions")
    for tf32 in variants:
        label = "tf32" if tf32 else "float32"
        rate, seconds = engine_rate(model, tokens, opts, classes, a.positions, tf32)
        mm = matmul_rate(device, D, E, H, torch.float32, tf32)
        nominal = rate * nominal_per_position
        err = precision_error(model, tokens, opts, classes, tf32=tf32, positions=a.error_positions)
        run = {
            "positions_per_s": rate,
            "seconds": seconds,
            "nominal_flops_per_s": nominal,
            "dominant_product_flops_per_s": rate * nominal_per_position / 2,
            "matmul_flops_per_s": mm,
            "nominal_over_matmul": nominal / mm,
            "dominant_product_share_of_matmul": nominal / 2 / mm,
            "ptb_valid_projected_s": PTB_VALID_TOKENS / rate,
            "error_vs_float64": err,
        }
        out["runs"][label] = run
        print(f"[{label}] engine {rate:,.1f} positions/s ({seconds:.2f} s); nominal "
              f"{nominal / 1e12:.3f} TFLOP/s (8 E H^2 per Jacobian) against a matmul rate of "
              f"{mm / 1e12:.3f} TFLOP/s for ({D * E} x {H}) @ ({H} x {2 * H}): "
              f"{100 * nominal / mm:.0f} % of nominal, the dominant product alone "
              f"{100 * nominal / 2 / mm:.0f} %")
        print(f"[{label}] PTB valid ({PTB_VALID_TOKENS:,} tokens) at D={D}: projected "
              f"{PTB_VALID_TOKENS / rate / 60:.1f} min")
        print(f"[{label}] error against float64 over {int(err['positions'])} positions: max "
              f"element {err['max_relative_error']:.2e} (relative to the largest sum), "
              f"mean matrices {err['max_mean_frobenius_error']:.2e} (relative Frobenius)")
    if a.json:
        with open(a.json, "w", encoding="utf-8") as handle:
            json.dump(out, handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
