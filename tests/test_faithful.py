"""Faithful where we say we are: the files stategrad writes for the original's scripts
are read by those scripts' own logic, and the normalisation can be weighted as the
original's was.

The original is github.com/lverwimp/state_gradients (MIT licence).  Its reading logic is
recreated here in a few lines (globs, file names, the arithmetic), each with the file and
line it comes from; the numbers are checked against direct NumPy and torch.autograd
computations, never against stategrad's own output.
"""

from __future__ import annotations

import copy
import glob
import json
import os

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from stategrad import Vocabulary, analysis, legacy, load_model
from stategrad.cli import main
from stategrad.data import read_tokens
from stategrad.gradients import GradientResult
from stategrad.lm import RNNLM, ModelSpec, save_checkpoint

torch.set_num_threads(1)

WORDS = ["the", "cat", "dog", "sat", "ran", "on", "mat", "a", "big", "small", "red", "old"]


@pytest.fixture()
def setup(tmp_path):
    rng = np.random.default_rng(3)
    text = tmp_path / "train.txt"
    # Skewed frequencies, so token and type weighting differ.
    p = np.array([30, 20, 10, 8, 6, 5, 4, 3, 2, 2, 1, 1], dtype=float)
    text.write_text("\n".join(" ".join(rng.choice(WORDS, 7, p=p / p.sum())) for _ in range(25))
                    + "\n")
    vocab = Vocabulary.build(text)
    torch.manual_seed(0)
    module = RNNLM(ModelSpec(vocab_size=len(vocab), embedding_size=4, hidden_size=5,
                             init_scale=0.5))
    ckpt = tmp_path / "model.pt"
    save_checkpoint(ckpt, module, vocab, config={"num_steps": 5})
    return tmp_path, ckpt, text


def cli(args):
    return CliRunner().invoke(main, [str(a) for a in args], prog_name="stategrad")


def table_of(ckpt) -> np.ndarray:
    return load_model(ckpt).module.embedding.weight.detach().double().numpy()


def original_normalize_equal_variance(all_emb: np.ndarray):
    """normalize_equal_variance.py lines 14-15, 29 and 36: mean, np.cov, Cholesky."""
    mean_emb = np.sum(all_emb, axis=0) / all_emb.shape[0]
    cov = np.cov(np.transpose(all_emb))
    return mean_emb, cov, np.linalg.cholesky(cov)


# --- normalisation weighting -------------------------------------------------------------------


def test_type_weighting_is_the_original_normalisation_of_the_embedding_table(setup):
    tmp, ckpt, text = setup
    r = cli(["embedding-stats", "--model", ckpt, "--weighting", "type", "--out", tmp / "type.npz"])
    assert r.exit_code == 0, r.output
    assert "type weighted" in r.output
    W = table_of(ckpt)
    stats = analysis.load_embedding_stats(tmp / "type.npz")
    mean, cov, L = original_normalize_equal_variance(W)  # every row once, <unk> etc. included
    np.testing.assert_allclose(stats.mean, mean, atol=1e-12)
    np.testing.assert_allclose(stats.covariance, cov, atol=1e-12)
    np.testing.assert_allclose(stats.cholesky, L, atol=1e-12)
    assert stats.weighting == "type" and stats.n_types == len(W)
    assert stats.metadata["model"]["identity"] == load_model(ckpt).identity()

    # The token weighting (the default with --text) is another thing, the statistics of
    # the text's tokens; on skewed text the two differ clearly.
    r = cli(["embedding-stats", "--model", ckpt, "--text", text, "--out", tmp / "token.npz"])
    assert r.exit_code == 0, r.output
    token = analysis.load_embedding_stats(tmp / "token.npz")
    X = W[read_tokens(text, load_model(ckpt).vocab)]
    np.testing.assert_allclose(token.covariance, np.cov(X.T), atol=1e-12)
    assert token.weighting == "token" and "token weighted" in r.output
    assert np.abs(token.mean - stats.mean).max() > 0.05 * np.abs(stats.mean).max()


def test_run_save_embedding_file_gives_the_type_weighted_statistics(setup):
    """run's save_embedding writes the table, as run_epoch.py lines 68-72 did; its
    statistics (as normalize_equal_variance.py would make them) are the type weighting."""
    from stategrad.legacy import save_embedding_table

    tmp, ckpt, _ = setup
    array, words = save_embedding_table(load_model(ckpt), tmp / "emb" / "emb")
    assert array == tmp / "emb" / "emb.npy"  # np.save's naming
    assert words.read_text().splitlines()[0] == f"{load_model(ckpt).vocab.words[0]}\t0"
    r = cli(["embedding-stats", "--embeddings", array, "--weighting", "type",
             "--out", tmp / "from_file.npz"])
    assert r.exit_code == 0, r.output
    _, cov, L = original_normalize_equal_variance(np.load(array).astype(np.float64))
    from_file = analysis.load_embedding_stats(tmp / "from_file.npz")
    np.testing.assert_allclose(from_file.cholesky, L, atol=1e-12)
    assert from_file.weighting == "type"


def test_weighting_mistakes_are_refused_in_one_line(setup):
    tmp, ckpt, text = setup
    cases = [
        (["--model", ckpt, "--weighting", "type", "--text", text], "drop --text"),
        (["--model", ckpt], "--weighting type"),
    ]
    # An array without repeated rows may be a table or a short text: the user must say.
    table = tmp / "table.npy"
    np.save(table, table_of(ckpt))
    cases.append((["--embeddings", table], "cannot tell"))
    tokens = tmp / "tokens.npy"
    np.save(tokens, table_of(ckpt)[read_tokens(text, load_model(ckpt).vocab)])
    cases.append((["--embeddings", tokens, "--weighting", "type"], "repeated rows"))
    for args, message in cases:
        r = cli(["embedding-stats", *args, "--out", tmp / "x.npz"])
        assert r.exit_code in (1, 2) and message in r.output, (args, r.output)
        assert "Traceback" not in r.output
        assert not (tmp / "x.npz").exists()
    # repeated rows are tokens without being told
    r = cli(["embedding-stats", "--embeddings", tokens, "--out", tmp / "x.npz"])
    assert r.exit_code == 0 and analysis.load_embedding_stats(tmp / "x.npz").weighting == "token"


def test_outputs_that_use_statistics_show_their_weighting(setup):
    tmp, ckpt, text = setup
    assert cli(["embedding-stats", "--model", ckpt, "--weighting", "type",
                "--out", tmp / "s.npz"]).exit_code == 0
    r = cli(["gradients", "--model", ckpt, "--text", text, "--max-delay", 3, "--state", "cell",
             "--dtype", "float64", "--no-progress", "--out", tmp / "g.h5"])
    assert r.exit_code == 0, r.output
    r = cli(["svd", tmp / "g.h5", "--normalize", tmp / "s.npz", "--top", 2,
             "--json", tmp / "sv.json"])
    assert r.exit_code == 0 and "type weighted" in r.output, r.output
    assert json.loads((tmp / "sv.json").read_text())["normalization"]["weighting"] == "type"
    r = cli(["memory", tmp / "g.h5", "--normalize", tmp / "s.npz", "--json", tmp / "m.json"])
    assert r.exit_code == 0 and "type weighted" in r.output, r.output
    assert json.loads((tmp / "m.json").read_text())["normalization"]["weighting"] == "type"
    r = cli(["relative-memory", tmp / "g.h5", "--normalize", tmp / "s.npz", "--model", ckpt,
             "--diff", "words:" + str(_words(tmp, "a", ["cat", "dog"])),
             "words:" + str(_words(tmp, "b", ["big", "red"])), "--top-k", 2,
             "--json", tmp / "rm.json"])
    assert r.exit_code == 0 and "type weighted" in r.output, r.output
    assert json.loads((tmp / "rm.json").read_text())["normalization"]["weighting"] == "type"
    r = cli(["report", tmp / "g.h5", "--normalize", tmp / "s.npz", "--ci", "none",
             "--out", tmp / "report"])
    assert r.exit_code == 0, r.output
    assert "type weighted" in (tmp / "report" / "report.html").read_text()
    # Without normalisation nothing is claimed.
    r = cli(["svd", tmp / "g.h5", "--top", 2])
    assert r.exit_code == 0 and "weighted" not in r.output


def test_statistics_files_from_before_the_option_read_as_token_weighted(setup):
    tmp, ckpt, text = setup
    stats = analysis.embedding_stats_for_model(load_model(ckpt), text)
    del stats.metadata["weighting"]  # as written by earlier versions
    stats.save(tmp / "old.npz")
    assert analysis.load_embedding_stats(tmp / "old.npz").weighting == "token"
    legacy.save_legacy_stats(stats, tmp / "leg")
    info = analysis.normalization_info(str(tmp / "leg_D_norm_grad.npy"))
    assert info["weighting"] == "unknown"


def _words(tmp, name, words):
    p = tmp / f"{name}.words"
    p.write_text("\n".join(words) + "\n")
    return p


# --- --export-original: what avg_gradient_matrix.py and avg_gradient_matrix_pos.py read -------------


def autograd_pairs(ckpt, tokens) -> np.ndarray:
    """[t, k] = d c_k / d x_t (LSTM cell state) by torch.autograd in float64."""
    module = copy.deepcopy(load_model(ckpt).module).double()
    x0 = module.embedding.weight[torch.as_tensor(tokens, dtype=torch.long)].detach()

    def cells(x):
        out, st = [], None
        for k in range(x.shape[0]):
            _, st = module.rnn(x[k].view(1, 1, -1), st)
            out.append(st[1][-1, 0])
        return torch.stack(out)

    J = torch.autograd.functional.jacobian(cells, x0).numpy()  # (T, H, T, E)
    return J.transpose(2, 0, 1, 3)


def original_avg_gradient_matrix(grad_dir, delay, extension):
    """avg_gradient_matrix.py lines 19-32."""
    list_grads = glob.glob(f"{grad_dir}/timestep_*/delay_{delay}/*.{extension}")
    tmp_sum, tmp_denom = 0.0, 0.0
    for grad_matrix in list_grads:
        if extension == "npy":
            tmp_sum += np.load(grad_matrix)
            tmp_denom += 1
        else:
            gr_m = np.load(grad_matrix)["arr_0"]
            tmp_sum += np.sum(gr_m, axis=0)
            tmp_denom += gr_m.shape[0]
    return tmp_sum / tmp_denom, tmp_denom


def original_avg_gradient_matrix_pos(grad_dir, delay, classes, pos_mapping, extension):
    """avg_gradient_matrix_pos.py lines 26-55 (extension 'npz' is its default)."""
    list_grads = glob.glob(f"{grad_dir}/timestep_*/delay_{delay}/*.{extension}")
    tmp_sum, tmp_denom = 0.0, 0.0
    for grad_matrix in list_grads:
        mapping_f = os.path.join(os.path.dirname(grad_matrix), "mapping.txt")
        words = [line.split()[1] for line in open(mapping_f)]
        for i, w in enumerate(words):
            if w in pos_mapping:
                for p in pos_mapping[w]:
                    if p in classes:
                        if extension == "npy":
                            tmp_sum += np.load(grad_matrix)
                        else:
                            tmp_sum += np.load(grad_matrix)["arr_0"][i]
                        tmp_denom += 1
                        break
    return tmp_sum / tmp_denom


POS = {"cat": ["NN"], "dog": ["NN", "VB"], "mat": ["NN"], "sat": ["VBD"], "ran": ["VBD"],
       "the": ["DT"], "a": ["DT"]}


def test_export_is_read_by_the_original_averaging_scripts(setup):
    tmp, ckpt, text = setup
    short = tmp / "short.txt"
    short.write_text("the cat sat on the mat\na dog ran\n")
    out = tmp / "orig"
    r = cli(["gradients", "--model", ckpt, "--text", short, "--max-delay", 3, "--state", "cell",
             "--dtype", "float64", "--raw-positions", "all", "--raw-delays", "all",
             "--export-original", out, "--no-progress", "--out", tmp / "g.h5"])
    assert r.exit_code == 0, r.output
    assert f"give {out} to the original's avg_gradient_matrix.py" in r.output
    tokens = read_tokens(short, load_model(ckpt).vocab)
    J = autograd_pairs(ckpt, tokens)
    T = len(tokens)
    vocab = load_model(ckpt).vocab
    for d in range(3):
        expected = np.mean([J[t, t + d] for t in range(T - d)], axis=0)
        for ext in ("npy", "npz"):
            avg, n = original_avg_gradient_matrix(out, d, ext)
            assert n == T - d
            np.testing.assert_allclose(avg, expected, rtol=1e-5, atol=1e-7)  # float32 files
        nouns = [t for t in range(T - d) if "NN" in POS.get(vocab.words[tokens[t]], [])]
        class_avg = original_avg_gradient_matrix_pos(out, d, ["NN", "NNS"], POS, "npz")
        np.testing.assert_allclose(class_avg, np.mean([J[t, t + d] for t in nouns], axis=0),
                                   rtol=1e-5, atol=1e-7)
    # A second export into the same folder would be averaged with the first: refused
    # before computing, and the first export is kept.
    r = cli(["gradients", "--model", ckpt, "--text", short, "--max-delay", 3,
             "--export-original", out, "--no-progress", "--out", tmp / "g2.h5"])
    assert r.exit_code == 1 and "timestep_all" in r.output and "Traceback" not in r.output
    assert not (tmp / "g2.h5").exists() and original_avg_gradient_matrix(out, 2, "npy")[1] == T - 2


def test_original_npy_class_branch_is_the_all_words_average(tmp_path):
    """Why legacy-average differs from avg_gradient_matrix_pos.py on .npy files: its
    lines 44-47 add every file once per matching word of the whole mapping.txt, so all
    files get equal weight and the 'class' average is the all-words average."""
    rng = np.random.default_rng(4)
    folder = tmp_path / "timestep_0" / "delay_1"
    folder.mkdir(parents=True)
    words = ["cat", "the", "dog", "sat", "mat"]
    mats = rng.normal(size=(5, 3, 2))
    with open(folder / "mapping.txt", "w") as handle:
        for i, w in enumerate(words):
            np.save(folder / f"{i}.npy", mats[i])
            handle.write(f"{i}\t{w}\t{w}-x-\n")
    buggy = original_avg_gradient_matrix_pos(tmp_path, 1, ["NN"], POS, "npy")
    np.testing.assert_allclose(buggy, mats.mean(axis=0), atol=1e-12)
    ours = legacy.legacy_average(tmp_path, 1, class_tags=["NN"], pos_map=POS)
    np.testing.assert_allclose(ours.mean, mats[[0, 2, 4]].mean(axis=0), atol=1e-12)
    legacy.np2npz(folder)
    npz = original_avg_gradient_matrix_pos(tmp_path, 1, ["NN"], POS, "npz")
    np.testing.assert_allclose(npz, ours.mean, atol=1e-12)


# --- legacy-export: what calculate_svs.py, relative_memory.py and cos_subspace read ---------------


def _result(rng, H=5, E=4, D=3, classes=("all", "nouns")):
    counts = rng.integers(1, 6, size=(D, len(classes)))
    sums = rng.normal(size=(D, len(classes), H, E)) * counts[:, :, None, None]
    return GradientResult(sums=sums, counts=counts, classes=list(classes), vocab=[], metadata={})


def original_relative_memory(diff, grad_dir, norm_emb_f, name_avg=None):
    """relative_memory.py lines 11-37: delay label -> relative memory."""
    pattern = (f"{grad_dir}/delay_*_avg_{name_avg}_norm.npy" if name_avg
               else f"{grad_dir}/delay_*_avg_norm.npy")
    norm_pca_diff = np.matmul(np.load(norm_emb_f), diff)
    norm_diff = norm_pca_diff / np.linalg.norm(norm_pca_diff)
    out = {}
    for f in glob.glob(pattern):
        delay = os.path.basename(f).replace("delay_", "").replace("_avg.npy", "")
        grad_matrix = np.load(f)
        s = np.linalg.svd(grad_matrix, compute_uv=False)
        out[int(delay.split("_")[0])] = np.linalg.norm(np.dot(grad_matrix, norm_diff)) / s[0]
    return out


def original_cos_subspace(diff, grad_dir, thr, norm_emb_f, norm_grad_f):
    """cos_subspace_diff_vector.py lines 16-44 (all words)."""
    norm_pca_diff = np.matmul(np.load(norm_emb_f), diff)
    norm_diff = norm_pca_diff / np.linalg.norm(norm_pca_diff)
    out = {}
    for f in glob.glob(f"{grad_dir}/delay_*_avg.npy"):
        delay = int(os.path.basename(f).split("_")[1])
        _, _, vh = np.linalg.svd(np.matmul(np.load(f), np.load(norm_grad_f)))
        out[delay] = np.linalg.norm(np.dot(vh[: thr + 1], norm_diff))
    return out


def test_legacy_export_feeds_relative_memory_and_cos_subspace(setup):
    tmp, ckpt, text = setup
    rng = np.random.default_rng(6)
    result = _result(rng)
    result.save(tmp / "g.h5")
    assert cli(["embedding-stats", "--model", ckpt, "--text", text,
                "--out", tmp / "s.npz"]).exit_code == 0
    stats = analysis.load_embedding_stats(tmp / "s.npz")
    # Without statistics relative_memory.py would find nothing: said, not silent.
    r = cli(["legacy-export", tmp / "g.h5", tmp / "plain"])
    assert r.exit_code == 0 and "relative_memory.py" in r.output
    assert glob.glob(f"{tmp / 'plain'}/delay_*_avg_norm.npy") == []  # its line 15
    r = cli(["legacy-export", tmp / "g.h5", tmp / "out", "--normalize", tmp / "s.npz"])
    assert r.exit_code == 0 and "token weighted" in r.output, r.output
    v = rng.normal(size=4)
    Z, L = stats.whitening, stats.cholesky
    n = Z @ v / np.linalg.norm(Z @ v)
    for name, cls in ((None, "all"), ("nouns", "nouns")):
        got = original_relative_memory(v, tmp / "out", tmp / "out" / "emb_Z_norm_emb.npy", name)
        assert sorted(got) == [0, 1, 2]
        for d, value in got.items():
            GL = result.mean(d, cls) @ L
            expected = np.linalg.norm(GL @ n) / np.linalg.svd(GL, compute_uv=False)[0]
            assert value == pytest.approx(expected, rel=1e-10)
    # --top-k K is the original's thr = K - 1
    cos = original_cos_subspace(v, tmp / "out", 1, tmp / "out" / "emb_Z_norm_emb.npy",
                                tmp / "out" / "emb_D_norm_grad.npy")
    ours = analysis.relative_memory(result, v, stats, top_k=2)
    for row in ours.rows:
        assert cos[row["delay"]] == pytest.approx(row["cosine"], rel=1e-9)
    # calculate_svs.py's glob (line 19) takes only the plain averages
    assert sorted(os.path.basename(f) for f in glob.glob(f"{tmp / 'out'}/delay_*_avg.npy")) == [
        "delay_0_avg.npy", "delay_1_avg.npy", "delay_2_avg.npy"]


def test_legacy_export_refuses_files_the_original_globs_would_mix(tmp_path):
    rng = np.random.default_rng(7)
    # relative_memory.py's glob for all words, delay_*_avg_norm.npy, would take the plain
    # averages of a class named "norm"; calculate_svs.py's delay_*_avg.npy those of "x_avg".
    for clash in (("all", "norm"), ("all", "nouns", "x_avg")):
        with pytest.raises(legacy.LegacyError, match="separate folders"):
            legacy.export_result_averages(_result(rng, classes=clash), tmp_path / "a")
        assert not (tmp_path / "a").exists()
    legacy.export_result_averages(_result(rng, classes=("all", "nouns", "x_nouns")), tmp_path / "c")
    # A longer earlier export leaves delays the new one does not replace.
    legacy.export_result_averages(_result(rng, D=4), tmp_path / "b")
    with pytest.raises(legacy.LegacyError, match="delay_3_avg.npy"):
        legacy.export_result_averages(_result(rng, D=2), tmp_path / "b")
