"""Under torchrun every rank reads the same inputs: a warning about them is printed once,
by rank 0.  Two worker processes join through the env:// rendezvous torchrun uses (as in
test_distributed.py) and each runs `stategrad gradients`; what each printed is compared."""

from __future__ import annotations

import collections
import json
import os
import socket
from pathlib import Path

import numpy as np
import torch
import torch.multiprocessing as mp
from click.testing import CliRunner

from stategrad.data import Vocabulary
from stategrad.gradients import load_result
from stategrad.lm import RNNLM, ModelSpec, save_checkpoint

WORLD = 2
WORDS = ["the", "cat", "sat", "on", "mat", "dog"]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker(rank: int, port: int, root: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD), LOCAL_WORLD_SIZE=str(WORLD),
                      OMP_NUM_THREADS="1")
    torch.set_num_threads(1)
    from stategrad.cli import main

    tmp = Path(root)
    r = CliRunner().invoke(main, ["gradients", "--model", str(tmp / "model.pt"),
                                  "--text", str(tmp / "text.txt"), "--max-delay", "3",
                                  "--class-words", str(tmp / "animals.txt"),
                                  "--class-words", str(tmp / "birds.txt"),
                                  "--out", str(tmp / "g.h5"), "--no-progress"])
    (tmp / f"rank{rank}.json").write_text(json.dumps(
        {"code": r.exit_code, "stderr": r.stderr, "stdout": r.stdout}))


def test_warnings_are_printed_by_rank_zero_only(tmp_path):
    vocab = Vocabulary.from_counts(collections.Counter({w: 9 - i for i, w in enumerate(WORDS)}))
    torch.manual_seed(0)
    module = RNNLM(ModelSpec(vocab_size=len(vocab), embedding_size=3, hidden_size=4))
    save_checkpoint(tmp_path / "model.pt", module, vocab, config={})
    rng = np.random.default_rng(0)
    # a third of the words are not in the vocabulary: the <unk> warning
    words = rng.choice(WORDS + ["zebra", "yak", "gnu"], size=(30, 8))
    (tmp_path / "text.txt").write_text("".join(" ".join(line) + "\n" for line in words))
    (tmp_path / "animals.txt").write_text("cat\ndog\n")
    (tmp_path / "birds.txt").write_text("robin\nwren\n")  # a class without a word: a warning
    mp.spawn(worker, args=(free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(WORLD)]
    assert [r["code"] for r in ranks] == [0, 0], ranks
    assert "<unk>" in ranks[0]["stderr"] and "birds" in ranks[0]["stderr"], ranks[0]["stderr"]
    assert "warning" not in ranks[1]["stderr"].lower(), ranks[1]["stderr"]
    assert load_result(tmp_path / "g.h5").classes == ["all", "animals", "birds"]
