"""The noise floor: a class without memory is called indistinguishable from noise at the
promised rate, a class with memory is not; the floor matches a direct computation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from stategrad.analysis import UncertaintyError, noise_floor, singular_values, sv_sum
from stategrad.gradients import GradientResult

D, H, E = 6, 5, 3


def _result(rng, mu: np.ndarray, B: int = 10, per: int = 20, sigma: float = 1.0) -> GradientResult:
    """One class; block b holds ``per`` i.i.d. matrices mu[d] + sigma N(0, 1) per delay."""
    n = np.full((B, mu.shape[0], 1), per)
    noise = rng.normal(size=(B, mu.shape[0], 1) + mu.shape[1:])
    sums = n[..., None, None] * mu[None, :, None] + np.sqrt(n)[..., None, None] * sigma * noise
    return GradientResult(sums=sums.sum(0), counts=n.sum(0), classes=["c"], vocab=["a"],
                          block_sums=sums, block_counts=n.astype(np.int64),
                          block_starts=np.arange(B))


def _no_memory(rng) -> np.ndarray:
    mu = np.zeros((D, H, E))
    mu[0] = rng.normal(size=(H, E))  # delay 0 always has the input's own effect
    return mu


@pytest.mark.parametrize("null", ["deviations", "flip"])
def test_floor_is_the_quantile_of_sign_flipped_blocks(null):
    rng = np.random.default_rng(0)
    B = 8
    r = _result(rng, _no_memory(rng), B=B)
    nf = noise_floor(r, n_flips=64, seed=3, simultaneous=False, null=null)
    signs = np.random.default_rng(3).choice([-1.0, 1.0], size=(64, B))
    signs = signs[np.abs(signs.sum(axis=1)) < B]  # all the same sign: the mean itself
    for d in range(D):
        n = r.counts[d, 0]
        blocks = r.block_sums[:, d, 0]
        scale = 1.0 / n
        if null == "deviations":
            blocks = blocks - r.block_counts[:, d, 0, None, None] * r.mean(d, "c")
            scale *= np.sqrt(B / (B - 1))
        draws = [np.linalg.svd(np.tensordot(s, blocks, 1) * scale, compute_uv=False).sum()
                 for s in signs]
        assert nf.floor[d, 0, 0] == pytest.approx(np.quantile(draws, 0.95, method="higher"),
                                                  rel=1e-9)
        assert nf.null_mean[d, 0, 0] == pytest.approx(np.mean(draws), rel=1e-9)
        est = np.linalg.svd(r.mean(d, "c"), compute_uv=False).sum()
        assert nf.estimate[d, 0, 0] == pytest.approx(est, rel=1e-9)
        assert nf.above[d, 0, 0] == (est > nf.floor[d, 0, 0])
    # simultaneous: a log-normal's 1 - 0.05 / 5 quantile from the draws' logs, delays 1..5
    sim = noise_floor(r, n_flips=64, seed=3, null=null)
    logs = np.log(draws)
    q = np.exp(logs.mean() + norm.ppf(1 - 0.05 / (D - 1)) * logs.std(ddof=1))
    assert sim.floor[D - 1, 0, 0] == pytest.approx(q, rel=1e-9)
    assert sim.floor[0, 0, 0] == nf.floor[0, 0, 0]  # delay 0 is not judged


@pytest.mark.parametrize("seed", [1, 2])
def test_no_memory_is_indistinguishable_at_the_promised_rate(seed):
    # 95% simultaneous floor over delays 1..5: a memoryless class clears it at some delay
    # in at most ~5% of texts (measured 3-4%). 200 texts: binomial sd 1.5%, so [0.5%, 9%]
    # fails a wrong rate (a pointwise floor gives > 12%, see below).
    rng = np.random.default_rng(seed)
    calls = [noise_floor(_result(rng, _no_memory(rng)), n_flips=200, seed=s).distinguishable("c")
             for s in range(200)]
    assert 0.005 <= np.mean(calls) <= 0.09


def test_the_simultaneous_floor_is_needed():
    # Judged delay by delay at 95%, noise clears the floor at one of 5 delays far more often.
    rng = np.random.default_rng(4)
    calls = [noise_floor(_result(rng, _no_memory(rng)), n_flips=200, seed=s,
                         simultaneous=False).distinguishable("c") for s in range(200)]
    assert np.mean(calls) > 0.12


@pytest.mark.parametrize("seed", [5, 6])
def test_memory_is_distinguishable(seed):
    rng = np.random.default_rng(seed)
    mu = _no_memory(rng)
    mu[1:3] = 0.5 * rng.normal(size=(2, H, E))  # memory at delays 1 and 2 only
    hits, above, beyond = [], [], []
    for s in range(40):
        nf = noise_floor(_result(rng, mu), n_flips=200, seed=s)
        hits.append(nf.distinguishable("c"))
        above.append(nf.above[1:3, 0, 0].all())
        beyond.append(nf.above[3:, 0, 0].any())
    assert all(hits) and np.mean(above) >= 0.95
    assert np.mean(beyond) <= 0.15  # where the memory has ended, noise again


def test_statistic_and_errors():
    rng = np.random.default_rng(7)
    r = _result(rng, _no_memory(rng))
    top = noise_floor(r, singular_values(), n_flips=50, fn=lambda v: v[..., :2])
    assert top.floor.shape == (D, 1, 2)
    default = noise_floor(r, n_flips=50)
    explicit = noise_floor(r, singular_values(), ["c"], fn=sv_sum, n_flips=50)
    np.testing.assert_array_equal(default.floor, explicit.floor)
    bare = GradientResult(sums=r.sums, counts=r.counts, classes=r.classes, vocab=r.vocab)
    with pytest.raises(UncertaintyError, match="no per-block sums"):
        noise_floor(bare)
    with pytest.raises(UncertaintyError, match="null"):
        noise_floor(r, null="shuffle")


def test_memory_reports_a_memoryless_class_as_noise(tmp_path):
    import json

    from click.testing import CliRunner

    from stategrad.cli import main

    rng = np.random.default_rng(8)
    quiet, kept = _no_memory(rng), _no_memory(rng)
    kept[1:] = 0.6 * rng.normal(size=(D - 1, H, E))
    a, b = _result(rng, quiet), _result(rng, kept)
    both = GradientResult(sums=np.concatenate([a.sums, b.sums], axis=1),
                          counts=np.concatenate([a.counts, b.counts], axis=1),
                          classes=["quiet", "kept"], vocab=["a"],
                          block_sums=np.concatenate([a.block_sums, b.block_sums], axis=2),
                          block_counts=np.concatenate([a.block_counts, b.block_counts], axis=2),
                          block_starts=a.block_starts)
    both.save(tmp_path / "g.h5")
    out = CliRunner().invoke(main, ["memory", str(tmp_path / "g.h5"), "--floor", "--json",
                                    str(tmp_path / "m.json"), "--csv", str(tmp_path / "m.csv")])
    assert out.exit_code == 0, out.output
    assert "quiet" in out.output and "not distinguishable from noise" in out.output
    spans = {s["class"]: s for s in json.loads((tmp_path / "m.json").read_text())["spans"]}
    assert spans["quiet"]["distinguishable"] is False and spans["kept"]["distinguishable"] is True
    header = (tmp_path / "m.csv").read_text().splitlines()[0]
    assert header == "class,delay,count,sum,sv_1,floor,above_floor"  # no band without --ci
