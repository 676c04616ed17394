"""`stategrad gradients`, `merge`, `inspect`; raw output and the original's layout; foreign models."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from stategrad import Vocabulary, load_model, load_result
from stategrad.cli import main
from stategrad.gradients import compute_state_gradients, iter_raw_pairs, sentence_gradients
from stategrad.legacy import legacy_averages
from stategrad.lm import RNNLM, ModelError, ModelSpec, save_checkpoint

WORDS = ["the", "cat", "dog", "sat", "ran", "on", "mat", "a"]


@pytest.fixture()
def setup(tmp_path):
    vocab = Vocabulary.from_counts(__import__("collections").Counter({w: 10 - i for i, w in enumerate(WORDS)} | {"<eos>": 5}))
    torch.manual_seed(0)
    module = RNNLM(ModelSpec(vocab_size=len(vocab), embedding_size=3, hidden_size=4, cell="lstm",
                             init_scale=0.5, num_layers=2))
    ckpt = tmp_path / "model.pt"
    save_checkpoint(ckpt, module, vocab, config={"num_steps": 5})
    text = tmp_path / "text.txt"
    text.write_text("the cat sat on the mat\na dog ran\nthe dog sat on a cat\n")
    return tmp_path, ckpt, text, vocab


def run(args):
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False,
                                prog_name="stategrad")
    return result


def test_gradients_command_equals_the_api(setup):
    tmp, ckpt, text, vocab = setup
    out = tmp / "g.h5"
    r = run(["gradients", "--model", ckpt, "--text", text, "--max-delay", 4, "--out", out,
             "--dtype", "float64", "--class-map", _class_map(tmp), "--no-progress"])
    assert r.exit_code == 0, r.output
    res = load_result(out)
    lm = load_model(ckpt)
    from stategrad.data import load_classes, read_tokens

    tokens = read_tokens(text, lm.vocab)
    classes = load_classes(lm.vocab, [], None, class_map=str(_class_map(tmp)))
    ref = compute_state_gradients(lm, tokens, max_delay=4, classes=classes, dtype=torch.float64)
    np.testing.assert_array_equal(res.counts, ref.counts)
    np.testing.assert_allclose(res.sums, ref.sums, rtol=1e-12)
    assert res.classes == ref.classes and "animals" in res.classes
    assert res.metadata["text"]["path"].endswith("text.txt")
    assert res.metadata["run"]["command"].startswith("stategrad gradients")
    r = run(["inspect", out])
    assert "animals" in r.output and "carry" in r.output


def _class_map(tmp):
    path = tmp / "classes.tsv"
    path.write_text("cat\tanimals\ndog\tanimals\nsat\tverbs\nran\tverbs\n")
    return path


def test_slices_merge_on_the_command_line(setup):
    tmp, ckpt, text, _ = setup
    common = ["--model", ckpt, "--text", text, "--max-delay", 5, "--dtype", "float64",
              "--state", "hidden", "--no-progress"]
    assert run(["gradients", *common, "--out", tmp / "whole.h5"]).exit_code == 0
    assert run(["gradients", *common, "--stop", 9, "--out", tmp / "a.h5"]).exit_code == 0
    assert run(["gradients", *common, "--start", 9, "--out", tmp / "b.h5"]).exit_code == 0
    r = run(["merge", tmp / "a.h5", tmp / "b.h5", "--out", tmp / "m.h5"])
    assert r.exit_code == 0, r.output
    whole, merged = load_result(tmp / "whole.h5"), load_result(tmp / "m.h5")
    np.testing.assert_array_equal(whole.counts, merged.counts)
    np.testing.assert_allclose(merged.sums, whole.sums, rtol=1e-10, atol=1e-14)
    # The names torchrun leaves alone give the same slices as --start/--stop.
    assert run(["gradients", *common, "--slice-stop", 9, "--out", tmp / "a2.h5"]).exit_code == 0
    assert run(["gradients", *common, "--slice-start", 9, "--out", tmp / "b2.h5"]).exit_code == 0
    for name in ("a", "b"):
        a, b = load_result(tmp / f"{name}.h5"), load_result(tmp / f"{name}2.h5")
        np.testing.assert_array_equal(a.counts, b.counts)
        np.testing.assert_array_equal(a.sums, b.sums)


def test_slice_options_pass_through_torchrun():
    from torch.distributed.run import get_args_parser

    argv = ["--nproc-per-node", "2", "-m", "stategrad", "gradients", "--slice-start", "3",
            "--slice-stop", "9"]
    assert get_args_parser().parse_args(argv).training_script_args[-4:] == argv[-4:]


def test_raw_output_and_original_layout(setup):
    tmp, ckpt, text, _ = setup
    raw, legacy_dir, out = tmp / "raw.h5", tmp / "orig", tmp / "g.h5"
    r = run(["gradients", "--model", ckpt, "--text", text, "--max-delay", 20, "--out", out,
             "--dtype", "float64", "--raw", raw, "--raw-positions", "0:6", "--raw-delays", "0:3",
             "--export-original", legacy_dir, "--no-progress"])
    assert r.exit_code == 0, r.output
    lm = load_model(ckpt)
    from stategrad.data import read_tokens

    tokens = read_tokens(text, lm.vocab)
    G = sentence_gradients(lm, tokens, state="cell")
    pairs = list(iter_raw_pairs(raw))
    assert sorted((t, d) for t, d, _ in pairs) == [(t, d) for t in range(6) for d in range(3)]
    for t, d, mat in pairs:
        np.testing.assert_allclose(mat, G[t, t + d], rtol=1e-5, atol=1e-7)  # stored as float32
    # The original's layout holds the same matrices, and its averages are the means of them.
    avg = legacy_averages(legacy_dir, 2)[None]
    expected = np.mean([G[t, t + 2] for t in range(6)], axis=0)
    assert avg.count == 6
    np.testing.assert_allclose(avg.mean, expected, rtol=1e-5, atol=1e-7)
    assert (legacy_dir / "timestep_all" / "delay_2" / "all.npz").is_file()


class RNNModel(nn.Module):  # the shape of PyTorch's word_language_model example
    def __init__(self):
        super().__init__()
        self.drop = nn.Dropout(0.2)
        self.encoder = nn.Embedding(6, 3)
        self.rnn = nn.GRU(3, 4, 2)
        self.decoder = nn.Linear(4, 6)


def test_word_language_model_state_dict_and_pickle(tmp_path):
    torch.manual_seed(1)
    foreign = RNNModel()
    torch.save(foreign.state_dict(), tmp_path / "sd.pt")
    (tmp_path / "vocab.txt").write_text("".join(f"w{i}\n" for i in range(6)))
    lm = load_model(tmp_path / "sd.pt", tmp_path / "vocab.txt")
    assert lm.spec.cell == "gru" and lm.spec.num_layers == 2
    tokens = np.array([1, 5, 2, 0, 3])
    # Independent reference: autograd through the foreign module itself.
    x0 = foreign.encoder.weight[torch.as_tensor(tokens)].detach().double()
    rnn = foreign.rnn.double()
    J = torch.autograd.functional.jacobian(lambda x: rnn(x.unsqueeze(1))[0][:, 0], x0)
    G = sentence_gradients(lm, tokens, state="hidden")
    np.testing.assert_allclose(G[1, 3], J[3, :, 1, :].numpy(), rtol=1e-6, atol=1e-6)
    foreign.float()
    torch.save(foreign, tmp_path / "whole.pt")
    with pytest.raises(ModelError, match="trusted"):
        load_model(tmp_path / "whole.pt", tmp_path / "vocab.txt")
    trusted = load_model(tmp_path / "whole.pt", tmp_path / "vocab.txt", trusted=True)
    G2 = sentence_gradients(trusted, tokens, state="hidden")
    np.testing.assert_allclose(G2, G, rtol=1e-6, atol=1e-8)
    with pytest.raises(ModelError, match="vocabulary"):
        load_model(tmp_path / "sd.pt")


def test_errors_are_specific(setup):
    tmp, ckpt, text, _ = setup
    r = CliRunner().invoke(main, ["gradients", "--model", str(ckpt), "--text", str(text),
                                  "--max-delay", "3", "--state", "cell", "--layer", "5",
                                  "--out", str(tmp / "x.h5"), "--no-progress"])
    assert r.exit_code != 0 and "layer 5" in r.output
    r = CliRunner().invoke(main, ["gradients", "--model", str(ckpt), "--text", str(text),
                                  "--max-delay", "3", "--raw", str(tmp / "r.h5"),
                                  "--raw-positions", "x:y", "--out", str(tmp / "x.h5")])
    assert r.exit_code != 0 and "x:y" in r.output
    assert not (tmp / "x.h5").exists()


def test_engine_result_through_the_original_layout_gives_the_same_averages(setup):
    """Result -> export to the original's layout -> the original's averaging (legacy
    analysis, with its multi-label class rule) equals the result's own mean(d, c)."""
    tmp, ckpt, text, _ = setup
    pos_map = tmp / "words+pos.txt"
    pos_map.write_text("the DT\na DT\ncat NN\ndog NN VB\nmat NN\nsat VBD\nran VBD VBN\non IN\n"
                       "<eos> not in list\n")
    nouns = tmp / "nouns"
    nouns.write_text("NN\nNNS\n")
    verbs = tmp / "verbs"
    verbs.write_text("VB\nVBD\nVBN\n")
    out, legacy_dir = tmp / "g.h5", tmp / "orig"
    r = run(["gradients", "--model", ckpt, "--text", text, "--max-delay", 4, "--out", out,
             "--dtype", "float64", "--classes", nouns, "--classes", verbs, "--pos-map", pos_map,
             "--raw-positions", "all", "--raw-delays", "all", "--export-original", legacy_dir,
             "--no-progress"])
    assert r.exit_code == 0, r.output
    res = load_result(out)
    from stategrad.data import read_class_file, read_pos_map

    classes = {"nouns": read_class_file(nouns), "verbs": read_class_file(verbs)}
    for d in range(4):
        avgs = legacy_averages(legacy_dir, d, classes=classes, pos_map=read_pos_map(pos_map))
        assert avgs[None].count == res.count(d, "all")
        np.testing.assert_allclose(avgs[None].mean, res.mean(d, "all"), rtol=1e-5, atol=1e-8)
        for name in ("nouns", "verbs"):
            assert avgs[name].count == res.count(d, name) > 0
            np.testing.assert_allclose(avgs[name].mean, res.mean(d, name), rtol=1e-5, atol=1e-8)


def test_segment_length_comes_from_the_checkpoint(setup):
    tmp, _, text, vocab = setup
    torch.manual_seed(3)
    module = RNNLM(ModelSpec(vocab_size=len(vocab), embedding_size=3, hidden_size=4, cell="gru"))
    ckpt = tmp / "trained_here.pt"
    save_checkpoint(ckpt, module, vocab, config={"training": {"num_steps": 4}})
    out = tmp / "seg.h5"
    r = run(["gradients", "--model", ckpt, "--text", text, "--max-delay", 3, "--state", "hidden",
             "--semantics", "segment", "--dtype", "float64", "--out", out, "--no-progress"])
    assert r.exit_code == 0, r.output
    res = load_result(out)
    from stategrad.data import read_tokens

    lm = load_model(ckpt)
    ref = compute_state_gradients(lm, read_tokens(text, lm.vocab), max_delay=3, state="hidden",
                                  semantics="segment", segment_length=4, dtype=torch.float64)
    assert res.metadata["segment_length"] == 4
    np.testing.assert_array_equal(res.counts, ref.counts)
    np.testing.assert_allclose(res.sums, ref.sums, rtol=1e-12)


class ReluRNNModel(nn.Module):  # word_language_model's RNN_RELU
    def __init__(self):
        super().__init__()
        self.encoder = nn.Embedding(6, 3)
        self.rnn = nn.RNN(3, 4, 1, nonlinearity="relu")
        self.decoder = nn.Linear(4, 6)


def test_an_rnn_state_dict_needs_its_nonlinearity(tmp_path):
    torch.manual_seed(4)
    foreign = ReluRNNModel()
    with torch.no_grad():  # keep most units active so ReLU and tanh differ clearly
        foreign.rnn.bias_ih_l0.add_(1.0)
    torch.save(foreign.state_dict(), tmp_path / "sd.pt")
    words = ["w0", "w1", "w2", "w3", "w4", "<eos>"]
    (tmp_path / "vocab.txt").write_text("".join(f"{w}\n" for w in words))
    tokens = np.array([1, 4, 2, 0, 3, 2, 1])
    # Independent reference: autograd through the foreign ReLU module itself.
    x0 = foreign.encoder.weight[torch.as_tensor(tokens)].detach().double()
    rnn = foreign.rnn.double()
    J = torch.autograd.functional.jacobian(lambda x: rnn(x.unsqueeze(1))[0][:, 0], x0)
    ref = np.stack([J[k, :, t, :].numpy() for t in range(len(tokens))
                    for k in range(len(tokens))]).reshape(len(tokens), len(tokens), 4, 3)
    with pytest.raises(ModelError, match="--nonlinearity tanh or relu"):
        load_model(tmp_path / "sd.pt", tmp_path / "vocab.txt")
    lm = load_model(tmp_path / "sd.pt", tmp_path / "vocab.txt", nonlinearity="relu")
    G = sentence_gradients(lm, tokens, state="hidden", dtype=torch.float64)
    np.testing.assert_allclose(G, ref, rtol=1e-6, atol=1e-7)
    # read as tanh, the same weights give other numbers: the option matters
    wrong = load_model(tmp_path / "sd.pt", tmp_path / "vocab.txt", nonlinearity="tanh")
    G_tanh = sentence_gradients(wrong, tokens, state="hidden", dtype=torch.float64)
    assert np.abs(G_tanh - ref).max() > 0.1 * np.abs(ref).max()
    torch.save(RNNModel().state_dict(), tmp_path / "gru.pt")
    with pytest.raises(ModelError, match="nn.RNN models"):
        load_model(tmp_path / "gru.pt", tmp_path / "vocab.txt", nonlinearity="relu")

    # On the command line: without --nonlinearity one line naming it; with it, the API's numbers.
    text = tmp_path / "text.txt"
    text.write_text("w1 w4 w2 w0 w3\nw2 w1 w0 w0 w3 w4\n")
    common = ["gradients", "--model", tmp_path / "sd.pt", "--vocab", tmp_path / "vocab.txt",
              "--text", text, "--max-delay", 3, "--state", "hidden", "--dtype", "float64",
              "--no-progress", "--force"]  # random weights: no better than a unigram model
    r = run(common + ["--out", tmp_path / "none.h5"])
    assert r.exit_code != 0 and "--nonlinearity" in r.output and "Traceback" not in r.output
    assert len(r.output.strip().splitlines()) == 1
    r = run(common + ["--nonlinearity", "relu", "--out", tmp_path / "relu.h5"])
    assert r.exit_code == 0, r.output
    res = load_result(tmp_path / "relu.h5")
    from stategrad.data import read_tokens

    api = compute_state_gradients(lm, read_tokens(text, lm.vocab), max_delay=3, state="hidden",
                                  dtype=torch.float64)
    np.testing.assert_allclose(res.sums, api.sums, rtol=1e-12)
    np.testing.assert_array_equal(res.counts, api.counts)
