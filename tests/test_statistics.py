"""What the intervals promise, on synthetic block sums with a known answer: Student-t
jackknife bands cover at their level with 10 blocks where z bands do not, bias
correction removes most of the upward bias of a sum of singular values, simultaneous
bands cover whole curves, and the span's interval covers the true span."""

from __future__ import annotations

import numpy as np
import pytest

from stategrad.analysis import memory_curves, memory_span, replicates, singular_values, sv_sum
from stategrad.gradients import GradientResult

H, E = 6, 4


def _blocks(rng, mu: np.ndarray, B: int = 10, per: int = 30, sigma: float = 1.0) -> GradientResult:
    """Delays x one class; each block holds ``per`` i.i.d. mu[d] + sigma N(0, 1) matrices."""
    D = mu.shape[0]
    n = np.full((B, D, 1), per)
    noise = rng.normal(size=(B, D, 1, H, E))
    sums = n[..., None, None] * mu[None, :, None] + np.sqrt(n)[..., None, None] * sigma * noise
    return GradientResult(sums=sums.sum(0), counts=n.sum(0), classes=["c"], vocab=["a"],
                          block_sums=sums, block_counts=n.astype(np.int64),
                          block_starts=np.arange(B))


def _mu(svals: list[float], D: int = 1, decay: float = 1.0) -> np.ndarray:
    rng = np.random.default_rng(7)
    U, _ = np.linalg.qr(rng.normal(size=(H, E)))
    V, _ = np.linalg.qr(rng.normal(size=(E, E)))
    return np.stack([U @ np.diag(svals) @ V.T * decay ** d for d in range(D)])


def _svsum(m):
    return np.linalg.svd(m, compute_uv=False).sum(-1)


@pytest.mark.parametrize("seed", [0, 1])
def test_t_bands_cover_with_ten_blocks_and_z_bands_do_not(seed):
    rng = np.random.default_rng(seed)
    mu = _mu([8.0, 6.0, 4.0, 2.0])
    truth = _svsum(mu[0])
    t_hits = z_hits = 0
    N = 600
    for _ in range(N):
        b = replicates(_blocks(rng, mu), singular_values()).derive(sv_sum)
        est, se = b.estimate[0, 0, 0], b.se[0, 0, 0]
        t_hits += b.lower[0, 0, 0] <= truth <= b.upper[0, 0, 0]
        z_hits += abs(est - truth) <= 1.959964 * se
    # nominal 95% vs P(|t_9| < 1.96) = 91.8%; binomial sd ~0.9%
    assert 0.925 <= t_hits / N <= 0.975
    assert z_hits / N <= t_hits / N - 0.015


@pytest.mark.parametrize("seed", [2, 3])
def test_bias_correction_removes_the_upward_bias(seed):
    rng = np.random.default_rng(seed)
    mu = _mu([3.0, 1.0, 0.5, 0.25])  # small singular values: a noisy sum is biased up
    truth = _svsum(mu[0])
    plain, corrected = [], []
    for _ in range(300):
        b = replicates(_blocks(rng, mu, per=10, sigma=2.0), singular_values()).derive(sv_sum)
        plain.append(b.estimate[0, 0, 0])
        corrected.append(b.bias_corrected[0, 0, 0])
    bias, bias_bc = np.mean(plain) - truth, np.mean(corrected) - truth
    assert bias > 0.05 * truth  # the problem is real
    assert abs(bias_bc) < 0.5 * bias


@pytest.mark.parametrize("method", ["jackknife", "bootstrap"])
def test_simultaneous_bands_cover_the_whole_curve(method):
    rng = np.random.default_rng(4 if method == "jackknife" else 5)
    D = 6
    mu = _mu([8.0, 6.0, 4.0, 2.0], D=D, decay=0.8)
    truth = _svsum(mu)
    # the bootstrap's bands are too narrow with few blocks (84% with 12): 30 blocks for it
    N, B = (300, 12) if method == "jackknife" else (100, 30)
    sim_hits = point_hits = 0
    for _ in range(N):
        reps = replicates(_blocks(rng, mu, B=B), singular_values(), method=method, n_boot=150,
                          seed=int(rng.integers(1 << 30)))
        for simultaneous in (True, False):
            b = reps.derive(sv_sum, simultaneous=simultaneous)
            ok = np.all((b.lower[:, 0, 0] <= truth) & (truth <= b.upper[:, 0, 0]))
            if simultaneous:
                sim_hits += ok
            else:
                point_hits += ok
    # all six delays covered at once: ~95% (bootstrap ~90%) for the simultaneous band,
    # far less pointwise
    assert sim_hits / N >= (0.9 if method == "jackknife" else 0.84)
    assert point_hits / N <= sim_hits / N - 0.08


def test_span_interval_covers_the_true_span():
    rng = np.random.default_rng(6)
    D = 10
    mu = _mu([4.0, 3.0, 2.0, 1.0], D=D, decay=0.7)
    true_span = memory_span(_svsum(mu), np.ones(D), 0.1).delay
    hits, N = 0, 60
    for s in range(N):
        r = _blocks(rng, mu, B=10, per=30, sigma=1.0)
        st = memory_curves(r, interval="jackknife", floor=False, n_boot=100, seed=s).curves[0].stats
        lower = D if st.span_lower is None else st.span_lower  # None: every resample "never"
        upper = D if st.span_upper_never else st.span_upper
        hits += lower <= true_span <= upper
    assert hits / N >= 0.85
