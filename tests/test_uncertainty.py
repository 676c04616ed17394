"""Confidence intervals from blocks: checked against analytic spreads on synthetic data."""

from __future__ import annotations

import numpy as np
import pytest
from reportdata import block_result

from stategrad.analysis import (
    UncertaintyError,
    band,
    direction_statistic,
    replicates,
    singular_values,
    sv_sum,
    top_k,
)
from stategrad.gradients import GradientResult


def _gaussian_blocks(rng, mu: np.ndarray, sigma: float, per_block: np.ndarray) -> GradientResult:
    """One delay, one class; block b holds per_block[b] i.i.d. matrices mu + sigma * N(0, 1)."""
    B = len(per_block)
    H, E = mu.shape
    n = per_block.reshape(B, 1, 1)
    sums = n[..., None, None] * mu + np.sqrt(n)[..., None, None] * sigma * rng.normal(size=(B, 1, 1, H, E))
    return GradientResult(sums=sums.sum(0), counts=n.sum(0), classes=["all"], vocab=["a"],
                          block_sums=sums, block_counts=n.astype(np.int64),
                          block_starts=np.arange(B))


def _well_separated_mu(H: int = 6, E: int = 4) -> np.ndarray:
    """A matrix with large, distinct singular values 8, 6, 4, 2: the sum of singular values
    is then, to first order, linear in the noise, with variance sigma^2 E / N."""
    rng = np.random.default_rng(7)
    U, _ = np.linalg.qr(rng.normal(size=(H, E)))
    V, _ = np.linalg.qr(rng.normal(size=(E, E)))
    return U @ np.diag([8.0, 6.0, 4.0, 2.0][:E]) @ V.T


def test_linear_statistic_equals_classical_block_formula():
    # For a linear statistic and equal blocks the jackknife variance is exactly
    # var(block means) / B (with the B - 1 denominator).
    rng = np.random.default_rng(0)
    mu = rng.normal(size=(3, 2))
    r = _gaussian_blocks(rng, mu, 1.0, np.full(10, 25))

    def entry(m):
        return m[:, :1, 0]  # (N, 1): the top-left entry of each mean

    b = band(r, entry)
    block_means = r.block_sums[:, 0, 0, 0, 0] / 25
    expected = np.sqrt(block_means.var(ddof=1) / 10)
    assert b.se[0, 0, 0] == pytest.approx(expected, rel=1e-10)
    assert b.estimate[0, 0, 0] == pytest.approx(r.sums[0, 0, 0, 0] / r.counts[0, 0], rel=1e-12)
    # Student t with B - 1 = 9 degrees of freedom (scipy.stats.t.ppf(0.975, 9)), not z = 1.96
    assert b.upper[0, 0, 0] - b.estimate[0, 0, 0] == pytest.approx(2.262157 * expected, rel=1e-5)


def test_jackknife_se_and_coverage_match_analytic_spread():
    rng = np.random.default_rng(2024)
    mu = _well_separated_mu()
    sigma, B, m = 1.0, 20, 30
    N = B * m
    true_theta = np.linalg.svd(mu, compute_uv=False).sum()
    analytic_se = sigma * np.sqrt(mu.shape[1] / N)
    ses, hits, estimates = [], 0, []
    for _ in range(300):
        r = _gaussian_blocks(rng, mu, sigma, np.full(B, m))
        b = band(r, singular_values(), sv_sum)
        ses.append(b.se[0, 0, 0])
        estimates.append(b.estimate[0, 0, 0])
        hits += b.lower[0, 0, 0] <= true_theta <= b.upper[0, 0, 0]
    # Average jackknife SE near the analytic value; the estimates really spread that much.
    assert np.mean(ses) == pytest.approx(analytic_se, rel=0.10)
    assert np.std(estimates, ddof=1) == pytest.approx(analytic_se, rel=0.15)
    # 95% nominal; 20 blocks and the normal quantile give a little less.
    assert 0.89 <= hits / 300 <= 0.985


def test_unequal_blocks_still_cover():
    rng = np.random.default_rng(5)
    mu = _well_separated_mu()
    true_theta = np.linalg.svd(mu, compute_uv=False).sum()
    per_block = rng.integers(5, 60, size=25)
    hits = 0
    for _ in range(200):
        r = _gaussian_blocks(rng, mu, 1.0, per_block)
        b = band(r, singular_values(), sv_sum)
        hits += b.lower[0, 0, 0] <= true_theta <= b.upper[0, 0, 0]
    assert 0.88 <= hits / 200 <= 0.99


def test_band_width_scales_with_number_of_occurrences():
    # 300 nouns against 30,000: a tenth of the standard error (1 / sqrt(100)).
    rng = np.random.default_rng(11)
    mu = _well_separated_mu()
    few = np.mean([band(_gaussian_blocks(rng, mu, 1.0, np.full(20, 15)), singular_values(),
                        sv_sum).se[0, 0, 0] for _ in range(40)])
    many = np.mean([band(_gaussian_blocks(rng, mu, 1.0, np.full(20, 1500)), singular_values(),
                         sv_sum).se[0, 0, 0] for _ in range(40)])
    assert few / many == pytest.approx(10.0, rel=0.2)


def test_bootstrap_se_matches_analytic():
    rng = np.random.default_rng(3)
    mu = _well_separated_mu()
    B, m = 20, 30
    analytic_se = np.sqrt(mu.shape[1] / (B * m))
    true_theta = np.linalg.svd(mu, compute_uv=False).sum()
    ses, hits = [], 0
    for seed in range(60):
        r = _gaussian_blocks(rng, mu, 1.0, np.full(B, m))
        b = band(r, singular_values(), sv_sum, method="bootstrap", n_boot=300, seed=seed)
        ses.append(b.se[0, 0, 0])
        hits += b.lower[0, 0, 0] <= true_theta <= b.upper[0, 0, 0]
        assert b.method == "bootstrap"
    # The bootstrap's plug-in variance is (B - 1) / B of the jackknife's: a little smaller.
    assert np.mean(ses) == pytest.approx(analytic_se * np.sqrt((B - 1) / B), rel=0.12)
    assert hits / 60 >= 0.8


def test_bootstrap_is_reproducible_with_seed():
    r = block_result()
    a = band(r, singular_values(), sv_sum, method="bootstrap", n_boot=50, seed=4)
    b = band(r, singular_values(), sv_sum, method="bootstrap", n_boot=50, seed=4)
    c = band(r, singular_values(), sv_sum, method="bootstrap", n_boot=50, seed=5)
    np.testing.assert_array_equal(a.lower, b.lower)
    assert not np.allclose(a.lower, c.lower, equal_nan=True)


def test_empty_cells_and_blocks_without_occurrences():
    r = block_result(D=6, per_block=(10, 4, 1), B=6)
    # "verbs" has 1 per block at delay 0..2 and none from delay 3 on (counts fall by d // 3).
    b = band(r, singular_values(), sv_sum, classes=["verbs"])
    assert np.all(np.isfinite(b.estimate[:3, 0, 0]))
    assert np.all(np.isnan(b.estimate[3:, 0, 0]))
    assert np.all(np.isnan(b.se[3:, 0, 0]))
    assert list(b.n_blocks[:, 0]) == [6, 6, 6, 0, 0, 0]
    # A block with no occurrences of the class gives no replicate: it is not counted.
    r.block_counts[2, 0, 2] = 0
    r.counts[0, 2] -= 1
    r.sums[0, 2] -= r.block_sums[2, 0, 2]
    r.block_sums[2, 0, 2] = 0.0
    b = band(r, singular_values(), sv_sum, classes=["verbs"])
    assert b.n_blocks[0, 0] == 5
    # Independent check: the jackknife over the five informative blocks only.
    thetas = []
    for k in [0, 1, 3, 4, 5]:
        m = (r.sums[0, 2] - r.block_sums[k, 0, 2]) / (r.counts[0, 2] - r.block_counts[k, 0, 2])
        thetas.append(np.linalg.svd(m, compute_uv=False).sum())
    thetas = np.array(thetas)
    expected = np.sqrt(4 / 5 * ((thetas - thetas.mean()) ** 2).sum())
    assert b.se[0, 0, 0] == pytest.approx(expected, rel=1e-10)


def test_derive_topk_consistent_with_singular_values():
    r = block_result(H=5, E=4)
    reps = replicates(r, singular_values())
    full = reps.derive()
    t2 = reps.derive(top_k(2))
    np.testing.assert_allclose(t2.estimate, full.estimate[..., :2])
    np.testing.assert_allclose(t2.se, full.se[..., :2])
    direct = np.linalg.svd(r.mean(1, "nouns"), compute_uv=False)
    np.testing.assert_allclose(full.estimate[1, 1], direct, rtol=1e-12)


def test_normalisation_uses_G_L():
    r = block_result(E=4)
    rng = np.random.default_rng(0)
    A = rng.normal(size=(4, 4))
    L = np.linalg.cholesky(A @ A.T + np.eye(4))
    b = band(r, singular_values(L), sv_sum)
    direct = np.linalg.svd(r.mean(2, "all") @ L, compute_uv=False).sum()
    assert b.estimate[2, 0, 0] == pytest.approx(direct, rel=1e-12)


def test_direction_statistic_against_direct_formulas():
    rng = np.random.default_rng(1)
    M = rng.normal(size=(2, 6, 4))
    n = rng.normal(size=(2, 4))
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    out = direction_statistic(n, None, k=2)(M)
    for i in range(2):
        _, s, vt = np.linalg.svd(M[i])
        for p in range(2):
            assert out[i, p] == pytest.approx(np.linalg.norm(M[i] @ n[p]) / s[0])
            assert out[i, 2 + p] == pytest.approx(np.linalg.norm(vt[:2] @ n[p]))
        assert out[i, 4] == pytest.approx(s[:2].sum() / s.sum())


def test_no_blocks_means_no_interval():
    r = block_result()
    plain = GradientResult(sums=r.sums, counts=r.counts, classes=r.classes, vocab=r.vocab)
    with pytest.raises(UncertaintyError, match="no per-block sums"):
        band(plain, singular_values(), sv_sum)
    b = band(plain, singular_values(), sv_sum, method="none")
    assert np.all(np.isnan(b.se)) and np.all(np.isfinite(b.estimate))
    with pytest.raises(UncertaintyError, match="unknown interval method"):
        band(r, singular_values(), sv_sum, method="magic")
    with pytest.raises(UncertaintyError, match="confidence level"):
        band(r, singular_values(), sv_sum, level=1.5)


# --- intervals in the memory and relative-memory tables ------------------------------------


def _direct_jackknife(values: np.ndarray, ok: np.ndarray, level: float = 0.95):
    """Half width of the jackknife interval from leave-one-block-out values (Student t,
    B - 1 degrees of freedom)."""
    from scipy.stats import t

    v = values[ok]
    b = len(v)
    return t.ppf(0.5 + level / 2, b - 1) * np.sqrt((b - 1) / b * ((v - v.mean()) ** 2).sum())


def test_memory_curves_band_and_span_range_against_direct_jackknife():
    from stategrad.analysis import memory_curves, memory_span

    r = block_result(D=8, decay=0.55, sigma=0.2)
    L = np.linalg.cholesky(np.diag([1.0, 2.0, 0.5, 1.5]))
    report = memory_curves(r, normalize=L, classes=["nouns"], fraction=0.1,
                           interval="jackknife")
    curve = report.curve("nouns")
    c = r.class_index("nouns")
    B = r.block_sums.shape[0]
    loo_sums = np.empty((B, r.max_delay))
    for d in range(r.max_delay):
        for b in range(B):
            m = (r.sums[d, c] - r.block_sums[b, d, c]) / (r.counts[d, c] - r.block_counts[b, d, c])
            loo_sums[b, d] = np.linalg.svd(m @ L, compute_uv=False).sum()
        half = _direct_jackknife(loo_sums[:, d], np.ones(B, bool))
        assert curve.lower[d] == pytest.approx(curve.totals[d] - half, rel=1e-9)
        assert curve.upper[d] == pytest.approx(curve.totals[d] + half, rel=1e-9)
    # bias correction: B theta - (B - 1) mean of the leave-one-out values
    np.testing.assert_allclose(curve.stats.bias_corrected,
                               B * np.array(curve.totals) - (B - 1) * loo_sums.mean(axis=0),
                               rtol=1e-9)
    # the span's interval: percentiles of the spans of 200 block-bootstrap resamples
    rng = np.random.default_rng(0)
    spans = []
    for _ in range(200):
        w = np.bincount(rng.integers(0, B, B), minlength=B).astype(float)
        sums = [np.linalg.svd(np.tensordot(w, r.block_sums[:, d, c], 1)
                              / (w @ r.block_counts[:, d, c]) @ L, compute_uv=False).sum()
                for d in range(r.max_delay)]
        span = memory_span(np.array(sums), r.counts[:, c], 0.1)
        spans.append(span.delay if span.status == "falls" else r.max_delay)
    assert curve.stats.span_lower == int(np.quantile(spans, 0.025, method="lower"))
    assert curve.stats.span_upper == int(np.quantile(spans, 0.975, method="higher"))
    assert f"[{curve.stats.span_lower}-{curve.stats.span_upper}]" in report.format() or \
        curve.stats.span_lower == curve.stats.span_upper
    assert report.interval == "jackknife" and report.level == 0.95
    row = report.rows()[3]
    assert row["lower"] == curve.lower[3] and row["upper"] == curve.upper[3]
    assert "jackknife" in report.format()
    assert f"[{curve.lower[0]:.3g}, {curve.upper[0]:.3g}]" in report.format()
    # any number of classes gets its intervals in the text table
    many = memory_curves(block_result(classes=tuple(f"c{i}" for i in range(8)),
                                      per_block=(9,) * 8), interval="jackknife")
    table = many.format().split("memory span")[0]
    for c in many.curves:
        assert f"[{c.lower[0]:.3g}, {c.upper[0]:.3g}]" in table


def test_memory_curves_without_interval_has_no_band_columns(tmp_path):
    from stategrad.analysis import memory_curves

    report = memory_curves(block_result(), classes=["all"])
    assert report.interval is None and report.curves[0].lower is None
    assert "lower" not in report.rows()[0]
    header = report.to_csv(tmp_path / "m.csv").read_text().splitlines()[0]
    assert header == "class,delay,count,sum,sv_1"


def test_relative_memory_intervals_against_direct_jackknife():
    from stategrad.analysis import embedding_stats_from_array, relative_memory

    rng = np.random.default_rng(3)
    stats = embedding_stats_from_array(rng.normal(size=(500, 4)) @ np.diag([1.0, 2.0, 0.7, 1.2]))
    r = block_result(D=5, sigma=0.25)
    v = np.array([1.0, -0.5, 0.25, 2.0])
    table = relative_memory(r, v, stats, c="all", top_k=2, interval="jackknife", level=0.9)
    n = stats.whitening @ v
    n /= np.linalg.norm(n)
    B = r.block_sums.shape[0]
    for d, row in enumerate(table.rows):
        rel, cos = np.empty(B), np.empty(B)
        for b in range(B):
            m = (r.sums[d, 0] - r.block_sums[b, d, 0]) / (r.counts[d, 0] - r.block_counts[b, d, 0])
            m = m @ stats.cholesky
            _, s, vt = np.linalg.svd(m)
            rel[b] = np.linalg.norm(m @ n) / s[0]
            cos[b] = np.linalg.norm(vt[:2] @ n)
        for what, vals in (("relative", rel), ("cosine", cos)):
            half = _direct_jackknife(vals, np.ones(B, bool), 0.9)
            assert row[f"{what}_lower"] == pytest.approx(row[what] - half, rel=1e-8, abs=1e-12)
            assert row[f"{what}_upper"] == pytest.approx(row[what] + half, rel=1e-8, abs=1e-12)
    assert table.interval == "jackknife" and "relative interval" in table.format()


def test_memory_interval_needs_blocks():
    from stategrad.analysis import memory_curves

    r = block_result()
    bare = GradientResult(sums=r.sums, counts=r.counts, classes=r.classes, vocab=r.vocab)
    with pytest.raises(UncertaintyError, match="no per-block sums"):
        memory_curves(bare, interval="jackknife")


def test_memory_and_relative_memory_cli_write_intervals(tmp_path):
    import csv
    import json

    from click.testing import CliRunner

    from stategrad.analysis import embedding_stats_from_array, memory_curves
    from stategrad.cli import main

    r = block_result(D=6)
    r.save(tmp_path / "g.h5")
    rng = np.random.default_rng(4)
    embedding_stats_from_array(rng.normal(size=(300, 4))).save(tmp_path / "stats.npz")
    np.save(tmp_path / "v.npy", np.array([0.5, 1.0, -1.0, 0.0]))
    runner = CliRunner()
    out = runner.invoke(main, ["memory", str(tmp_path / "g.h5"), "--ci", "bootstrap",
                               "--n-boot", "50", "--seed", "3", "--classes", "all,verbs",
                               "--csv", str(tmp_path / "m.csv"), "--json", str(tmp_path / "m.json")])
    assert out.exit_code == 0, out.output
    rows = list(csv.DictReader((tmp_path / "m.csv").open()))
    expected = memory_curves(r, classes=["all", "verbs"], interval="bootstrap", n_boot=50, seed=3)
    verbs = [row for row in rows if row["class"] == "verbs"]
    assert float(verbs[2]["lower"]) == pytest.approx(expected.curve("verbs").lower[2], rel=1e-6)
    assert float(verbs[2]["lower"]) < float(verbs[2]["sum"]) < float(verbs[2]["upper"])
    spans = json.loads((tmp_path / "m.json").read_text())["spans"]
    assert {"span_lower", "span_upper", "span_never_share", "distinguishable",
            "floor_span"} <= set(spans[0])
    curves = json.loads((tmp_path / "m.json").read_text())["curves"]
    assert {"sum_bc", "floor", "above_floor"} <= set(curves[0])

    out = runner.invoke(main, ["relative-memory", str(tmp_path / "g.h5"), "--normalize",
                               str(tmp_path / "stats.npz"), "--vector", str(tmp_path / "v.npy"),
                               "--ci", "jackknife", "--top-k", "2", "--csv", str(tmp_path / "rm.csv")])
    assert out.exit_code == 0, out.output
    rows = list(csv.DictReader((tmp_path / "rm.csv").open()))
    assert float(rows[1]["relative_lower"]) <= float(rows[1]["relative"]) <= float(rows[1]["relative_upper"])
    assert float(rows[1]["cosine_upper"]) > float(rows[1]["cosine_lower"])
