"""Models of PyTorch's word_language_model example: their vocabulary, rebuilt from the
example's data folder, and the check that refuses a vocabulary in the wrong order."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from stategrad import load_model
from stategrad.cli import main
from stategrad.data import read_tokens, word_language_model_vocab
from stategrad.lm import ModelError, check_vocabulary_order, vocabulary_fit


def run(args):
    return CliRunner().invoke(main, [str(a) for a in args], prog_name="stategrad")


def test_vocab_follows_first_appearance_over_train_valid_test(tmp_path):
    (tmp_path / "train.txt").write_text("the cat sat\n the  dog\n")
    (tmp_path / "valid.txt").write_text("a cat ran\n")
    (tmp_path / "test.txt").write_text("dog sat on mat\n\n")
    # what word_language_model's data.Dictionary gives these files, by hand
    expected = ["the", "cat", "sat", "<eos>", "dog", "a", "ran", "on", "mat"]
    assert list(word_language_model_vocab(tmp_path).words) == expected
    r = run(["vocab", "--word-language-model", tmp_path, "-o", tmp_path / "vocab.txt"])
    assert r.exit_code == 0, r.output
    lines = (tmp_path / "vocab.txt").read_text().splitlines()
    assert lines == [f"{w}\t{i}" for i, w in enumerate(expected)]
    (tmp_path / "test.txt").unlink()
    r = run(["vocab", "--word-language-model", tmp_path, "-o", tmp_path / "v2.txt"])
    assert r.exit_code == 1 and "test.txt" in r.output
    assert len(r.output.strip().splitlines()) == 1 and not (tmp_path / "v2.txt").exists()


class RNNModel(nn.Module):  # the shape of word_language_model's model
    def __init__(self, ntoken):
        super().__init__()
        self.encoder = nn.Embedding(ntoken, 8)
        self.rnn = nn.LSTM(8, 16, 1)
        self.decoder = nn.Linear(16, ntoken)

    def forward(self, x):
        return self.decoder(self.rnn(self.encoder(x))[0])


def _sentences(rng, n):
    det, noun = ["the", "a"], ["cat", "dog", "bird", "fish"]
    verb, prep = ["sat", "ran", "slept"], ["on", "under"]
    place = ["mat", "tree", "rock"]
    return "".join(f"{rng.choice(det)} {rng.choice(noun)} {rng.choice(verb)} {rng.choice(prep)} "
                   f"{rng.choice(det)} {rng.choice(place)}\n" for _ in range(n))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A word_language_model-style LSTM trained here on a tiny text, saved as a state dict,
    with the example's data folder."""
    tmp = tmp_path_factory.mktemp("wlm")
    rng = np.random.default_rng(0)
    for name, n in (("train.txt", 300), ("valid.txt", 60), ("test.txt", 60)):
        (tmp / name).write_text(_sentences(rng, n))
    vocab = word_language_model_vocab(tmp)
    ids = torch.as_tensor(read_tokens(tmp / "train.txt", vocab), dtype=torch.long)
    torch.manual_seed(0)
    model = RNNModel(len(vocab))
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    rows = ids[: len(ids) // 20 * 20].view(20, -1).t()  # (steps, 20)
    for _ in range(60):
        opt.zero_grad()
        logits = model(rows[:-1])
        loss = nn.functional.cross_entropy(logits.reshape(-1, len(vocab)), rows[1:].reshape(-1))
        loss.backward()
        opt.step()
    torch.save(model.state_dict(), tmp / "model.pt")
    return tmp, vocab


def _independent_perplexities(tmp, words):
    """Model and unigram perplexities computed apart from stategrad: the state dict run
    by the module class it was saved from, over the first tokens of valid.txt."""
    index = {w: i for i, w in enumerate(words)}
    toks = [index[w] for line in (tmp / "valid.txt").read_text().splitlines()
            for w in line.split() + ["<eos>"]]
    model = RNNModel(len(words))
    model.load_state_dict(torch.load(tmp / "model.pt"))
    with torch.no_grad():
        logits = model(torch.tensor(toks[:-1]).unsqueeze(1))[:, 0].double()
        nll = nn.functional.cross_entropy(logits, torch.tensor(toks[1:]))
    counts = np.bincount(toks[1:])
    p = counts[counts > 0] / counts.sum()
    return float(torch.exp(nll)), float(np.exp(-(p * np.log(p)).sum()))


def test_the_right_vocabulary_passes_and_a_shuffled_one_is_refused(trained, tmp_path):
    tmp, vocab = trained
    r = run(["vocab", "--word-language-model", tmp, "-o", tmp_path / "vocab.txt"])
    assert r.exit_code == 0, r.output
    shuffled = list(vocab.words)
    np.random.default_rng(1).shuffle(shuffled)
    assert shuffled != list(vocab.words)
    (tmp_path / "shuffled.txt").write_text("".join(w + "\n" for w in shuffled))

    # the API's perplexities against an independent computation
    for words, path in ((vocab.words, tmp_path / "vocab.txt"), (shuffled, tmp_path / "shuffled.txt")):
        lm = load_model(tmp / "model.pt", path)
        ours = vocabulary_fit(lm, read_tokens(tmp / "valid.txt", lm.vocab))
        np.testing.assert_allclose(ours, _independent_perplexities(tmp, words), rtol=1e-5)
    good = load_model(tmp / "model.pt", tmp_path / "vocab.txt")
    assert check_vocabulary_order(good, read_tokens(tmp / "valid.txt", good.vocab)) is None
    bad = load_model(tmp / "model.pt", tmp_path / "shuffled.txt")
    with pytest.raises(ModelError, match="vocabulary order probably does not match"):
        check_vocabulary_order(bad, read_tokens(tmp / "valid.txt", bad.vocab))

    common = ["gradients", "--model", tmp / "model.pt", "--text", tmp / "valid.txt",
              "--max-delay", 2, "--state", "hidden", "--no-progress"]
    r = run(common + ["--vocab", tmp_path / "vocab.txt", "--out", tmp_path / "good.h5"])
    assert r.exit_code == 0, r.output
    assert "vocabulary order" not in r.output
    r = run(common + ["--vocab", tmp_path / "shuffled.txt", "--out", tmp_path / "bad.h5"])
    assert r.exit_code == 1 and "vocabulary order probably does not match" in r.output
    assert len(r.output.strip().splitlines()) == 1 and "Traceback" not in r.output
    assert not (tmp_path / "bad.h5").exists()
    r = run(common + ["--vocab", tmp_path / "shuffled.txt", "--out", tmp_path / "forced.h5",
                      "--force"])
    assert r.exit_code == 0, r.output
    assert "WARNING" in r.output and "vocabulary order probably does not match" in r.output


MODEL_CODE = '''
from torch import nn


class RNNModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Embedding(6, 3)
        self.rnn = nn.GRU(3, 4, 1)
        self.decoder = nn.Linear(4, 6)
'''


def test_a_pickled_module_needs_the_code_defining_it(tmp_path, monkeypatch):
    import importlib
    import sys

    code = tmp_path / "code"
    code.mkdir()
    name = "wlm_pickled_model_i15"
    (code / f"{name}.py").write_text(MODEL_CODE)
    monkeypatch.syspath_prepend(str(code))
    torch.manual_seed(2)
    module = importlib.import_module(name).RNNModel()
    torch.save(module, tmp_path / "whole.pt")
    torch.save(module.state_dict(), tmp_path / "sd.pt")
    monkeypatch.delitem(sys.modules, name)
    sys.path.remove(str(code))  # as for a user without the example's model.py at hand
    (tmp_path / "vocab.txt").write_text("".join(f"w{i}\n" for i in range(5)) + "<eos>\n")

    with pytest.raises(ModelError, match=f"{name}.*--code-path"):
        load_model(tmp_path / "whole.pt", tmp_path / "vocab.txt", trusted=True)
    text = tmp_path / "text.txt"
    text.write_text("w1 w2 w3\nw0 w4\n")
    common = ["gradients", "--model", tmp_path / "whole.pt", "--vocab", tmp_path / "vocab.txt",
              "--trusted", "--text", text, "--max-delay", 2, "--state", "hidden",
              "--no-progress", "--force"]
    r = run(common + ["--out", tmp_path / "a.h5"])
    assert r.exit_code == 1 and name in r.output and "--code-path" in r.output
    assert len(r.output.strip().splitlines()) == 1 and "Traceback" not in r.output
    r = run(common + ["--code-path", code, "--out", tmp_path / "b.h5"])
    assert r.exit_code == 0, r.output
    assert str(code) not in sys.path  # only while unpickling

    lm = load_model(tmp_path / "whole.pt", tmp_path / "vocab.txt", trusted=True, code_path=code)
    ref = load_model(tmp_path / "sd.pt", tmp_path / "vocab.txt")
    for key, value in ref.module.state_dict().items():
        torch.testing.assert_close(lm.module.state_dict()[key], value, rtol=0, atol=0)
    # without --vocab: a pickled module, not "a bare state dict"
    with pytest.raises(ModelError, match="pickled module") as err:
        load_model(tmp_path / "whole.pt", trusted=True, code_path=code)
    assert "bare state dict" not in str(err.value) and "--vocab" in str(err.value)


def test_eval_scores_a_model_from_elsewhere(trained, tmp_path):
    tmp, vocab = trained
    vocab.save(tmp_path / "vocab.txt")
    r = run(["eval", "--model", tmp / "model.pt", "--vocab", tmp_path / "vocab.txt",
             "--split", tmp / "valid.txt", "--no-progress"])
    assert r.exit_code == 0, r.output
    # batch 1, 1 step: every token after the first, the state carried, as computed apart
    expected, _ = _independent_perplexities(tmp, vocab.words)
    ppl = float(r.output.split("perplexity:")[1].split()[0])
    assert ppl == pytest.approx(expected, rel=1e-3)
    r = run(["eval", "--model", tmp / "model.pt", "--split", tmp / "valid.txt"])
    assert r.exit_code == 1 and "not a stategrad checkpoint" in r.output


def test_show_classes_takes_the_vocabulary_of_a_model(trained, tmp_path):
    tmp, vocab = trained
    vocab.save(tmp_path / "vocab.txt")
    (tmp_path / "animals.txt").write_text("cat\ndog\nbird\nfish\nhorse\n")
    args = ["show-classes", "--class-words", tmp_path / "animals.txt", "--text", tmp / "valid.txt"]
    r = run(args + ["--model", tmp / "model.pt", "--vocab", tmp_path / "vocab.txt"])
    assert r.exit_code == 0, r.output
    tokens = [w for line in (tmp / "valid.txt").read_text().splitlines() for w in line.split()]
    n = sum(w in {"cat", "dog", "bird", "fish"} for w in tokens)
    row = next(line for line in r.output.splitlines() if line.startswith("animals"))
    assert row.split()[1:3] == ["4", str(n)]  # horse is not in the model's vocabulary
    r = run(args + ["--model", tmp / "model.pt"])
    assert r.exit_code == 1 and "vocabulary" in r.output and "Traceback" not in r.output
