"""Identity memory (analysis.identity): the basis, the curve, the table and its bands."""

from __future__ import annotations

import json

import numpy as np
import pytest

from stategrad.analysis import (
    AnalysisError,
    class_subspace,
    identity_memory,
    identity_table,
)
from stategrad.gradients import GradientResult


def test_class_subspace_spans_within_class_differences():
    rng = np.random.default_rng(0)
    W = rng.normal(size=(10, 6))
    ids = [1, 4, 7]
    P = class_subspace(W, ids)
    assert P.shape == (6, 2)  # 3 words differ along 2 directions
    np.testing.assert_allclose(P.T @ P, np.eye(2), atol=1e-12)
    dev = W[ids] - W[ids].mean(0)
    np.testing.assert_allclose(dev @ P @ P.T, dev, atol=1e-12)  # every difference inside
    # Whitened: the span of Z (x - mean).
    A = rng.normal(size=(6, 6))
    Z = np.linalg.inv(np.linalg.cholesky(A @ A.T + np.eye(6)))
    Pw = class_subspace(W, ids, Z)
    np.testing.assert_allclose((dev @ Z.T) @ Pw @ Pw.T, dev @ Z.T, atol=1e-10)
    with pytest.raises(AnalysisError, match="two words"):
        class_subspace(W, [3])



def _result(D=4, H=5, E=6, seed=0) -> GradientResult:
    rng = np.random.default_rng(seed)
    counts = rng.integers(1, 9, size=(D, 3))
    counts[2, 2] = 0  # an empty cell
    sums = rng.normal(size=(D, 3, H, E)) * counts[..., None, None]
    sums[2, 2] = 0
    return GradientResult(sums, counts, ["all", "a", "b"], ["x"] * 10, {})


def test_identity_memory_is_the_nuclear_norm_of_the_projected_mean():
    res = _result()
    rng = np.random.default_rng(1)
    P = np.linalg.qr(rng.normal(size=(6, 3)))[0]
    A = rng.normal(size=(6, 6))
    L = np.linalg.cholesky(A @ A.T + np.eye(6))
    got = identity_memory(res, "b", P, L)
    for d in range(4):
        if d == 2:
            assert np.isnan(got[d])  # no occurrence: no value, never a silent zero
            continue
        G = res.sums[d, 2] / res.counts[d, 2]
        want = np.abs(np.linalg.eigvalsh((G @ L @ P).T @ (G @ L @ P))) ** 0.5
        assert got[d] == pytest.approx(want.sum(), rel=1e-10)
    raw = identity_memory(res, "a", P)
    G0 = res.sums[0, 1] / res.counts[0, 1]
    assert raw[0] == pytest.approx(np.linalg.svd(G0 @ P, compute_uv=False).sum(), rel=1e-12)




def _blocked(B=6, D=3, H=4, E=5, seed=0) -> GradientResult:
    """A result with per-block sums (every block has occurrences of every class)."""
    rng = np.random.default_rng(seed)
    bc = rng.integers(3, 9, size=(B, D, 2))
    bs = rng.normal(size=(B, D, 2, H, E)) * bc[..., None, None] + 2.0 * bc[..., None, None]
    res = GradientResult(bs.sum(0), bc.sum(0), ["all", "a"], ["w"] * 10, {},
                         block_sums=bs, block_counts=bc,
                         block_starts=np.arange(B) * 100)
    return res


def test_identity_table_matches_the_curve_and_writes_its_rows(tmp_path):
    res = _blocked()
    rng = np.random.default_rng(2)
    W = rng.normal(size=(10, 5))
    A = rng.normal(size=(5, 5))
    L = np.linalg.cholesky(A @ A.T + np.eye(5))
    table = identity_table(res, W, {"a": [1, 3, 6]}, L, interval="jackknife")
    want = identity_memory(res, "a", class_subspace(W, [1, 3, 6], np.linalg.inv(L)), L)
    np.testing.assert_allclose(table.curve("a"), want, rtol=1e-10)
    np.testing.assert_allclose(table.curve("a", "identity_ratio"), want / want[0], rtol=1e-10)
    for r in table.rows:
        assert r["rank"] == 2
        assert r["identity_lower"] <= r["identity"] <= r["identity_upper"]
    # The jackknife band is estimate -+ z * se, the se from delete-one-block curves.
    basis = class_subspace(W, [1, 3, 6], np.linalg.inv(L))
    d = 1
    loo = []
    for b in range(res.n_blocks):
        keep = np.arange(res.n_blocks) != b
        m = res.block_sums[keep, d, 1].sum(0) / res.block_counts[keep, d, 1].sum()
        loo.append(np.linalg.svd(m @ L @ basis, compute_uv=False).sum())
    loo = np.array(loo)
    B = res.n_blocks
    se = np.sqrt((B - 1) / B * ((loo - loo.mean()) ** 2).sum())
    row = table.rows[d]
    half = (row["identity_upper"] - row["identity_lower"]) / 2
    assert 1.9 < half / se < 2.7  # a z or t quantile at 95%
    assert "identity memory" in table.format()
    data = json.loads(table.to_json(tmp_path / "id.json").read_text())
    assert data["measure"] == "identity" and len(data["rows"]) == 3
    assert set(data["rows"][0]) >= {"class", "delay", "count", "identity", "identity_ratio",
                                     "identity_lower", "identity_upper"}
    table.to_csv(tmp_path / "id.csv")
    assert (tmp_path / "id.csv").read_text().splitlines()[0].startswith("class,delay,count")


def test_identity_table_refuses_a_one_word_class_naming_it():
    res = _blocked()
    with pytest.raises(AnalysisError, match="class 'a'.*two words"):
        identity_table(res, np.eye(10, 5), {"a": [2]})


def test_memory_measure_identity_on_the_command_line(tmp_path):
    from click.testing import CliRunner
    from test_analysis import _tiny_model

    from stategrad import analysis
    from stategrad.cli import main

    model, text = _tiny_model(tmp_path)
    runner = CliRunner()
    out = runner.invoke(main, ["embedding-stats", "--model", str(tmp_path / "model.pt"),
                               "--text", str(text), "--out", str(tmp_path / "stats.npz")])
    assert out.exit_code == 0, out.output
    rng = np.random.default_rng(15)
    result = GradientResult(sums=rng.normal(size=(3, 2, 5, 4)), counts=np.array([[4, 2]] * 3),
                            classes=["all", "low"], vocab=list(model.vocab.words),
                            metadata={"model_identity": model.identity(),
                                      "class_definitions": {"all": "every word",
                                                            "low": ["w1", "w2", "w3"]}})
    result.save(tmp_path / "g.h5")
    args = ["memory", str(tmp_path / "g.h5"), "--normalize", str(tmp_path / "stats.npz"),
            "--measure", "identity", "--classes", "low"]
    out = runner.invoke(main, args + ["--model", str(tmp_path / "model.pt"),
                                      "--json", str(tmp_path / "id.json")])
    assert out.exit_code == 0, out.output
    assert "identity memory" in out.output
    rows = json.loads((tmp_path / "id.json").read_text())["rows"]
    stats = analysis.load_embedding_stats(tmp_path / "stats.npz")
    W = analysis.embedding_matrix(model)
    ids = [model.vocab[w] for w in ("w1", "w2", "w3")]
    want = identity_memory(result, "low", class_subspace(W, ids, stats.whitening), stats.cholesky)
    assert [r["identity"] for r in rows] == pytest.approx(list(want), rel=1e-8)
    # Without a model there are no word embeddings: a usage error, no traceback.
    out = runner.invoke(main, args)
    assert out.exit_code == 2 and "--model" in out.output and "Traceback" not in out.output
