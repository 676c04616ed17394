"""state-stats, compare and memory --compare/--whiten-state on the command line, on a
tiny model: the state statistics against a direct NumPy run of the LSTM."""

from __future__ import annotations

import json
import sys
from collections import Counter

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from stategrad.analysis import (
    Side,
    load_state_stats,
    memory_curves,
    paired_difference,
    state_stats_for_model,
    whiten_result,
)
from stategrad.cli import main
from stategrad.data import Vocabulary, read_tokens
from stategrad.gradients import load_result
from stategrad.lm import RNNLM, ModelSpec, load_model, save_checkpoint

WORDS = ["the", "cat", "dog", "sat", "ran", "on", "mat", "a"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cmp")
    vocab = Vocabulary.from_counts(Counter({w: 10 - i for i, w in enumerate(WORDS)} | {"<eos>": 5}))
    torch.manual_seed(0)
    module = RNNLM(ModelSpec(vocab_size=len(vocab), embedding_size=3, hidden_size=4, cell="lstm",
                             init_scale=0.5, num_layers=2))
    save_checkpoint(tmp / "model.pt", module, vocab, config={"num_steps": 5})
    rng = np.random.default_rng(0)
    lines = [" ".join(rng.choice(WORDS, size=6)) for _ in range(60)]
    (tmp / "text.txt").write_text("\n".join(lines) + "\n")
    (tmp / "classes.tsv").write_text("cat\tanimals\ndog\tanimals\nsat\tverbs\nran\tverbs\n")
    return tmp


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], prog_name="stategrad")


def _direct_lstm_states(module, tokens, layer_count=2):
    """(T, layers, H) cell and hidden states from the LSTM equations in float64 NumPy."""
    emb = module.embedding.weight.detach().double().numpy()[tokens]
    H = module.spec.hidden_size
    h = np.zeros((layer_count, H))
    c = np.zeros((layer_count, H))
    cs, hs = [], []
    for x in emb:
        inp = x
        for layer in range(layer_count):
            w = {k: getattr(module.rnn, f"{k}_l{layer}").detach().double().numpy()
                 for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
            z = w["weight_ih"] @ inp + w["bias_ih"] + w["weight_hh"] @ h[layer] + w["bias_hh"]
            i, f, g, o = (z[k * H:(k + 1) * H] for k in range(4))
            sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
            c[layer] = sig(f) * c[layer] + sig(i) * np.tanh(g)
            h[layer] = sig(o) * np.tanh(c[layer])
            inp = h[layer]
        cs.append(c.copy())
        hs.append(h.copy())
    return np.array(cs), np.array(hs)


def test_state_stats_against_direct_lstm(setup, monkeypatch):
    tmp = setup
    for state, layer in (("cell", 0), ("hidden", -1)):
        out = tmp / f"{state}.npz"
        r = run("state-stats", "--model", tmp / "model.pt", "--text", tmp / "text.txt",
                "--state", state, "--layer", layer, "--out", out)
        assert r.exit_code == 0, r.output
        st = load_state_stats(out)
        model = load_model(tmp / "model.pt")
        tokens = read_tokens(tmp / "text.txt", model.vocab)
        cs, hs = _direct_lstm_states(model.module, tokens)
        S = (cs if state == "cell" else hs)[:, layer]
        np.testing.assert_allclose(st.mean, S.mean(0), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(st.covariance, np.cov(S.T), rtol=1e-4, atol=1e-7)
        assert st.metadata["state"] == state and st.layer == layer % 2
        assert st.metadata["model"]["identity"] == model.identity()
        # the text in chunks (states carried across them) gives the same statistics
        ws = sys.modules["stategrad.analysis.state_whitening"]
        monkeypatch.setattr(ws._LayerStates, "CHUNK", 37)
        chunked = state_stats_for_model(model, tmp / "text.txt", state=state, layer=layer)
        monkeypatch.undo()
        np.testing.assert_allclose(chunked.covariance, st.covariance, rtol=1e-10, atol=1e-14)
    bad = run("state-stats", "--model", tmp / "model.pt", "--text", tmp / "text.txt",
              "--layer", 5, "--out", tmp / "x.npz")
    assert bad.exit_code != 0 and "no layer 5" in bad.output and not (tmp / "x.npz").exists()


def _gradients(tmp, state, out):
    r = run("gradients", "--model", tmp / "model.pt", "--text", tmp / "text.txt", "--state", state,
            "--layer", 0, "--max-delay", 4, "--block-size", 40, "--class-map",
            tmp / "classes.tsv", "--out", out, "--no-progress")
    assert r.exit_code == 0, r.output


def test_compare_and_whitened_memory(setup):
    tmp = setup
    _gradients(tmp, "cell", tmp / "gc.h5")
    _gradients(tmp, "hidden", tmp / "gh.h5")
    for state in ("cell", "hidden"):
        assert run("state-stats", "--model", tmp / "model.pt", "--text", tmp / "text.txt",
                   "--state", state, "--layer", 0, "--out", tmp / f"s{state}.npz").exit_code == 0
    # memory --whiten-state equals the API on W_s G
    r = run("memory", tmp / "gc.h5", "--whiten-state", tmp / "scell.npz", "--json", tmp / "m.json")
    assert r.exit_code == 0, r.output
    W = load_state_stats(tmp / "scell.npz").whitening
    direct = memory_curves(whiten_result(load_result(tmp / "gc.h5"), W))
    rows = json.loads((tmp / "m.json").read_text())["curves"]
    assert rows[1]["sum"] == pytest.approx(direct.curves[0].totals[1], rel=1e-9)
    # the hidden state's statistics are refused for a cell-state result
    r = run("memory", tmp / "gc.h5", "--whiten-state", tmp / "shidden.npz")
    assert r.exit_code != 0 and "Error:" in r.output and "shidden.npz" in r.output
    # cell against hidden on the same blocks, whitened
    r = run("compare", tmp / "gc.h5", tmp / "gh.h5", "--whiten-state", tmp / "scell.npz",
            "--whiten-state-b", tmp / "shidden.npz", "--json", tmp / "c.json")
    assert r.exit_code == 0, r.output
    rows = json.loads((tmp / "c.json").read_text())["rows"]
    assert {"delay", "difference", "difference_lower", "difference_upper"} <= set(rows[0])
    assert rows[2]["difference_lower"] <= rows[2]["difference"] <= rows[2]["difference_upper"]
    # class against class in one result
    r = run("memory", tmp / "gc.h5", "--compare", "animals", "verbs", "--csv", tmp / "c.csv")
    assert r.exit_code == 0, r.output
    assert (tmp / "c.csv").read_text().startswith("delay,count_a,count_b,a,b,difference,")
    # another block layout is refused in one line naming both files
    r2 = run("gradients", "--model", tmp / "model.pt", "--text", tmp / "text.txt", "--state",
             "hidden", "--layer", 0, "--max-delay", 4, "--block-size", 30, "--class-map",
             tmp / "classes.tsv", "--out", tmp / "g30.h5", "--no-progress")
    assert r2.exit_code == 0
    r = run("compare", tmp / "gc.h5", tmp / "g30.h5")
    assert r.exit_code != 0
    line = r.output.strip()
    assert line.startswith("Error:") and "gc.h5" in line and "g30.h5" in line and "\n" not in line


def test_report_compare_adds_the_paired_figure(setup):
    tmp = setup
    if not (tmp / "gc.h5").exists():
        _gradients(tmp, "cell", tmp / "gc.h5")
    r = run("report", tmp / "gc.h5", "--out", tmp / "rep", "--compare", "animals", "verbs")
    assert r.exit_code == 0, r.output
    table = (tmp / "rep" / "figures" / "compare.csv").read_text().splitlines()
    assert table[0] == "delay,animals - verbs,animals - verbs lower,animals - verbs upper"
    direct = paired_difference(Side(load_result(tmp / "gc.h5"), "animals"),
                               Side(load_result(tmp / "gc.h5"), "verbs"))
    assert float(table[2].split(",")[1]) == pytest.approx(direct.rows[1]["difference"], rel=1e-3)
    assert "Paired difference: animals - verbs" in (tmp / "rep" / "report.html").read_text()
