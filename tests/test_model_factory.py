"""--model-factory FILE.py:FUNCTION: models built by the user's code, on the command line."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from stategrad import load_result
from stategrad.cli import main
from stategrad.data import read_tokens
from stategrad.gradients import compute_state_gradients
from stategrad.lm import LayeredRNN, ModelError, load_factory, run_steps

WORDS = ["<unk>", "<eos>", "the", "cat", "dog", "sat", "ran", "on", "mat", "a"]

FACTORY = '''
import torch
from torch import nn

WORDS = {words!r}


class AwdLike(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Embedding(len(WORDS), 3)
        self.rnns = nn.ModuleList([nn.LSTM(3, 5), nn.LSTM(5, 4, proj_size=2)])
        self.decoder = nn.Linear(2, len(WORDS))


def make():
    torch.manual_seed(0)
    return AwdLike(), WORDS


def broken():
    raise RuntimeError("no weights here")


def not_a_model():
    return 3, WORDS


def short_vocab():
    torch.manual_seed(0)
    return AwdLike(), WORDS[:-1]
'''


@pytest.fixture()
def files(tmp_path):
    factory = tmp_path / "my_model.py"
    factory.write_text(FACTORY.format(words=WORDS))
    text = tmp_path / "text.txt"
    text.write_text("the cat sat on the mat\na dog ran\nthe dog sat on a cat\n")
    return tmp_path, factory, text


def run(args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False,
                              prog_name="stategrad")


def test_gradients_from_a_factory_equal_the_api(files):
    tmp, factory, text = files
    out = tmp / "g.h5"
    r = run(["gradients", "--model-factory", f"{factory}:make", "--text", text, "-D", 3,
             "--state", "cell", "--layer", 1, "--dtype", "float64", "--out", out,
             "--no-progress", "--force"])
    assert r.exit_code == 0, r.output
    lm = load_factory(f"{factory}:make")
    assert isinstance(lm.module, LayeredRNN) and lm.foreign
    tokens = read_tokens(text, lm.vocab)
    ref = compute_state_gradients(lm, tokens, max_delay=3, state="cell", layer=1,
                                  dtype=torch.float64)
    res = load_result(out)
    np.testing.assert_array_equal(res.counts, ref.counts)
    np.testing.assert_allclose(res.sums, ref.sums, rtol=1e-12)
    assert res.sums.shape[2] == 4  # the second LSTM's cell state (its hidden one is 2)
    assert res.metadata["model"]["factory"].endswith("my_model.py:make")


def test_eval_from_a_factory(files):
    tmp, factory, text = files
    r = run(["eval", "--model-factory", f"{factory}:make", "--split", text])
    assert r.exit_code == 0, r.output
    lm = load_factory(f"{factory}:make")
    tokens = read_tokens(text, lm.vocab).astype(np.int64)
    with torch.no_grad():
        logits, _ = run_steps(lm.module, torch.as_tensor(tokens[:-1]).unsqueeze(1))
        nll = torch.nn.functional.cross_entropy(logits[:, 0].double(), torch.as_tensor(tokens[1:]))
    assert f"perplexity: {math.exp(float(nll)):.3f}" in r.output


@pytest.mark.parametrize("spec,message", [
    ("nowhere.py:make", "file not found: nowhere.py"),
    ("{f}:missing", "defines no function 'missing'"),
    ("{f}:broken", "broken() failed: RuntimeError: no weights here"),
    ("{f}:not_a_model", "with model an nn.Module, got int"),
    ("{f}:short_vocab", "the vocabulary has 9 words, the model 10"),
    ("{f}", "expected FILE.py:FUNCTION"),
])
def test_factory_errors_are_one_line(files, spec, message):
    tmp, factory, text = files
    r = run(["gradients", "--model-factory", spec.format(f=factory), "--text", text, "-D", 2,
             "--out", tmp / "x.h5"])
    assert r.exit_code != 0
    assert message in r.output and "Traceback" not in r.output
    assert len(r.output.strip().splitlines()) == 1
    assert not (tmp / "x.h5").exists()


def test_model_and_factory_together_or_neither(files):
    tmp, factory, text = files
    r = run(["gradients", "--model", factory, "--model-factory", f"{factory}:make",
             "--text", text, "-D", 2, "--out", tmp / "x.h5"])
    assert r.exit_code != 0 and "not both" in r.output
    r = run(["gradients", "--text", text, "-D", 2, "--out", tmp / "x.h5"])
    assert r.exit_code != 0 and "--model" in r.output
    r = run(["gradients", "--model-factory", f"{factory}:make", "--vocab", factory,
             "--text", text, "-D", 2, "--out", tmp / "x.h5"])
    assert r.exit_code != 0 and "--vocab does not go with --model-factory" in r.output


def test_an_unknown_state_names_the_models_states(files):
    tmp, factory, text = files
    r = run(["gradients", "--model-factory", f"{factory}:make", "--text", text, "-D", 2,
             "--state", "ssm", "--out", tmp / "x.h5", "--force", "--no-progress"])
    assert r.exit_code != 0 and "cell, hidden" in r.output


def test_load_factory_errors():
    with pytest.raises(ModelError, match="expected FILE.py:FUNCTION"):
        load_factory("no_colon")


def test_sentence_view_from_a_factory(files):
    tmp, factory, text = files
    out = tmp / "s.png"
    r = run(["sentence", "--model-factory", f"{factory}:make", "the", "cat", "sat",
             "--state", "hidden", "--layer", 0, "--out", out, "--csv", tmp / "s.csv"])
    assert r.exit_code == 0, r.output
    assert out.is_file() and (tmp / "s.csv").is_file()
