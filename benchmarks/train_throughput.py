"""Training throughput (tokens/s): stategrad's loop against a plain hand-written LSTM loop.

Both train the original's baseline shape (10k vocabulary, 64 embedding, 256 hidden,
200 steps, batch 20, dropout 0.5, SGD with global-norm clipping 5) on the same
synthetic token stream, in the same process, alternating so that load changes hit
both alike.  "ours" is ``stategrad.lm.train_epoch``, the code path
``stategrad train`` runs; "plain" is the minimal loop anyone would write.

    python benchmarks/train_throughput.py                 # about 1-2 minutes on 2 cores
    python benchmarks/train_throughput.py --device cuda --batches 50

Target: ours at least 0.90 x plain.
"""

from __future__ import annotations

import argparse
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
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
    config = validate_config({
        "model": {"embedding_size": EMB, "hidden_size": HIDDEN, "dropout": 0.5,
                  "embedding_dropout": False, "init_scale": 0.05},
        "training": {"batch_size": BATCH, "num_steps": STEPS, "learning_rate": 1.0,
                     "max_grad_norm": 5.0},
    })
    vocab = Vocabulary(tuple(f"w{i}" for i in range(VOCAB)))
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
