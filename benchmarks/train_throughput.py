"""Training throughput (tokens/s): stategrad's loop against a plain hand-written LSTM loop.

Both train the original's baseline shape (10k vocabulary, 64 embedding, 256 hidden,
200 steps, batch 20, dropout 0.5, SGD with global-norm clipping 5) on the same
synthetic token stream, in the same process, alternating so that load changes hit
both alike.  "ours" is ``stategrad.lm.train_epoch``, the code path
``stategrad train`` runs; "plain" is the minimal loop anyone would write.

    python benchmarks/train_throughput.py                 # about 1-2 minutes on 2 cores
    python benchmarks/train_throughput.py --device cuda --batches 50

Target: ours at least 0.90 x plain.

``--model mamba`` times the Mamba-style LM instead (d_model ``--hidden``, d_state 16,
expand 2, dropout 0.5, the same data and loop) three ways in one run: "mamba", as
``stategrad train`` runs it; "mamba_old", the same model with the selective scan as it
was first written (a Python loop over time indexing full-size decay and drive tensors,
autograd's backward); and "lstm", stategrad's LSTM with embedding = hidden = ``--hidden``,
for scale.  It prints the median tokens/s of each and the ratios new/old and new/LSTM:

    python benchmarks/train_throughput.py --model mamba --threads 1 --batches 2
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from stategrad.data import Vocabulary
from stategrad.lm import build_model, make_optimizer, train_epoch, validate_config
from stategrad.lm.loop import _rows_tensor

VOCAB, EMB, HIDDEN, STEPS, BATCH = 10_000, 64, 256, 200, 20


def synthetic_tokens(n: int, seed: int = 0) -> np.ndarray:
    """Zipf-like ids, roughly the frequency profile of a word-level corpus."""
    rng = np.random.default_rng(seed)
    return (rng.zipf(1.2, size=n) - 1).clip(max=VOCAB - 1).astype(np.int32)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class PlainLM(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(VOCAB, EMB)
        self.lstm = nn.LSTM(EMB, HIDDEN)
        self.drop = nn.Dropout(0.5)
        self.out = nn.Linear(HIDDEN, VOCAB)
        for p in self.parameters():
            nn.init.uniform_(p, -0.05, 0.05)

    def forward(self, x, state):
        h, state = self.lstm(self.emb(x), state)
        return self.out(self.drop(h)), state


def run_plain(model: PlainLM, data: torch.Tensor, batches: int, device: torch.device) -> float:
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    model.train()
    state = None
    sync(device)
    start = time.perf_counter()
    total = 0.0
    for i in range(batches):
        x = data[i * STEPS: (i + 1) * STEPS]
        y = data[i * STEPS + 1: (i + 1) * STEPS + 1]
        if state is not None:
            state = tuple(s.detach() for s in state)
        logits, state = model(x, state)
        loss = F.cross_entropy(logits.view(-1, VOCAB), y.reshape(-1), reduction="sum") / BATCH
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        total += loss.item()
    sync(device)
    return batches * STEPS * BATCH / (time.perf_counter() - start)


def run_ours(module, optimizer, data: torch.Tensor, batches: int, device: torch.device) -> float:
    sync(device)
    start = time.perf_counter()
    train_epoch(module, data, optimizer, num_steps=STEPS, max_grad_norm=5.0, max_batches=batches)
    sync(device)
    return batches * STEPS * BATCH / (time.perf_counter() - start)


def old_selective_scan(dt, A, b, c, x, ssm):
    """The scan as first written (same function): full-size decay and drive tensors, a
    loop indexing them per step, autograd's backward (quadratic in the steps)."""
    decay = torch.exp(dt.unsqueeze(-1) * A)
    drive = (dt * x).unsqueeze(-1) * b.unsqueeze(-2)
    states = []
    for t in range(dt.shape[0]):
        ssm = decay[t] * ssm + drive[t]
        states.append(ssm)
    return (torch.stack(states) * c.unsqueeze(-2)).sum(-1), ssm


@contextlib.contextmanager
def old_scan():
    from stategrad.lm import mamba
    new, mamba.selective_scan = mamba.selective_scan, old_selective_scan
    try:
        yield
    finally:
        mamba.selective_scan = new


def _trainee(model: dict, vocab: Vocabulary, device: torch.device):
    config = validate_config({
        "model": {**model, "dropout": 0.5, "embedding_dropout": False, "init_scale": 0.05},
        "training": {"batch_size": BATCH, "num_steps": STEPS, "learning_rate": 1.0,
                     "max_grad_norm": 5.0},
    })
    module = build_model(config, vocab).to(device)
    return module, make_optimizer(config, [p for p in module.parameters() if p.requires_grad])


def main_mamba(args, data: torch.Tensor, vocab: Vocabulary, device: torch.device) -> int:
    """New scan against the old one, and against an LSTM of the same width."""
    h = args.hidden
    runs = {
        "mamba": _trainee({"cell": "mamba", "embedding_size": h, "hidden_size": h}, vocab, device),
        "mamba_old": _trainee({"cell": "mamba", "embedding_size": h, "hidden_size": h}, vocab,
                              device),
        "lstm": _trainee({"cell": "lstm", "embedding_size": h, "hidden_size": h}, vocab, device),
    }
    print(f"device {device}, threads {torch.get_num_threads()}, torch {torch.__version__}; "
          f"V={VOCAB} d_model=hidden={h} d_state=16 expand=2 steps={STEPS} batch={BATCH}; "
          f"{args.batches} batches x {args.repeats} repeats", flush=True)

    def rate(name: str, batches: int) -> float:
        with old_scan() if name == "mamba_old" else contextlib.nullcontext():
            return run_ours(*runs[name], data, batches, device)

    if args.warmup:
        for name in runs:
            rate(name, args.warmup)
    results: dict[str, list[float]] = {name: [] for name in runs}
    names = list(runs)
    for r in range(args.repeats):
        for name in names[r % 3:] + names[:r % 3]:  # rotate the order against load drift
            results[name].append(rate(name, args.batches))
            print(f"  repeat {r + 1} {name:9s} {results[name][-1]:10,.0f} tokens/s", flush=True)
    med = {k: statistics.median(v) for k, v in results.items()}
    for name, value in med.items():
        print(f"median {name:9s} {value:10,.0f} tokens/s")
    for other in ("mamba_old", "lstm"):
        paired = statistics.median(n / o for n, o in zip(results["mamba"], results[other],
                                                          strict=True))
        print(f"ratio mamba/{other}: of medians {med['mamba'] / med[other]:.2f}, "
              f"median of paired ratios {paired:.2f}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("lstm", "mamba"), default="lstm",
                        help="lstm: ours against a plain loop (default); mamba: see above")
    parser.add_argument("--hidden", type=int, default=128, help="--model mamba: d_model")
    parser.add_argument("--batches", type=int, default=6, help="timed batches per repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1, help="untimed batches first")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: default)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    tokens = synthetic_tokens(BATCH * STEPS * (args.batches + args.warmup + 2))
    data = _rows_tensor(tokens, BATCH, device)
    vocab = Vocabulary(tuple(f"w{i}" for i in range(VOCAB)))
    if args.model == "mamba":
        return main_mamba(args, data, vocab, device)
    config = validate_config({
        "model": {"embedding_size": EMB, "hidden_size": HIDDEN, "dropout": 0.5,
                  "embedding_dropout": False, "init_scale": 0.05},
        "training": {"batch_size": BATCH, "num_steps": STEPS, "learning_rate": 1.0,
                     "max_grad_norm": 5.0},
    })
    ours = build_model(config, vocab).to(device)
    optimizer = make_optimizer(config, [p for p in ours.parameters() if p.requires_grad])
    plain = PlainLM().to(device)

    print(f"device {device}, threads {torch.get_num_threads()}, torch {torch.__version__}; "
          f"V={VOCAB} E={EMB} H={HIDDEN} steps={STEPS} batch={BATCH}; "
          f"{args.batches} batches x {args.repeats} repeats", flush=True)
    if args.warmup:
        run_ours(ours, optimizer, data, args.warmup, device)
        run_plain(plain, data, args.warmup, device)
    results: dict[str, list[float]] = {"ours": [], "plain": []}
    for r in range(args.repeats):
        # alternate the order so a slow phase of the machine does not favour one side
        order = ("ours", "plain") if r % 2 == 0 else ("plain", "ours")
        for name in order:
            if name == "ours":
                rate = run_ours(ours, optimizer, data, args.batches, device)
            else:
                rate = run_plain(plain, data, args.batches, device)
            results[name].append(rate)
            print(f"  repeat {r + 1} {name:5s} {rate:10,.0f} tokens/s", flush=True)
    med = {k: statistics.median(v) for k, v in results.items()}
    # the two runs of one repeat are adjacent in time: their ratio is the fairest
    # comparison on a shared machine whose load drifts between repeats
    paired = statistics.median(o / p for o, p in zip(results["ours"], results["plain"], strict=True))
    ratio = med["ours"] / med["plain"]
    print(f"median ours  {med['ours']:10,.0f} tokens/s")
    print(f"median plain {med['plain']:10,.0f} tokens/s")
    print(f"ratio of medians ours/plain {ratio:.3f}; median of paired ratios {paired:.3f} "
          f"(target >= 0.90): {'OK' if paired >= 0.9 else 'SLOWER'}")
    ratio = paired
    return 0 if ratio >= 0.9 else 1


if __name__ == "__main__":
    sys.exit(main())
