"""The vocabulary-order check runs in every command that reads a text for a model from
elsewhere: the right vocabulary passes silently, a shuffled one is refused in one line
(or, with --force, goes on with a warning), and a command without a text long enough to
tell says that nothing was checked."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from stategrad.cli import main
from stategrad.data import read_tokens, word_language_model_vocab

TAGS = {"the": "DT", "a": "DT", "cat": "NN", "dog": "NN", "bird": "NN", "fish": "NN",
        "sat": "VBD", "ran": "VBD", "slept": "VBD", "on": "IN", "under": "IN",
        "mat": "NN", "tree": "NN", "rock": "NN"}
MISMATCH = "vocabulary order probably does not match"


def run(args):
    return CliRunner().invoke(main, [str(a) for a in args], prog_name="stategrad")


def _sentences(rng, n):
    det, noun, verb = ["the", "a"], ["cat", "dog", "bird", "fish"], ["sat", "ran", "slept"]
    return [[rng.choice(det), rng.choice(noun), rng.choice(verb), rng.choice(["on", "under"]),
             rng.choice(det), rng.choice(["mat", "tree", "rock"])] for _ in range(n)]


class RNNModel(nn.Module):  # the shape of word_language_model's model
    def __init__(self, ntoken):
        super().__init__()
        self.encoder = nn.Embedding(ntoken, 8)
        self.rnn = nn.LSTM(8, 16, 1)
        self.decoder = nn.Linear(16, ntoken)

    def forward(self, x):
        return self.decoder(self.rnn(self.encoder(x))[0])


@pytest.fixture(scope="module")
def wlm(tmp_path_factory):
    """A word_language_model-style LSTM trained on a tiny grammar, its vocabulary, the
    same words shuffled, a tagged copy of the validation text and word lists."""
    tmp = tmp_path_factory.mktemp("guard")
    rng = np.random.default_rng(0)
    for name, n in (("train.txt", 300), ("valid.txt", 60), ("test.txt", 60)):
        lines = _sentences(rng, n)
        (tmp / name).write_text("".join(" ".join(s) + "\n" for s in lines))
        if name == "valid.txt":
            (tmp / "tagged.txt").write_text(
                "".join(" ".join(f"{w}/{TAGS[w]}" for w in s) + "\n" for s in lines))
    vocab = word_language_model_vocab(tmp)
    ids = torch.as_tensor(read_tokens(tmp / "train.txt", vocab), dtype=torch.long)
    torch.manual_seed(0)
    model = RNNModel(len(vocab))
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    rows = ids[: len(ids) // 20 * 20].view(20, -1).t()
    for _ in range(60):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(rows[:-1]).reshape(-1, len(vocab)),
                                           rows[1:].reshape(-1))
        loss.backward()
        opt.step()
    torch.save(model.state_dict(), tmp / "model.pt")
    vocab.save(tmp / "right.txt")
    shuffled = list(vocab.words)
    np.random.default_rng(1).shuffle(shuffled)
    (tmp / "shuffled.txt").write_text("".join(f"{w}\t{i}\n" for i, w in enumerate(shuffled)))
    (tmp / "nouns.txt").write_text("cat\ndog\nbird\nfish\n")
    (tmp / "verbs.txt").write_text("sat\nran\nslept\n")
    return tmp


def _commands(tmp, out):
    """Each command that reads a text for a model, as (name, arguments after --vocab V)."""
    return {
        "eval": ["eval", "--split", tmp / "valid.txt", "--no-progress"],
        "gradients": ["gradients", "--text", tmp / "valid.txt", "--max-delay", 2,
                      "--out", out / "g.h5", "--no-progress"],
        "embedding-stats": ["embedding-stats", "--text", tmp / "valid.txt",
                            "--out", out / "s.npz"],
        "export-embeddings": ["export-embeddings", "--text", tmp / "valid.txt",
                              "--out", out / "emb"],
        "probe": ["probe", "--tagged", tmp / "tagged.txt", "--min-examples", 2, "--cv", 2,
                  "--C", "1", "--jobs", 1, "--no-progress"],
        "sentence": ["sentence", "--text", tmp / "valid.txt", "--length", 6,
                     "--out", out / "s.png"],
        "ablation": ["ablation", "--text", tmp / "valid.txt", "--max-distance", 2,
                     "--sample-every", 10, "--replace", "mean", "--out", out / "a.h5"],
    }


def test_every_command_refuses_a_shuffled_vocabulary_and_passes_the_right_one(wlm, tmp_path):
    for name, args in _commands(wlm, tmp_path).items():
        model = ["--model", wlm / "model.pt"]
        r = run(args[:1] + model + ["--vocab", wlm / "shuffled.txt"] + args[1:])
        assert r.exit_code == 1 and MISMATCH in r.output, (name, r.output)
        assert len(r.output.strip().splitlines()) == 1 and "Traceback" not in r.output, name
        r = run(args[:1] + model + ["--vocab", wlm / "shuffled.txt", "--force"] + args[1:])
        assert r.exit_code == 0, (name, r.output)
        assert "WARNING" in r.output and MISMATCH in r.output, name
        assert r.output.count(MISMATCH) == 1, (name, "checked once")
        r = run(args[:1] + model + ["--vocab", wlm / "right.txt"] + args[1:])
        assert r.exit_code == 0, (name, r.output)
        assert "vocabulary order" not in r.output, name


def test_relative_memory_checks_its_weight_text(wlm, tmp_path):
    right = ["--model", wlm / "model.pt", "--vocab", wlm / "right.txt"]
    r = run(["gradients", *right, "--text", wlm / "valid.txt", "--max-delay", 3,
             "--out", tmp_path / "g.h5", "--no-progress"])
    assert r.exit_code == 0, r.output
    r = run(["embedding-stats", *right, "--text", wlm / "train.txt", "--out", tmp_path / "s.npz"])
    assert r.exit_code == 0, r.output
    common = ["relative-memory", tmp_path / "g.h5", "--normalize", tmp_path / "s.npz",
              "--diff", f"words:{wlm / 'nouns.txt'}", f"words:{wlm / 'verbs.txt'}"]
    r = run(common + right + ["--weight-text", wlm / "valid.txt"])
    assert r.exit_code == 0 and "vocabulary order" not in r.output, r.output
    r = run(common + right)  # the model of the result: checked when the result was made
    assert r.exit_code == 0 and "vocabulary order" not in r.output, r.output
    shuffled = ["--model", wlm / "model.pt", "--vocab", wlm / "shuffled.txt"]
    r = run(common + shuffled + ["--weight-text", wlm / "valid.txt"])
    assert r.exit_code == 1 and MISMATCH in r.output, r.output
    r = run(common + shuffled)
    assert r.exit_code == 0 and "not checked" in r.output, r.output


def test_without_a_text_to_tell_it_says_nothing_was_checked(wlm, tmp_path):
    model = ["--model", wlm / "model.pt", "--vocab", wlm / "shuffled.txt"]
    r = run(["sentence", *model, "the cat sat on the mat", "--out", tmp_path / "s.png"])
    assert r.exit_code == 0 and "not checked" in r.output, r.output
    r = run(["export-embeddings", *model, "--out", tmp_path / "emb"])
    assert r.exit_code == 0 and "not checked" in r.output, r.output
    short = tmp_path / "short.txt"
    short.write_text("the cat sat on the mat\n")
    r = run(["eval", *model, "--split", short, "--no-progress"])
    assert r.exit_code == 0 and "not checked" in r.output and "7 tokens" in r.output, r.output
