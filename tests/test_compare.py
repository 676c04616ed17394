"""Paired differences on the same blocks and state whitening: against a direct
computation, for coverage on synthetic data with a known difference, and refusals."""

from __future__ import annotations

import numpy as np
import pytest
from reportdata import block_result
from scipy.stats import t

from stategrad.analysis import (
    CompareError,
    Side,
    StateStats,
    StateStatsError,
    band,
    check_state_stats,
    load_state_stats,
    memory_curves,
    paired_difference,
    singular_values,
    sv_sum,
    whiten_result,
)
from stategrad.gradients import GradientResult


def _svsum(m: np.ndarray) -> float:
    return float(np.linalg.svd(m, compute_uv=False).sum())


def test_class_difference_against_direct_jackknife():
    r = block_result(D=5, per_block=(40, 12, 0), B=8)
    # verbs: present in only some blocks, so the union of blocks matters
    r.block_counts[::2, :, 2] = 3
    r.block_sums[::2, :, 2] += 0.5
    r.sums[:, 2] = r.block_sums[:, :, 2].sum(0)
    r.counts[:, 2] = r.block_counts[:, :, 2].sum(0)
    pd = paired_difference(Side(r, "nouns"), Side(r, "verbs"))
    for d, row in enumerate(pd.rows):
        reps = []
        for b in range(r.n_blocks):
            vals = []
            for c in (1, 2):
                n = r.counts[d, c] - r.block_counts[b, d, c]
                vals.append(_svsum((r.sums[d, c] - r.block_sums[b, d, c]) / n))
            reps.append(vals[0] - vals[1])
        reps = np.array(reps)  # every block holds nouns, so all 8 count
        B = len(reps)
        se = np.sqrt((B - 1) / B * ((reps - reps.mean()) ** 2).sum())
        est = _svsum(r.mean(d, "nouns")) - _svsum(r.mean(d, "verbs"))
        assert row["difference"] == pytest.approx(est, rel=1e-6)  # SVs via Gram: ~1e-8
        assert row["se"] == pytest.approx(se, rel=1e-5)
        assert row["difference_upper"] == pytest.approx(est + t.ppf(0.975, B - 1) * se, rel=1e-6)
        assert row["n_blocks"] == B
    assert set(pd.COLUMNS) == set(pd.rows[0])


def _pair(rng, mu_a, mu_b, B=10, per=30, rho=0.8):
    """One result, two classes whose block noise is correlated (rho): they share the text."""
    D = mu_a.shape[0]
    n = np.full((B, D, 2), per)
    common = rng.normal(size=(B, D) + mu_a.shape[1:])
    own = rng.normal(size=(B, D, 2) + mu_a.shape[1:])
    noise = np.sqrt(rho) * common[:, :, None] + np.sqrt(1 - rho) * own
    mu = np.stack([mu_a, mu_b], axis=1)
    sums = n[..., None, None] * mu[None] + np.sqrt(n)[..., None, None] * noise
    return GradientResult(sums=sums.sum(0), counts=n.sum(0), classes=["a", "b"], vocab=["x"],
                          block_sums=sums, block_counts=n.astype(np.int64),
                          block_starts=np.arange(B))


@pytest.mark.parametrize("seed", [0, 1])
def test_paired_interval_covers_the_true_difference(seed):
    rng = np.random.default_rng(seed)
    U, _ = np.linalg.qr(np.random.default_rng(9).normal(size=(5, 3)))
    mu_a = np.stack([U @ np.diag([3.0, 2.0, 1.0]) * 0.8 ** d for d in range(3)])
    mu_b = np.stack([U @ np.diag([2.5, 2.0, 1.5]) * 0.7 ** d for d in range(3)])
    truth = np.array([_svsum(a) - _svsum(b) for a, b in zip(mu_a, mu_b, strict=True)])
    hits, widths, sep = [], [], []
    for _ in range(200):
        r = _pair(rng, mu_a, mu_b)
        pd = paired_difference(Side(r, "a"), Side(r, "b"))
        lo = np.array([x["difference_lower"] for x in pd.rows])
        hi = np.array([x["difference_upper"] for x in pd.rows])
        hits.append((lo <= truth) & (truth <= hi))
        widths.append(hi - lo)
        one = band(r, singular_values(), sv_sum, classes=["a"])
        sep.append(one.upper[:, 0, 0] - one.lower[:, 0, 0])
    # 95% nominal per delay; 200 texts: binomial sd 1.5%
    assert np.all((np.mean(hits, axis=0) >= 0.9) & (np.mean(hits, axis=0) <= 0.99))
    # pairing pays: the difference's band is narrower than one curve's own band
    assert np.mean(widths) < np.mean(sep)


def test_two_results_need_the_same_blocks():
    a = block_result(D=4)
    b = block_result(D=4, seed=3)
    pd = paired_difference(Side(a, "all", label="cell"), Side(b, "all", label="hidden"),
                           method="bootstrap", n_boot=50)
    assert pd.labels == ("cell", "hidden") and len(pd.rows) == 4
    shifted = block_result(D=4)
    shifted.block_starts = shifted.block_starts + 1
    with pytest.raises(CompareError, match="cell and hidden cannot be compared.*different positions"):
        paired_difference(Side(a, label="cell"), Side(shifted, label="hidden"))
    other = block_result(D=4, metadata={"text": {"sha256": "0" * 64}})
    with pytest.raises(CompareError, match="different texts"):
        paired_difference(Side(a, label="cell"), Side(other, label="hidden"))


def test_whitening_makes_the_state_scale_irrelevant():
    r = block_result(D=4, H=5, E=3)
    scale = np.diag([10.0, 0.1, 3.0, 1.0, 0.5])
    scaled = whiten_result(r, scale)  # the same model with a rescaled state
    rng = np.random.default_rng(0)
    S = rng.normal(size=(400, 5))
    cov = np.cov(S.T)
    W = StateStats(S.mean(0), cov, 400, {"state": "cell", "layer": 0}).whitening
    W_scaled = StateStats(S.mean(0) @ scale, scale @ cov @ scale, 400, {}).whitening
    a = memory_curves(whiten_result(r, W), interval="jackknife", floor=False)
    b = memory_curves(whiten_result(scaled, W_scaled), interval="jackknife", floor=False)
    for ca, cb in zip(a.curves, b.curves, strict=True):
        np.testing.assert_allclose(ca.totals, cb.totals, rtol=1e-8)
        np.testing.assert_allclose(ca.lower, cb.lower, rtol=1e-8)
    # W is Cov^-1/2: W Cov W = I, symmetric
    np.testing.assert_allclose(W @ cov @ W, np.eye(5), atol=1e-10)
    np.testing.assert_allclose(W, W.T, atol=1e-12)


def test_state_stats_file_and_checks(tmp_path):
    r = block_result(D=3, H=5, E=3)
    st = StateStats(np.zeros(5), np.eye(5), 10, {"state": "cell", "layer": 0,
                                                 "model": {"identity": "abc123"}})
    st.save(tmp_path / "s.npz")
    back = load_state_stats(tmp_path / "s.npz")
    np.testing.assert_array_equal(back.covariance, st.covariance)
    assert check_state_stats(back, r, "g.h5", "s.npz") == []
    other = StateStats(np.zeros(5), np.eye(5), 10, {"state": "cell", "layer": 0,
                                                    "model": {"identity": "zzz999"}})
    with pytest.raises(StateStatsError, match="s.npz was made from another model"):
        check_state_stats(other, r, "g.h5", "s.npz")
    assert "--force" in check_state_stats(other, r, "g.h5", "s.npz", force=True)[0]
    hidden = StateStats(np.zeros(5), np.eye(5), 10, {"state": "hidden", "layer": 0})
    with pytest.raises(StateStatsError, match="state 'hidden'"):
        check_state_stats(hidden, r, "g.h5", "s.npz")
    with pytest.raises(StateStatsError, match="singular"):
        _ = StateStats(np.zeros(5), np.diag([1.0, 1, 1, 1, 0]), 10, {}).whitening
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(StateStatsError, match="bad.npz"):
        load_state_stats(tmp_path / "bad.npz")
