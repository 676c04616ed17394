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


# --- the noise floor of identity memory ----------------------------------------------------


def test_identity_floor_is_the_sign_flip_quantile_of_the_identity_statistic():
    # Direct numpy: random signs on the block deviations, sqrt(B / (B - 1)) / n, then the
    # sum of the singular values of M L P; the floor is their 95% quantile per delay.
    from stategrad.analysis import identity_floor

    res = _blocked(B=7, D=3, H=4, E=5, seed=3)
    rng = np.random.default_rng(4)
    W = rng.normal(size=(10, 5))
    A = rng.normal(size=(5, 5))
    L = np.linalg.cholesky(A @ A.T + np.eye(5))
    P = class_subspace(W, [0, 2, 5], np.linalg.inv(L))
    nf = identity_floor(res, "a", P, L, n_flips=50, seed=9, simultaneous=False)
    B = res.n_blocks
    signs = np.random.default_rng(9).choice([-1.0, 1.0], size=(50, B))
    signs = signs[np.abs(signs.sum(axis=1)) < B]  # one sign on every block: the mean itself
    for d in range(3):
        bs, bc = res.block_sums[:, d, 1], res.block_counts[:, d, 1]
        n = bc.sum()
        mean = bs.sum(0) / n
        dev = bs - bc[:, None, None] * mean
        draws = [np.linalg.svd(np.tensordot(s, dev, 1) * np.sqrt(B / (B - 1)) / n @ L @ P,
                               compute_uv=False).sum() for s in signs]
        assert nf.floor[d, 0, 0] == pytest.approx(np.quantile(draws, 0.95, method="higher"),
                                                  rel=1e-9)
        est = np.linalg.svd(mean @ L @ P, compute_uv=False).sum()
        assert nf.estimate[d, 0, 0] == pytest.approx(est, rel=1e-9)


def _planted(rng, keep: int, B=10, per=30, D=7, H=6, E=4, sigma=1.0) -> GradientResult:
    """Class "mem" keeps the identity directions (the first two embedding axes) up to delay
    ``keep``; class "none" keeps them only at delay 0; both carry a shared direction (axis
    3) at every delay, which identity memory must not count.  Noise sigma per gradient."""
    mu = np.zeros((D, 2, H, E))
    ident = rng.normal(size=(H, 2))
    shared = rng.normal(size=H)
    for c, last in ((0, keep), (1, 0)):
        mu[:last + 1, c, :, :2] = ident
        mu[:, c, :, 3] = 3.0 * shared
    n = np.full((B, D, 2), per)
    noise = rng.normal(size=(B, D, 2, H, E)) * np.sqrt(per) * sigma
    bs = n[..., None, None] * mu[None] + noise
    return GradientResult(bs.sum(0), n.sum(0), ["mem", "none"], ["w"] * 6, {},
                          block_sums=bs, block_counts=n, block_starts=np.arange(B) * 100)


def test_identity_floor_tells_planted_memory_from_none():
    # Coverage: over independent texts, the class without identity memory falls within its
    # (simultaneous 95%) floor from delay 1 in nearly every text; the one that keeps its
    # identity to delay 3 clears it at 1..3 and is within it from delay 4 on mostly.
    W = np.zeros((6, 4))
    W[[0, 1, 2], :2] = [[1, 0], [0, 1], [-1, -1]]  # the class's words differ on axes 0-1
    W[:, 3] = 1.0  # ... and share axis 3
    clear, quiet, located = [], [], []
    for seed in range(40):
        rng = np.random.default_rng(seed)
        res = _planted(rng, keep=3)
        table = identity_table(res, W, {"mem": [0, 1, 2], "none": [0, 1, 2]}, floor=True,
                               n_flips=100, seed=seed)
        above = {c: [r["above_floor"] for r in table.rows if r["class"] == c]
                 for c in ("mem", "none")}
        clear.append(all(above["mem"][1:4]))
        quiet.append(table.noise_from["none"] == 1)
        located.append(table.noise_from["mem"] == 4)
    assert np.mean(clear) >= 0.95
    assert np.mean(quiet) >= 0.85  # nominal: at least 95%, minus draw noise
    assert np.mean(located) >= 0.85


def test_noise_from_is_where_the_curve_stays_within_its_floor():
    from stategrad.analysis import noise_from

    assert noise_from([True, True, False, True, False, False]) == 4
    assert noise_from([True, False, False]) == 1
    assert noise_from([True, False, True]) is None  # above at the last delay
    assert noise_from([True, True, None, False, None]) == 3  # no floor: not judged
    assert noise_from([True]) is None


def test_identity_table_with_floor_marks_noise_and_writes_its_keys(tmp_path):
    rng = np.random.default_rng(5)
    res = _planted(rng, keep=2)
    W = np.zeros((6, 4))
    W[[0, 1, 2], :2] = [[1, 0], [0, 1], [-1, -1]]
    table = identity_table(res, W, {"mem": [0, 1, 2], "none": [0, 1, 2]}, floor=True,
                           n_flips=60)
    text = table.format()
    assert "~" in text and "within its noise floor from delay" in text
    data = json.loads(table.to_json(tmp_path / "id.json").read_text())
    assert data["floor"] is True
    assert set(data["noise_from"]) == {"mem", "none"}
    assert all({"floor_level", "above_floor"} <= set(r) for r in data["rows"])
    # Without a floor the keys are absent, and a result without blocks cannot have one.
    plain = identity_table(res, W, {"mem": [0, 1, 2]})
    assert "floor_level" not in plain.rows[0] and plain.noise_from is None
    bare = GradientResult(res.sums, res.counts, res.classes, res.vocab, {})
    with pytest.raises(Exception, match="blocks"):
        identity_table(bare, W, {"mem": [0, 1, 2]}, floor=True)


def _cli_setup(tmp_path):
    """A tiny model, its statistics, and a blocked result of class "low" (w1..w3) saved
    as g.h5, for the command-line tests."""
    from click.testing import CliRunner
    from test_analysis import _tiny_model

    from stategrad.cli import main

    model, text = _tiny_model(tmp_path)
    runner = CliRunner()
    out = runner.invoke(main, ["embedding-stats", "--model", str(tmp_path / "model.pt"),
                               "--text", str(text), "--out", str(tmp_path / "stats.npz")])
    assert out.exit_code == 0, out.output
    rng = np.random.default_rng(16)
    bc = np.full((6, 3, 2), 5)
    bs = rng.normal(size=(6, 3, 2, 5, 4)) * 5
    result = GradientResult(sums=bs.sum(0), counts=bc.sum(0), classes=["all", "low"],
                            vocab=list(model.vocab.words), block_sums=bs, block_counts=bc,
                            block_starts=np.arange(6) * 10,
                            metadata={"model_identity": model.identity(),
                                      "class_definitions": {"all": "every word",
                                                            "low": ["w1", "w2", "w3"]}})
    result.save(tmp_path / "g.h5")
    return runner, main, result, model


def test_memory_identity_floor_on_the_command_line(tmp_path):
    runner, main, result, model = _cli_setup(tmp_path)
    base = ["memory", str(tmp_path / "g.h5"), "--normalize", str(tmp_path / "stats.npz"),
            "--classes", "low", "--model", str(tmp_path / "model.pt"), "--measure", "identity"]
    for extra in (["--floor"], ["--ci", "jackknife"]):
        out = runner.invoke(main, base + extra + ["--n-flips", "40",
                                                  "--json", str(tmp_path / "id.json")])
        assert out.exit_code == 0, out.output
        assert "within its noise floor from delay" in out.output
        data = json.loads((tmp_path / "id.json").read_text())
        assert data["measure"] == "identity" and data["floor"] is True
        assert set(data["noise_from"]) == {"low"}
        assert all(r["floor_level"] is not None and isinstance(r["above_floor"], bool)
                   for r in data["rows"])
    out = runner.invoke(main, base + ["--ci", "jackknife", "--no-floor", "--json",
                                      str(tmp_path / "id.json")])
    assert out.exit_code == 0, out.output
    assert "floor_level" not in json.loads((tmp_path / "id.json").read_text())["rows"][0]


def test_memory_defaults_to_identity_with_a_model_and_says_which_measure(tmp_path):
    runner, main, result, model = _cli_setup(tmp_path)
    base = ["memory", str(tmp_path / "g.h5"), "--normalize", str(tmp_path / "stats.npz"),
            "--classes", "low"]
    model_args = ["--model", str(tmp_path / "model.pt")]

    def run(args):
        out = runner.invoke(main, base + args + ["--json", str(tmp_path / "m.json")])
        assert out.exit_code == 0, out.output
        return out.output, json.loads((tmp_path / "m.json").read_text())

    text, data = run(model_args)  # a model: identity memory
    assert data["measure"] == "identity" and text.startswith("identity memory")
    text, data = run([])  # no model: the papers' measure, and the header says why
    assert data["measure"] == "papers"
    first = text.splitlines()[0]
    assert "papers" in first and "--model" in first
    assert "memory curves (the papers' measure)" in text
    papers, data_p = run(model_args + ["--measure", "papers"])  # asked for: no fallback note
    assert data_p["measure"] == "papers" and papers.startswith("memory curves (the papers'")
    alias, data_a = run(model_args + ["--measure", "memory"])  # the older name
    assert data_a == data_p
    # Options of the papers' measure only, with identity asked for: a usage error.
    out = runner.invoke(main, base + model_args + ["--measure", "identity", "--compare", "low",
                                                   "all"])
    assert out.exit_code == 2 and "--measure papers" in out.output
    # ... and with a model but no --measure they pick the papers' measure.
    out = runner.invoke(main, base[:2] + model_args + ["--compare", "low", "all"])
    assert out.exit_code == 0, out.output
    assert "--measure" in runner.invoke(main, ["memory", "--help"]).output
