"""Peak memory of confidence-interval blocks: `gradients` and `memory --ci` with and without
`--block-size`.

Every command runs as its own process (``python -m stategrad``); its peak resident set
size is the ``ru_maxrss`` that ``os.wait4`` reports for that one child.  The shape makes
the sums dominate memory (H=256, E=64, D=100, 7 classes: 92 MB of float64 sums, 46 MB
per block in float32); the text is short so that it runs in a few minutes on 2 cores.
Printed: peak RSS of each run and the ratios with blocks / without blocks, measured in
this one run.

    python benchmarks/block_memory.py                 # 10 and 40 blocks
    python benchmarks/block_memory.py --blocks 10 40 80 --positions 4000
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def make_model(folder: Path, hidden: int, emb: int, n_words: int, n_classes: int,
               positions: int) -> tuple[Path, Path, Path]:
    """An untrained LSTM (the sums' size does not depend on training), a random text and
    a class map giving every word one of ``n_classes`` classes."""
    from stategrad import Vocabulary
    from stategrad.lm import RNNLM, ModelSpec, save_checkpoint

    words = [f"w{i}" for i in range(n_words)]
    vocab = Vocabulary.from_counts(collections.Counter({w: n_words - i for i, w in enumerate(words)}
                                                       | {"<eos>": 1}))
    torch.manual_seed(0)
    module = RNNLM(ModelSpec(vocab_size=len(vocab), embedding_size=emb, hidden_size=hidden,
                             cell="lstm", init_scale=0.1))
    model = folder / "model.pt"
    save_checkpoint(model, module, vocab)
    rng = np.random.default_rng(0)
    lines = [" ".join(rng.choice(words, 19)) for _ in range(positions // 20 + 1)]
    text = folder / "text.txt"
    text.write_text("\n".join(lines) + "\n")
    class_map = folder / "classes.tsv"
    class_map.write_text("".join(f"{w}\tclass{i % n_classes}\n" for i, w in enumerate(words)))
    return model, text, class_map


def peak_rss(args: list[str]) -> tuple[float, float]:
    """Run ``python -m stategrad ARGS``; its peak RSS in MB and its wall time in s."""
    began = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "stategrad", *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read()
    proc.stderr.close()
    if proc.returncode != 0:
        raise SystemExit(f"stategrad {' '.join(args)} failed ({proc.returncode}):\n{err}")
    return usage.ru_maxrss / 1024, time.perf_counter() - began  # ru_maxrss is in KiB on Linux


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--blocks", type=int, nargs="+", default=[10, 40])
    ap.add_argument("--positions", type=int, default=2000)
    ap.add_argument("--max-delay", type=int, default=100)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--embedding", type=int, default=64)
    ap.add_argument("--classes", type=int, default=6, help="classes besides 'all'")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()

    H, E, D, C = args.hidden, args.embedding, args.max_delay, args.classes + 1
    sums_mb = D * C * H * E * 8 / 2**20
    print(f"H={H} E={E} D={D} C={C} ({args.classes} classes + all), {args.positions} positions: "
          f"sums {sums_mb:.0f} MB (float64), one block {sums_mb / 2:.0f} MB (float32)")
    with tempfile.TemporaryDirectory(prefix="block-memory-") as tmp:
        folder = Path(tmp)
        model, text, class_map = make_model(folder, H, E, 1000, args.classes, args.positions)
        common = ["--model", str(model), "--text", str(text), "--max-delay", str(D),
                  "--class-map", str(class_map), "--threads", str(args.threads), "--no-progress"]
        rows = []

        def gradients(label: str, extra: list[str]) -> Path:
            out = folder / f"{label}.h5"
            rss, wall = peak_rss(["gradients", *common, *extra, "--out", str(out)])
            rows.append(("gradients", label, rss, wall))
            print(f"  gradients {label:<12} peak RSS {rss:8.0f} MB  {wall:6.1f} s", flush=True)
            return out

        def memory(label: str, result: Path, extra: list[str]) -> None:
            rss, wall = peak_rss(["memory", str(result), *extra])
            rows.append(("memory", label, rss, wall))
            print(f"  memory    {label:<12} peak RSS {rss:8.0f} MB  {wall:6.1f} s", flush=True)

        plain = gradients("no blocks", [])
        memory("no blocks", plain, [])
        n_tokens = len(text.read_text().split()) + text.read_text().count("\n")
        for B in args.blocks:
            size = -(-n_tokens // B)
            label = f"{B} blocks"
            result = gradients(label, ["--block-size", str(size)])
            memory(label, result, ["--ci", "jackknife"])
            (folder / f"{label}.h5").unlink()

    base = {cmd: rss for cmd, label, rss, _ in rows if label == "no blocks"}
    print("\nratios with blocks / without blocks (peak RSS):")
    figures = []
    for cmd, label, rss, wall in rows:
        ratio = rss / base[cmd]
        figures.append({"command": cmd, "run": label, "peak_rss_mb": round(rss, 1),
                        "seconds": round(wall, 1), "ratio": round(ratio, 3)})
        if label != "no blocks":
            what = "memory --ci jackknife vs memory" if cmd == "memory" else "gradients"
            print(f"  {what:<32} {label:<10} {ratio:5.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"shape": {"H": H, "E": E, "D": D, "C": C,
                                                         "positions": args.positions},
                                               "runs": figures}, indent=2))


if __name__ == "__main__":
    main()
