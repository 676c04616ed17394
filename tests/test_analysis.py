"""Memory analysis: embedding statistics, spectra, memory curves, relative memory.

Every figure is checked against a direct NumPy computation or, for the chain
rule behind normalisation, against torch.autograd in float64.
"""

from __future__ import annotations

import csv
import json
import warnings

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from stategrad import analysis
from stategrad.analysis import (
    AnalysisError,
    ConditioningWarning,
    EmbeddingStats,
    SingularCovarianceError,
)
from stategrad.data import Vocabulary
from stategrad.gradients import EmptyClassError, GradientResult
from stategrad.legacy import save_legacy_stats
from stategrad.lm import RNNLM, LanguageModel, ModelSpec, save_checkpoint


def _random_result(rng, D=4, C=3, H=7, E=5, empty=()):
    counts = rng.integers(1, 20, size=(D, C))
    for d, c in empty:
        counts[d, c] = 0
    sums = rng.normal(size=(D, C, H, E)) * counts[:, :, None, None]
    for d, c in empty:
        sums[d, c] = 0.0
    return GradientResult(sums=sums, counts=counts, classes=["all", "nouns", "verbs"][:C],
                          vocab=[f"w{i}" for i in range(10)], metadata={})


def _well_spread_embeddings(rng, V=40, E=5):
    return rng.normal(size=(V, E)) * np.linspace(0.5, 2.0, E) + rng.normal(size=E)


# --- embedding statistics ------------------------------------------------------------------


def test_token_weighted_stats_equal_direct_computation_on_materialised_tokens():
    rng = np.random.default_rng(0)
    W = _well_spread_embeddings(rng)
    tokens = rng.integers(0, len(W), size=3000)
    stats = analysis.embedding_stats_from_tokens(W, tokens)
    X = W[tokens]  # what the original built: one row per token
    np.testing.assert_allclose(stats.mean, X.mean(axis=0), atol=1e-12)
    np.testing.assert_allclose(stats.covariance, np.cov(X.T), atol=1e-12)
    np.testing.assert_allclose(stats.cholesky, np.linalg.cholesky(np.cov(X.T)), atol=1e-10)
    np.testing.assert_allclose(stats.whitening, np.linalg.inv(np.linalg.cholesky(np.cov(X.T))),
                               atol=1e-10)
    assert np.allclose(np.tril(stats.cholesky), stats.cholesky)
    assert stats.n_tokens == 3000 and stats.n_types == len(np.unique(tokens))
    c = stats.checks
    assert c.identity_error < 1e-12
    assert c.whitened_covariance_error < 1e-10
    assert c.centered_mean_max < 1e-12
    s = np.linalg.svd(stats.whitening, compute_uv=False)
    assert c.condition_number == pytest.approx(s[0] / s[-1])
    # and the whitened tokens really have identity covariance
    np.testing.assert_allclose(np.cov(stats.whiten(X).T), np.eye(W.shape[1]), atol=1e-10)


def test_array_input_matches_counts_route():
    rng = np.random.default_rng(1)
    W = _well_spread_embeddings(rng)
    tokens = rng.integers(0, len(W), size=500)
    a = analysis.embedding_stats_from_array(W[tokens])
    b = analysis.embedding_stats_from_tokens(W, tokens)
    for attr in ("mean", "covariance", "cholesky", "whitening"):
        np.testing.assert_allclose(getattr(a, attr), getattr(b, attr), atol=1e-10)
    assert a.n_types == b.n_types


def test_stats_file_and_legacy_files_round_trip(tmp_path):
    rng = np.random.default_rng(2)
    W = _well_spread_embeddings(rng)
    stats = analysis.embedding_stats_from_tokens(W, rng.integers(0, len(W), 800),
                                                 metadata={"text": {"path": "t.txt"}})
    back = analysis.load_embedding_stats(stats.save(tmp_path / "stats.npz"))
    for attr in ("mean", "covariance", "cholesky", "whitening"):
        np.testing.assert_array_equal(getattr(back, attr), getattr(stats, attr))
    assert back.metadata["text"] == {"path": "t.txt"}
    assert back.checks == stats.checks and back.n_tokens == 800

    written = save_legacy_stats(stats, tmp_path / "emb")
    assert sorted(p.name for p in written) == sorted(
        ["emb_mean.npy", "emb_covar.npy", "emb_D_norm_grad.npy", "emb_Z_norm_emb.npy"])
    np.testing.assert_array_equal(np.load(tmp_path / "emb_D_norm_grad.npy"), stats.cholesky)
    np.testing.assert_array_equal(np.load(tmp_path / "emb_Z_norm_emb.npy"), stats.whitening)
    legacy = analysis.load_embedding_stats(tmp_path / "emb_D_norm_grad.npy")
    np.testing.assert_array_equal(legacy.cholesky, stats.cholesky)
    assert legacy.checks.identity_error < 1e-12
    # a bare L file serves as normaliser, as the original's D_NORM argument
    np.testing.assert_array_equal(analysis.normalizer_matrix(tmp_path / "emb_D_norm_grad.npy"),
                                  stats.cholesky)
    np.testing.assert_array_equal(analysis.normalizer_matrix(tmp_path / "stats.npz"), stats.cholesky)


def test_too_few_distinct_tokens_is_a_clear_error():
    rng = np.random.default_rng(3)
    W = _well_spread_embeddings(rng, V=40, E=5)
    with pytest.raises(SingularCovarianceError, match=r"3 distinct word.*larger") as info:
        analysis.embedding_stats_from_tokens(W, np.array([0, 1, 2, 0, 1, 2, 1]))
    assert "ridge" in str(info.value)


def test_frozen_zero_embedding_dimension_is_a_clear_error_and_ridge_helps():
    rng = np.random.default_rng(4)
    W = _well_spread_embeddings(rng)
    W[:, 2] = 0.0  # a dimension the model never uses
    tokens = rng.integers(0, len(W), 500)
    with pytest.raises(SingularCovarianceError, match=r"dimension\(s\) \[2\] have zero variance"):
        analysis.embedding_stats_from_tokens(W, tokens)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConditioningWarning)
        stats = analysis.embedding_stats_from_tokens(W, tokens, ridge=1e-3)
    np.testing.assert_allclose(stats.cholesky @ stats.cholesky.T,
                               np.cov(W[tokens].T) + 1e-3 * np.eye(5), atol=1e-12)
    assert stats.metadata["ridge"] == 1e-3


def test_collinear_embeddings_are_numerically_singular():
    rng = np.random.default_rng(5)
    W = _well_spread_embeddings(rng)
    W[:, 4] = W[:, 0] + W[:, 1]  # rank-deficient, no zero column
    with pytest.raises(SingularCovarianceError, match="numerically singular|not positive definite"):
        analysis.embedding_stats_from_tokens(W, rng.integers(0, len(W), 500))


def test_badly_conditioned_whitening_warns():
    rng = np.random.default_rng(6)
    W = rng.normal(size=(50, 4)) * np.array([1.0, 1.0, 1.0, 1e-3])
    with pytest.warns(ConditioningWarning, match="condition number"):
        stats = analysis.embedding_stats_from_tokens(W, rng.integers(0, 50, 1000))
    assert not stats.checks.well_conditioned
    assert "WARNING" in stats.checks.format()


# --- normalisation = gradient with respect to whitened input (chain rule, autograd) -------------


def test_svd_of_GL_equals_svd_of_gradient_wrt_whitened_input():
    torch.manual_seed(0)
    rng = np.random.default_rng(7)
    E, H, T = 4, 6, 5
    W = _well_spread_embeddings(rng, V=30, E=E)
    stats = analysis.embedding_stats_from_tokens(W, rng.integers(0, 30, 400))
    lstm = torch.nn.LSTM(E, H).double()
    tokens = rng.integers(0, 30, T)
    X = torch.tensor(W[tokens])
    mu, L, Z = (torch.tensor(a) for a in (stats.mean, stats.cholesky, stats.whitening))

    def state_at(x_seq):
        _, (_, c) = lstm(x_seq[:, None, :])
        return c[0, 0]

    D = 3
    G = np.zeros((D, H, E))  # Gbar_d over the starts t with t + d = T - 1
    dSdz = np.zeros((D, H, E))
    for d in range(D):
        t = T - 1 - d
        G[d] = torch.autograd.functional.jacobian(
            lambda xt, t=t: state_at(torch.cat([X[:t], xt[None], X[t + 1:]])), X[t]).numpy()
        z_t = Z @ (X[t] - mu)  # the whitened input, and the input rebuilt from it
        dSdz[d] = torch.autograd.functional.jacobian(
            lambda zt, t=t: state_at(torch.cat([X[:t], (mu + L @ zt)[None], X[t + 1:]])),
            z_t).numpy()
    np.testing.assert_allclose(G @ stats.cholesky, dSdz, atol=1e-12)

    result = GradientResult(sums=G[:, None], counts=np.ones((D, 1), dtype=int), classes=["all"],
                            vocab=[], metadata={})
    table = analysis.singular_value_table(result, normalize=stats, top=3)
    for d in range(D):
        s = np.linalg.svd(dSdz[d], compute_uv=False)
        row = table.rows[d]
        np.testing.assert_allclose([row["sv_1"], row["sv_2"], row["sv_3"]], s[:3], rtol=1e-10)
        assert row["sum"] == pytest.approx(s.sum(), rel=1e-10)
    raw = analysis.singular_value_table(result, top=2)
    assert raw.rows[1]["sv_1"] == pytest.approx(np.linalg.svd(G[1], compute_uv=False)[0])
    assert not raw.normalized and table.normalized


# --- singular value tables ---------------------------------------------------------------------


def test_singular_value_table_matches_numpy_and_reports_empty_cells(tmp_path):
    rng = np.random.default_rng(8)
    result = _random_result(rng, empty=[(2, 1)])
    L = np.linalg.cholesky(np.cov(rng.normal(size=(5, 60))))
    table = analysis.singular_value_table(result, normalize=L, top=4)
    assert len(table.rows) == 4 * 3
    for row in table.rows:
        if (row["delay"], row["class"]) == (2, "nouns"):
            assert row["count"] == 0 and row["sv_1"] is None and row["sum"] is None
            continue
        G = result.sums[row["delay"], result.classes.index(row["class"])] / row["count"]
        s = np.linalg.svd(G @ L, compute_uv=False)
        np.testing.assert_allclose([row[f"sv_{i}"] for i in range(1, 5)], s[:4], rtol=1e-12)
        assert row["sum"] == pytest.approx(s.sum(), rel=1e-12)
    assert table.empty == [("nouns", 2)]
    text = table.format()
    assert "no occurrences at delay(s) 2" in text and "nan" not in text.lower()

    with open(table.to_csv(tmp_path / "t.csv")) as handle:
        rows = list(csv.DictReader(handle))
    assert rows[0].keys() >= {"class", "delay", "count", "sv_1", "sv_4", "sum"}
    empty_row = next(r for r in rows if r["class"] == "nouns" and r["delay"] == "2")
    assert empty_row["sv_1"] == "" and empty_row["count"] == "0"
    data = json.loads(table.to_json(tmp_path / "t.json").read_text())
    assert data["empty"] == [["nouns", 2]] and data["normalized"] is True
    assert data["rows"][0]["sv_1"] == pytest.approx(table.rows[0]["sv_1"])


def test_spectrum_gives_full_svd_and_single_cells_raise_on_empty():
    rng = np.random.default_rng(9)
    result = _random_result(rng, empty=[(1, 2)])
    sp = analysis.spectrum(result, 3, "verbs")
    G = result.mean(3, "verbs")
    np.testing.assert_allclose(sp.left_vectors * sp.singular_values @ sp.right_vectors, G,
                               atol=1e-12)
    assert sp.right_vectors.shape == (5, 5) and sp.count == result.count(3, "verbs")
    with pytest.raises(EmptyClassError, match="verbs"):
        analysis.spectrum(result, 1, "verbs")
    assert analysis.spectra(result, "verbs")[1] is None
    with pytest.raises(AnalysisError, match="embedding size 5"):
        analysis.singular_value_table(result, normalize=np.eye(4))
    with pytest.raises(AnalysisError, match="top"):
        analysis.singular_value_table(result, top=6)


# --- memory curves -------------------------------------------------------------------------------


def test_memory_span_definition_and_edge_cases():
    counts = np.ones(6, dtype=int)
    span = analysis.memory_span(np.array([10.0, 5.0, 1.1, 0.9, 2.0, 0.1]), counts, 0.1)
    assert (span.delay, span.status, span.threshold) == (3, "falls", 1.0)
    exact = analysis.memory_span(np.array([10.0, 1.0, 0.5]), np.ones(3, dtype=int), 0.1)
    assert exact.delay == 2  # "below" is strict: 1.0 is not below 1.0
    never = analysis.memory_span(np.array([10.0, 9.0, 8.0]), np.ones(3, dtype=int), 0.1)
    assert never.status == "never" and never.delay is None and never.format() == "never"
    # a delay without occurrences is skipped, never taken as a fall
    skipped = analysis.memory_span(np.array([10.0, np.nan, 0.5]), np.array([4, 0, 3]), 0.1)
    assert skipped.delay == 2
    undefined = analysis.memory_span(np.array([np.nan, 1.0]), np.array([0, 3]), 0.1)
    assert undefined.status == "undefined" and undefined.format() == "undefined"
    with pytest.raises(AnalysisError, match="fraction"):
        analysis.memory_span(np.ones(3), np.ones(3), 1.5)


def test_memory_curves_sum_singular_values_per_class(tmp_path):
    rng = np.random.default_rng(10)
    D, H, E = 6, 4, 3
    base = rng.normal(size=(H, E))
    decay = np.array([1.0, 0.6, 0.3, 0.05, 0.02, 0.01])
    sums = np.stack([np.stack([base * a, base * a * 2]) for a in decay]) * 3
    counts = np.full((D, 2), 3)
    counts[4, 1] = 0
    sums[4, 1] = 0
    result = GradientResult(sums=sums, counts=counts, classes=["all", "x"], vocab=[], metadata={})
    report = analysis.memory_curves(result, fraction=0.1)
    s0 = np.linalg.svd(base, compute_uv=False).sum()
    np.testing.assert_allclose(report.curve("all").totals, s0 * decay, rtol=1e-12)
    assert report.curve("all").span.delay == 3
    assert report.curve("x").totals[4] is None and report.curve("x").empty_delays == [4]
    assert report.curve("x").span.delay == 3
    text = report.format()
    assert "class 'x' has no occurrences at delay(s) 4" in text
    data = json.loads(report.to_json(tmp_path / "m.json").read_text())
    assert data["spans"][0]["span"] == 3 and data["spans"][1]["empty_delays"] == [4]
    assert report.to_csv(tmp_path / "m.csv").read_text().startswith("class,delay,count,sum,sv_1")


def test_memory_span_that_never_falls_says_never(tmp_path):
    # Singular-value sums 10, 9, 8 (a rank-1 mean gradient): never below 0.1 x 10.
    sums = np.zeros((3, 1, 2, 2))
    sums[:, 0, 0, 0] = [10.0, 9.0, 8.0]
    result = GradientResult(sums=sums, counts=np.ones((3, 1), dtype=int), classes=["all"],
                            vocab=[], metadata={})
    report = analysis.memory_curves(result, fraction=0.1)
    span_line = [ln for ln in report.format().splitlines() if ln.strip().startswith("all")]
    assert span_line and span_line[-1].split()[-1] == "never"
    assert ">2" not in report.format()
    data = json.loads(report.to_json(tmp_path / "m.json").read_text())
    assert data["spans"][0]["status"] == "never" and data["spans"][0]["span"] is None


@pytest.mark.parametrize("n_classes", [2, 14])
def test_memory_table_shows_every_interval_for_any_number_of_classes(n_classes, monkeypatch):
    from stategrad.analysis.memory import MemoryCurve, MemoryReport
    from stategrad.analysis.memory_stats import CurveStats

    monkeypatch.setenv("COLUMNS", "80")
    curves = []
    for k in range(n_classes):
        totals = [10.0 / (d + 1) ** (1 + k / 10) for d in range(4)]
        span = analysis.memory_span(np.array(totals), np.ones(4), 0.1)
        curves.append(MemoryCurve(
            f"class_{k}", list(range(4)), [3] * 4, totals, totals, span,
            [t * 0.9 for t in totals], [t * 1.1 for t in totals],
            CurveStats(span_lower=1, span_upper=2)))
    text = MemoryReport(False, 0.1, curves, "jackknife", 0.95).format()
    assert "][" not in text and "…" not in text
    assert max(len(line) for line in text.splitlines()) <= 80
    for c in curves:
        assert c.class_name in text
        for lo, hi in zip(c.lower, c.upper, strict=True):
            assert f"[{lo:.3g}, {hi:.3g}]" in text


# --- difference vectors, relative memory, subspace cosine ------------------------------------


def test_difference_vectors_by_types_and_by_tokens():
    rng = np.random.default_rng(11)
    W = rng.normal(size=(10, 3))
    a, b = [1, 2, 5], [0, 7]
    v = analysis.difference_vector(W, a, b)
    np.testing.assert_allclose(v.vector, W[a].mean(0) - W[b].mean(0))
    tokens = np.array([1, 1, 1, 2, 5, 0, 7, 7, 3, 3])
    counts = np.bincount(tokens, minlength=10)
    vt = analysis.difference_vector(W, a, b, token_counts=counts)
    in_a = np.isin(tokens, a)
    in_b = np.isin(tokens, b)
    np.testing.assert_allclose(vt.vector, W[tokens[in_a]].mean(0) - W[tokens[in_b]].mean(0))
    assert vt.n_tokens == (5, 3) and vt.weighting == "tokens"
    mask = np.zeros(10, dtype=bool)
    mask[a] = True
    np.testing.assert_allclose(analysis.mean_embedding(W, mask)[0], W[a].mean(0))
    ids, missing = analysis.word_ids(["x", "y", "z"], ["z", "q", "x"])
    assert ids.tolist() == [2, 0] and missing == ["q"]
    with pytest.raises(AnalysisError, match="empty"):
        analysis.difference_vector(W, [], b)
    with pytest.raises(AnalysisError, match="occurs"):
        analysis.difference_vector(W, [4, 6], b, token_counts=counts)


def test_relative_memory_and_subspace_cosine_match_definitions():
    rng = np.random.default_rng(12)
    result = _random_result(rng, D=4, C=3, H=7, E=5, empty=[(3, 2)])
    W = _well_spread_embeddings(rng)
    stats = analysis.embedding_stats_from_tokens(W, rng.integers(0, len(W), 600))
    v = rng.normal(size=5)
    table = analysis.relative_memory(result, v, stats, c="verbs", top_k=2)
    n = stats.whitening @ v / np.linalg.norm(stats.whitening @ v)
    for row in table.rows[:3]:
        Gn = result.mean(row["delay"], "verbs") @ stats.cholesky
        _, s, vh = np.linalg.svd(Gn)
        assert row["relative"] == pytest.approx(np.linalg.norm(Gn @ n) / s[0], rel=1e-12)
        assert row["cosine"] == pytest.approx(np.linalg.norm(vh[:2] @ n), rel=1e-12)
        assert row["share"] == pytest.approx(s[:2].sum() / s.sum(), rel=1e-12)
        assert 0 <= row["relative"] <= 1 + 1e-12 and 0 <= row["cosine"] <= 1 + 1e-12
    assert table.rows[3]["relative"] is None and table.empty == [("verbs", 3)]
    assert "no occurrences at delay(s) 3" in table.format()
    text = table.format()
    # the share column is explained under the table, and shows the same numbers
    assert "share: the part of the sum of all singular values that the top 2 hold" in text
    lines = text.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:1] == ["delay"])
    for row, line in zip(table.rows[:3], lines[header + 2:header + 5], strict=True):
        assert line.split()[0] == str(row["delay"])
        assert float(line.split()[-1]) == pytest.approx(row["share"], rel=1e-4)


def test_relative_memory_is_one_along_the_best_kept_direction():
    rng = np.random.default_rng(13)
    result = _random_result(rng, D=2, C=1, H=6, E=4)
    W = _well_spread_embeddings(rng, E=4)
    stats = analysis.embedding_stats_from_tokens(W, rng.integers(0, len(W), 300))
    top = analysis.spectrum(result, 0, normalize=stats).right_vectors[0]
    v = stats.cholesky @ top * 3.7  # the embedding-space difference whose whitened direction is v_1
    row = analysis.relative_memory(result, v, stats, top_k=1).rows[0]
    assert row["relative"] == pytest.approx(1.0, abs=1e-10)
    assert row["cosine"] == pytest.approx(1.0, abs=1e-10)
    with pytest.raises(AnalysisError, match="zero"):
        analysis.relative_memory(result, np.zeros(4), stats, top_k=1)
    with pytest.raises(AnalysisError, match="top_k"):
        analysis.relative_memory(result, v, stats, top_k=5)


def test_class_difference_vector_from_class_set():
    from stategrad.data import ClassSet

    vocab = Vocabulary(("cat", "cats", "dog", "dogs", "run"))
    cs = ClassSet.from_tag_map(vocab, {"cat": ["NN"], "dog": ["NN"], "cats": ["NNS"],
                                       "dogs": ["NNS", "VBZ"], "run": ["VB"]},
                               {"NN": ["NN"], "NNS": ["NNS"]})
    W = np.arange(15, dtype=float).reshape(5, 3) ** 1.5
    v = analysis.class_difference_vector(W, cs, "NNS", "NN")
    np.testing.assert_allclose(v.vector, W[[1, 3]].mean(0) - W[[0, 2]].mean(0))
    assert v.label == "NNS - NN"


def test_words_in_both_sets_are_dropped_unless_kept():
    rng = np.random.default_rng(21)
    W = rng.normal(size=(8, 3))
    a, b = [1, 2, 3], [3, 4]  # word 3 is in both sets
    v = analysis.difference_vector(W, a, b)
    np.testing.assert_allclose(v.vector, W[[1, 2]].mean(0) - W[[4]].mean(0))
    assert v.n_shared == 1 and v.n_words == (2, 1) and v.shared == "drop"
    kept = analysis.difference_vector(W, a, b, shared="keep")
    np.testing.assert_allclose(kept.vector, W[a].mean(0) - W[b].mean(0))
    assert kept.n_shared == 1 and kept.n_words == (3, 2)
    with pytest.raises(AnalysisError, match="every word of set B is also in the other set"):
        analysis.difference_vector(W, [1, 3], [3])
    with pytest.raises(AnalysisError, match="shared must be"):
        analysis.difference_vector(W, a, b, shared="both")


# --- model-based statistics and exports ------------------------------------------------------------


def _tiny_model(tmp_path, E=4):
    text = tmp_path / "train.txt"
    rng = np.random.default_rng(14)
    words = [f"w{i}" for i in range(12)]
    text.write_text("\n".join(" ".join(rng.choice(words, 8)) for _ in range(30)) + "\n")
    vocab = Vocabulary.build(text)
    torch.manual_seed(0)
    module = RNNLM(ModelSpec(vocab_size=len(vocab), embedding_size=E, hidden_size=5,
                             init_scale=0.5))
    save_checkpoint(tmp_path / "model.pt", module, vocab)
    return LanguageModel(module.eval(), vocab, str(tmp_path / "model.pt")), text


def test_stats_for_model_text_and_exports(tmp_path):
    from stategrad.data import read_tokens

    model, text = _tiny_model(tmp_path)
    stats = analysis.embedding_stats_for_model(model, text)
    tokens = read_tokens(text, model.vocab)
    X = model.module.embedding.weight.detach().double().numpy()[tokens]
    np.testing.assert_allclose(stats.covariance, np.cov(X.T), atol=1e-12)
    assert stats.metadata["model"]["identity"] == model.identity()
    assert stats.metadata["text"]["tokens"] == len(tokens)
    assert len(stats.metadata["text"]["sha256"]) == 64

    arr_path, dict_path = analysis.export_token_embeddings(model, tokens, tmp_path / "emb",
                                                           chunk=7)
    arr = np.load(arr_path)
    np.testing.assert_array_equal(arr, model.module.embedding.weight.detach().numpy()[tokens])
    mapping = dict(line.split("\t") for line in dict_path.read_text().splitlines())
    for word, row in mapping.items():
        assert model.vocab.words[tokens[int(row)]] == word
        assert int(row) == int(np.flatnonzero(tokens == model.vocab[word])[0])
    # the exported array is a valid input of the original's normalisation route
    back = analysis.embedding_stats_from_array(analysis.read_token_embeddings(arr_path))
    np.testing.assert_allclose(back.cholesky, stats.cholesky, atol=1e-6)

    words_path, vocab_path = analysis.export_word_embeddings(model, tmp_path / "words")
    np.testing.assert_array_equal(np.load(words_path), model.module.embedding.weight.detach().numpy())
    assert Vocabulary.load(vocab_path) == model.vocab


def test_original_save_embedding_folder_is_read_in_numeric_order(tmp_path):
    rows = np.arange(24, dtype=np.float32).reshape(12, 2)
    folder = tmp_path / "emb"
    folder.mkdir()
    for i, r in enumerate(rows):
        np.save(folder / f"{i}.npy", r)
    np.testing.assert_array_equal(analysis.read_token_embeddings(folder), rows)


# --- command line ------------------------------------------------------------------------------


def test_cli_embedding_stats_svd_memory_relative_memory(tmp_path):
    from stategrad.cli import main

    model, text = _tiny_model(tmp_path)
    runner = CliRunner()
    out = runner.invoke(main, ["embedding-stats", "--model", str(tmp_path / "model.pt"),
                               "--text", str(text), "--out", str(tmp_path / "stats.npz"),
                               "--legacy-prefix", str(tmp_path / "leg")])
    assert out.exit_code == 0, out.output
    assert "condition number of Z" in out.output
    assert (tmp_path / "leg_D_norm_grad.npy").is_file()
    stats = analysis.load_embedding_stats(tmp_path / "stats.npz")

    rng = np.random.default_rng(15)
    sums = rng.normal(size=(3, 2, 5, 4))
    counts = np.array([[4, 2], [4, 0], [3, 1]])
    sums[1, 1] = 0
    result = GradientResult(sums=sums, counts=counts, classes=["all", "low"],
                            vocab=list(model.vocab.words),
                            metadata={"model_identity": model.identity(),
                                      "class_definitions": {"all": "every word",
                                                            "low": ["w1", "w2", "w3"]}})
    result.save(tmp_path / "g.h5")
    out = runner.invoke(main, ["svd", str(tmp_path / "g.h5"), "--normalize",
                               str(tmp_path / "stats.npz"), "--top", "3",
                               "--json", str(tmp_path / "sv.json")])
    assert out.exit_code == 0, out.output
    data = json.loads((tmp_path / "sv.json").read_text())
    s = np.linalg.svd(result.mean(2, "all") @ stats.cholesky, compute_uv=False)
    assert data["rows"][2]["sv_1"] == pytest.approx(s[0])
    assert "'low' has no occurrences at delay(s) 1" in out.output

    out = runner.invoke(main, ["memory", str(tmp_path / "g.h5"), "--fraction", "0.5"])
    assert out.exit_code == 0, out.output
    assert "memory span" in out.output
    # Intervals need per-block sums; this result has none, and the error says what to do.
    out = runner.invoke(main, ["memory", str(tmp_path / "g.h5"), "--ci", "jackknife"])
    assert out.exit_code != 0 and "no per-block sums" in out.output
    assert f"Error: {tmp_path / 'g.h5'}: " in out.output  # the message names the result

    out = runner.invoke(main, ["relative-memory", str(tmp_path / "g.h5"), "--normalize",
                               str(tmp_path / "stats.npz"), "--model", str(tmp_path / "model.pt"),
                               "--diff", "low", "words:" + str(_words_file(tmp_path)),
                               "--top-k", "2", "--json", str(tmp_path / "rm.json")])
    assert out.exit_code == 0, out.output
    W = model.module.embedding.weight.detach().double().numpy()
    ids = [model.vocab[w] for w in ("w1", "w2", "w3")]
    v = W[ids].mean(0) - W[[model.vocab["w7"], model.vocab["w8"]]].mean(0)
    expected = analysis.relative_memory(result, v, stats, top_k=2)
    rows = json.loads((tmp_path / "rm.json").read_text())["rows"]
    assert rows[0]["relative"] == pytest.approx(expected.rows[0]["relative"], rel=1e-9)

    bad = runner.invoke(main, ["embedding-stats", "--embeddings", str(_few_tokens(tmp_path)),
                               "--out", str(tmp_path / "x.npz")])
    assert bad.exit_code != 0 and "distinct word" in bad.output


def _words_file(tmp_path):
    p = tmp_path / "b.words"
    p.write_text("w7\nw8\nnot_a_word\n")
    return p


def _few_tokens(tmp_path):
    p = tmp_path / "few.npy"
    np.save(p, np.array([[1.0, 2.0, 3.0], [2.0, 1.0, 0.0], [1.0, 2.0, 3.0]]))
    return p


def test_stats_dataclass_whiten_shape():
    rng = np.random.default_rng(16)
    W = _well_spread_embeddings(rng)
    stats = analysis.embedding_stats_from_tokens(W, rng.integers(0, len(W), 200))
    assert isinstance(stats, EmbeddingStats)
    z = stats.whiten(W[:3])
    np.testing.assert_allclose(z, (W[:3] - stats.mean) @ stats.whitening.T)
    np.testing.assert_allclose(stats.whiten(W[0]), z[0])


# --- one normaliser keyword, one whitening of a direction ------------------------------------


def test_whitened_direction_takes_z_statistics_l_or_a_file_and_stacks_of_vectors(tmp_path):
    from scipy.linalg import solve_triangular

    rng = np.random.default_rng(21)
    W = _well_spread_embeddings(rng)
    stats = analysis.embedding_stats_from_tokens(W, rng.integers(0, len(W), size=400))
    stats.save(tmp_path / "stats.npz")
    v = rng.normal(size=(3, W.shape[1]))
    expected = solve_triangular(stats.cholesky, v.T, lower=True).T
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    n0 = analysis.whitened_direction(v[0], stats.whitening)  # the old form: Z itself
    assert n0.shape == (W.shape[1],)
    np.testing.assert_allclose(n0, expected[0], rtol=1e-10)
    for normalize in (stats, stats.cholesky, tmp_path / "stats.npz"):
        np.testing.assert_allclose(analysis.whitened_direction(v, normalize=normalize), expected,
                                   rtol=1e-10)
    np.testing.assert_allclose(analysis.whitened_direction(v),
                               v / np.linalg.norm(v, axis=1, keepdims=True))
    with pytest.raises(AnalysisError, match="zero"):
        analysis.whitened_direction(np.zeros((2, W.shape[1])), normalize=stats)
    with pytest.raises(TypeError):
        analysis.whitened_direction(v[0], stats.whitening, normalize=stats)


def test_old_normaliser_keywords_still_work_with_a_deprecation_warning():
    rng = np.random.default_rng(22)
    result = _random_result(rng, E=4)
    stats = analysis.embedding_stats_from_array(rng.normal(size=(300, 4)))
    v = rng.normal(size=4)
    new = analysis.relative_memory(result, v, normalize=stats, top_k=2)
    assert analysis.relative_memory(result, v, stats, top_k=2).rows == new.rows
    with pytest.warns(DeprecationWarning, match="stats= is deprecated"):
        assert analysis.relative_memory(result, v, stats=stats, top_k=2).rows == new.rows
    M = result.mean(0, "all")
    with pytest.warns(DeprecationWarning, match="L= is deprecated"):
        old = analysis.singular_values(L=stats.cholesky)(M)
    np.testing.assert_array_equal(old, analysis.singular_values(normalize=stats)(M))
    n = analysis.whitened_direction(v, normalize=stats)[None]
    with pytest.warns(DeprecationWarning):
        old = analysis.direction_statistic(n, L=stats.cholesky, k=2)(M)
    np.testing.assert_array_equal(old, analysis.direction_statistic(n, stats, 2)(M))
    with pytest.raises(TypeError):
        analysis.singular_values(stats, L=stats.cholesky)


def test_memory_curve_arrays_are_the_memory_curves():
    rng = np.random.default_rng(23)
    result = _random_result(rng, empty=[(2, 1)])
    report = analysis.memory_curves(result, fraction=0.5)
    arrays = analysis.memory_curve_arrays(result, fraction=0.5)
    assert list(arrays) == result.classes
    nouns = arrays["nouns"]
    np.testing.assert_array_equal(nouns.delays, np.arange(4))
    assert nouns.counts[2] == 0 and np.isnan(nouns.totals[2])
    curve = report.curve("nouns")
    assert [t for t in nouns.totals if not np.isnan(t)] == [t for t in curve.totals if t is not None]
    assert nouns.lower is None and nouns.span == curve.span
