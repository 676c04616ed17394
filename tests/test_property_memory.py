"""Property memory (relative-memory's absolute, absolute_ratio and random-direction
baselines), checked against direct computations and direct simulation."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from stategrad.analysis import largest_bend, largest_fall, relative_memory
from stategrad.analysis.direction_null import cosine_null, mean_square_norm, norm_null
from stategrad.gradients import GradientResult


def _blocked(B=8, D=5, H=6, E=7, seed=0) -> GradientResult:
    rng = np.random.default_rng(seed)
    bc = rng.integers(3, 9, size=(B, D, 2))
    decay = 0.6 ** np.arange(D)
    bs = rng.normal(size=(B, D, 2, H, E)) * bc[..., None, None] * decay[None, :, None, None, None]
    return GradientResult(bs.sum(0), bc.sum(0), ["all", "a"], ["w"] * 10, {},
                          block_sums=bs, block_counts=bc, block_starts=np.arange(B) * 50)


def _L(E=7, seed=3):
    A = np.random.default_rng(seed).normal(size=(E, E))
    return np.linalg.cholesky(A @ A.T + np.eye(E))


def test_absolute_and_ratio_are_the_norm_of_the_normalised_mean_along_n():
    res, L = _blocked(), _L()
    v = np.random.default_rng(5).normal(size=7)
    table = relative_memory(res, v, L, c="a", top_k=2)
    n = np.linalg.solve(L, v)
    n /= np.linalg.norm(n)
    first = None
    for d, row in enumerate(table.rows):
        M = res.sums[d, 1] / res.counts[d, 1] @ L
        want = np.linalg.norm(M @ n)
        first = first or want
        s = np.linalg.svd(M, compute_uv=False)
        assert row["absolute"] == pytest.approx(want, rel=1e-10)
        assert row["absolute_ratio"] == pytest.approx(want / first, rel=1e-10)
        assert row["relative"] == pytest.approx(want / s[0], rel=1e-10)
        assert row["relative_null"] < 1.0
    assert table.rows[0]["absolute_ratio"] == pytest.approx(1.0)


def test_random_direction_baselines_agree_with_direct_simulation():
    rng = np.random.default_rng(11)
    E, k = 9, 3
    M = rng.normal(size=(6, E)) * np.array([5, 3, 1, 1, 0.5, 0.2, 0.1, 0.1, 0.1])
    _, s, vh = np.linalg.svd(M, full_matrices=False)
    u = rng.normal(size=(200_000, E))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    # cosine |V_k u|: exact mean and quantiles
    cos = np.linalg.norm(u @ vh[:k].T, axis=1)
    mean, lo, hi = cosine_null(k, E)
    assert mean == pytest.approx(cos.mean(), abs=4 * cos.std() / np.sqrt(len(cos)))
    assert np.mean((cos >= lo) & (cos <= hi)) == pytest.approx(0.95, abs=0.005)
    # |M u|: E|Mu|^2 = ||M||_F^2 / E exactly; mean and band by Monte Carlo (own sample)
    norms = np.linalg.norm(u @ M.T, axis=1)
    assert mean_square_norm(s, E) == pytest.approx((norms ** 2).mean(), rel=0.01)
    mean, lo, hi = norm_null(s, vh, E)
    assert mean == pytest.approx(norms.mean(), rel=0.03)
    assert np.mean((norms >= lo) & (norms <= hi)) == pytest.approx(0.95, abs=0.02)


def test_a_random_direction_is_within_the_null_band_as_often_as_promised():
    """Coverage: for directions drawn at random, the relative memory lies inside the
    relative_null band about 95% of the time, and the cosine inside cosine_null's."""
    res, L = _blocked(), _L()
    rng = np.random.default_rng(7)
    inside_rel = inside_cos = total = 0
    for _ in range(150):
        v = L @ rng.normal(size=7)  # Z v is then a Gaussian: n uniform on the sphere
        row = relative_memory(res, v, L, c="a", top_k=2).rows[2]
        inside_rel += row["relative_null_lower"] <= row["relative"] <= row["relative_null_upper"]
        inside_cos += row["cosine_null_lower"] <= row["cosine"] <= row["cosine_null_upper"]
        total += 1
    assert 0.87 <= inside_rel / total <= 1.0
    assert 0.87 <= inside_cos / total <= 1.0


def test_absolute_ratio_band_comes_from_the_ratio_of_each_replicate():
    res, L = _blocked(), _L()
    v = np.random.default_rng(5).normal(size=7)
    table = relative_memory(res, v, L, c="a", interval="jackknife")
    n = np.linalg.solve(L, v)
    n /= np.linalg.norm(n)
    B, d = res.n_blocks, 3
    loo = []
    for b in range(B):
        keep = np.arange(B) != b
        m = [res.block_sums[keep, i, 1].sum(0) / res.block_counts[keep, i, 1].sum() for i in (0, d)]
        loo.append(np.linalg.norm(m[1] @ L @ n) / np.linalg.norm(m[0] @ L @ n))
    loo = np.array(loo)
    se = np.sqrt((B - 1) / B * ((loo - loo.mean()) ** 2).sum())
    row = table.rows[d]
    half = (row["absolute_ratio_upper"] - row["absolute_ratio_lower"]) / 2
    centre = (row["absolute_ratio_upper"] + row["absolute_ratio_lower"]) / 2
    assert 1.9 < half / se < 2.7  # z or t quantile times the jackknife se of the ratio
    assert centre == pytest.approx(row["absolute_ratio"], rel=0.05, abs=0.05 * se)
    for key in ("absolute", "relative", "cosine"):
        assert row[f"{key}_lower"] <= row[key] <= row[f"{key}_upper"]


def test_largest_fall_is_the_smallest_step_ratio():
    assert largest_fall([10, 4, 3.9, 3.8, 0.5, 0.4]) == 4  # not delay 1's bigger step
    assert largest_fall([1, 1, 1]) in (1, 2)
    assert largest_fall([0, 0, 0]) is None
    assert largest_fall([np.nan, 2, 1]) == 2
    assert largest_fall([10, 4, 3.9, 3.8, 0.5, 0.4], signal=[1, 1, 1, 0, 1, 1]) == 1
    assert largest_fall([10, 4, 3.9, 3.8, 3.7], start=2) == 4


def test_largest_bend_finds_a_kink_and_a_drop_but_not_tail_noise():
    d = np.arange(20)
    kink = np.where(d < 7, 0.98 ** d, 0.98 ** 7 * 0.8 ** (d - 7))  # falls faster from 8 on
    assert largest_bend(kink) == 8
    assert largest_bend(5 * kink) == 8  # any positive multiple
    assert largest_bend(kink, log=True) == 8
    drop = np.where(d < 9, 0.3, 0.01)
    drop[0] = 1.0  # the direct effect at delay 0 is much larger
    tail = drop * (1 + 0.3 * np.random.default_rng(0).standard_normal(20) * (d > 9))
    assert largest_bend(tail) == 9  # the tail's relative noise is large, its size small
    assert largest_bend([1.0, 0.5]) is None


def test_largest_bend_searches_from_delay_3_unless_told():
    # The word's direct effect: a steep first step that levels off gives the largest
    # second difference at delay 2; the memory dropped at 6 is the bend from delay 3 on.
    curve = np.array([1.0, 0.9, 0.3, 0.28, 0.26, 0.25, 0.1, 0.09, 0.08])
    assert largest_bend(curve, start=2) == 2
    assert largest_bend(curve) == 6
    assert largest_bend(curve, start=6) == 6 and largest_bend(curve, start=7) != 6


def test_relative_memory_json_rows_carry_the_issue_keys(tmp_path):
    from stategrad.analysis import embedding_stats_from_array
    from stategrad.cli import main

    res = _blocked()
    path = tmp_path / "g.h5"
    res.save(path)
    rng = np.random.default_rng(1)
    embedding_stats_from_array(rng.normal(size=(500, 7)) @ _L().T).save(tmp_path / "stats.npz")
    np.save(tmp_path / "v.npy", rng.normal(size=7))
    out = tmp_path / "rm.json"
    r = CliRunner().invoke(main, ["relative-memory", str(path), "--normalize", str(tmp_path / "stats.npz"),
                                  "--vector", str(tmp_path / "v.npy"), "--class", "a",
                                  "--ci", "jackknife", "--json", str(out)])
    assert r.exit_code == 0, r.output
    rows = json.loads(out.read_text())["rows"]
    keys = {"delay", "count", "relative", "cosine", "absolute", "absolute_ratio",
            "relative_null", "cosine_null"}
    keys |= {f"{k}_{s}" for k in ("relative", "cosine", "absolute", "absolute_ratio",
                                  "relative_null", "cosine_null") for s in ("lower", "upper")}
    assert keys <= set(rows[0])
    assert "absolute" in r.output and "rel null" in r.output


def test_absolute_floor_is_the_sign_flip_floor_of_the_noise_floor_module():
    """The fast floor of |M L n| (block vectors first) equals analysis.noise_floor's."""
    from stategrad.analysis import noise_floor

    res, L = _blocked(), _L()
    v = np.random.default_rng(5).normal(size=7)
    rows = relative_memory(res, v, L, c="a").rows
    n = np.linalg.solve(L, v)
    n /= np.linalg.norm(n)
    floor = noise_floor(res, lambda m: np.linalg.norm(m @ L @ n, axis=-1)[..., None], ["a"],
                        n_flips=1000, seed=0, simultaneous=False, null="flip")
    for d, row in enumerate(rows):
        assert row["absolute_floor"] == pytest.approx(floor.floor[d, 0, 0], rel=1e-9)
        assert row["absolute_signal"] == bool(floor.above[d, 0, 0])
