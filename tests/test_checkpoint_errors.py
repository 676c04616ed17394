"""Damaged checkpoints and model files: one clear line naming the file, exit 1, no traceback.

Each damage is tried through ``eval --model``, ``train --resume`` and ``gradients``; one
case of each command also runs as a real process, to see what a user sees.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

import stategrad
from stategrad.cli import main
from stategrad.legacy import load_config
from stategrad.lm import train

torch.set_num_threads(1)

WORDS = ["the", "a", "cat", "dog", "sees", "likes", "big", "old"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A tiny trained run: save/last.pt, its config and a text."""
    root = tmp_path_factory.mktemp("ckerr")
    rng = np.random.default_rng(0)
    for name, n in (("train", 60), ("valid", 10), ("test", 10)):
        lines = [" ".join(rng.choice(WORDS, size=5)) for _ in range(n)]
        (root / f"{name}.txt").write_text("\n".join(lines) + "\n")
    (root / "run.toml").write_text(
        f'[data]\npath = "{root}"\n[model]\nhidden_size = 6\nembedding_size = 4\n'
        "[training]\nbatch_size = 4\nnum_steps = 5\nmax_max_epoch = 1\nmax_epoch = 1\n"
        f'[output]\nsave_path = "{root / "save"}"\n')
    train(load_config(root / "run.toml"), progress=False)
    assert (root / "save" / "last.pt").is_file()
    return root


def _edit(change):
    def damage(good: Path, bad: Path) -> None:
        payload = torch.load(good, weights_only=True)
        change(payload)
        torch.save(payload, bad)
    return damage


def _bytes(make):
    def damage(good: Path, bad: Path) -> None:
        bad.write_bytes(make(good.read_bytes()))
    return damage


def _random(_: bytes) -> bytes:
    data = bytearray(np.random.default_rng(7).bytes(4096))
    data[0] = 0x11  # not a pickle header
    return bytes(data)


def _set_spec(key, value):
    return _edit(lambda p: p["spec"].__setitem__(key, value))


# damage -> a phrase the message must hold
DAMAGES = {
    "truncated": (_bytes(lambda b: b[: len(b) // 2]), "truncated or corrupt"),
    "random_bytes": (_bytes(_random), "truncated or corrupt"),
    "empty": (_bytes(lambda b: b""), "truncated or corrupt"),
    "no_spec": (_edit(lambda p: p.pop("spec")), "no 'spec'"),
    "spec_not_a_dict": (_edit(lambda p: p.__setitem__("spec", [1, 2])), "'spec' is a list"),
    "spec_lacks_size": (_edit(lambda p: p["spec"].pop("hidden_size")), "lacks hidden_size"),
    "spec_size_is_text": (_set_spec("hidden_size", "6"), "hidden_size is '6'"),
    "spec_size_is_bool": (_set_spec("num_layers", True), "num_layers is True"),
    "spec_size_changed": (_set_spec("hidden_size", 7), "has shape"),
    "spec_cell_changed": (_set_spec("cell", "gru"), "has shape"),
    "spec_unknown_cell": (_set_spec("cell", "transformer"), "unknown cell type"),
    "spec_unknown_field": (_set_spec("colour", "red"), "unknown fields ['colour']"),
    "weight_missing": (_edit(lambda p: p["state_dict"].pop("decoder.bias")), "missing ['decoder.bias']"),
    "weight_extra": (_edit(lambda p: p["state_dict"].__setitem__("x", torch.zeros(2))), "unexpected ['x']"),
    "weight_not_float": (_edit(lambda p: p["state_dict"].__setitem__(
        "decoder.bias", p["state_dict"]["decoder.bias"].long())), "not a float tensor"),
    "vocab_short": (_edit(lambda p: p["vocab"].pop()), "vocabulary has"),
    "vocab_not_words": (_edit(lambda p: p["vocab"].__setitem__(0, 3)), "not words"),
    "vocab_repeats": (_edit(lambda p: p["vocab"].__setitem__(0, p["vocab"][1])), "repeats words"),
    "version": (_edit(lambda p: p.__setitem__("version", 2)), "checkpoint version 2"),
}


def invoke(args) -> tuple[int, str]:
    """Exit code and standard error; an exception escaping the command fails the test."""
    r = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return r.exit_code, r.stderr


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("Error")]


def assert_one_clear_line(code: int, stderr: str, path: Path, phrase: str) -> None:
    assert code in (1, 2), stderr
    lines = error_lines(stderr)
    assert len(lines) == 1, stderr
    assert str(path) in lines[0] and phrase in lines[0], lines[0]
    assert "Traceback" not in stderr and "file an issue" not in stderr
    if "corrupt" in phrase or "damaged" in lines[0]:
        assert "--trusted" not in stderr  # trust does not mend a broken file


def damaged(trained: Path, name: str, folder: Path) -> Path:
    damage, _ = DAMAGES[name]
    bad = folder / f"{name}.pt"
    damage(trained / "save" / "last.pt", bad)
    return bad


@pytest.mark.parametrize("name", sorted(DAMAGES))
def test_eval_and_gradients_name_the_damaged_file(trained, tmp_path, name):
    bad = damaged(trained, name, tmp_path)
    phrase = DAMAGES[name][1]
    code, err = invoke(["eval", "--model", bad, "--split", trained / "test.txt"])
    assert_one_clear_line(code, err, bad, phrase)
    code, err = invoke(["gradients", "--model", bad, "--text", trained / "test.txt",
                        "--max-delay", 2, "--out", tmp_path / "g.h5", "--no-progress"])
    assert_one_clear_line(code, err, bad, phrase)
    assert not list(tmp_path.glob("g.h5*"))  # nothing written


@pytest.mark.parametrize("name", ["truncated", "no_spec", "spec_size_changed", "weight_missing"])
def test_train_resume_names_the_damaged_checkpoint(trained, tmp_path, name):
    run = tmp_path / "run"
    run.mkdir()
    (run / "save").mkdir()
    config = run / "run.toml"
    config.write_text((trained / "run.toml").read_text().replace(str(trained / "save"),
                                                                  str(run / "save")))
    last = run / "save" / "last.pt"
    damaged(trained, name, run / "save").rename(last)
    before = last.read_bytes()
    code, err = invoke(["train", config, "--resume"])
    assert_one_clear_line(code, err, last, DAMAGES[name][1])
    assert last.read_bytes() == before  # the damaged file is left for the user to inspect


class WordModel(nn.Module):
    """The shape of word_language_model's RNNModel, saved whole with ``torch.save``."""

    def __init__(self):
        super().__init__()
        self.encoder = nn.Embedding(len(WORDS) + 2, 3)
        self.rnn = nn.LSTM(3, 4)
        self.decoder = nn.Linear(4, len(WORDS) + 2)


def test_a_pickled_module_asks_for_trust(trained, tmp_path):
    """A whole pickled module is not damaged: the message is about trust, not corruption
    (that --trusted then opens it is tested in test_gradient_cli)."""
    path = tmp_path / "pickled.pt"
    torch.save(WordModel(), path)
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join([*WORDS, "<unk>", "<eos>"]) + "\n")
    args = ["gradients", "--model", path, "--vocab", vocab, "--text", trained / "test.txt",
            "--max-delay", 2, "--state", "hidden", "--out", tmp_path / "g.h5", "--no-progress"]
    code, err = invoke(args)
    assert code == 1 and len(error_lines(err)) == 1 and "--trusted" in err and str(path) in err
    assert "truncated" not in err


def run_process(args, cwd: Path) -> subprocess.CompletedProcess:
    # the same stategrad as this test imported, whatever the working directory
    source = str(Path(stategrad.__file__).parents[1])
    path = os.pathsep.join(p for p in (source, os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path}
    return subprocess.run([sys.executable, "-m", "stategrad", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, env=env, timeout=300)


def test_as_a_process_random_bytes_and_a_missing_spec_are_one_line(trained, tmp_path):
    rand = damaged(trained, "random_bytes", tmp_path)
    r = run_process(["eval", "--model", rand, "--split", trained / "test.txt"], tmp_path)
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.strip().splitlines() == [r.stderr.strip()], r.stderr
    assert str(rand) in r.stderr and "corrupt" in r.stderr and "Traceback" not in r.stderr
    no_spec = damaged(trained, "no_spec", tmp_path)
    r = run_process(["eval", "--model", no_spec, "--split", trained / "test.txt"], tmp_path)
    assert r.returncode == 1 and r.stderr.strip() == f"Error: {no_spec} is damaged: the checkpoint has no 'spec'"
