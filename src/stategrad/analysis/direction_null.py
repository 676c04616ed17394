"""What relative memory and the subspace cosine would be for a direction that carries
nothing: a unit direction ``u`` drawn uniformly from the sphere of the whitened space.

A property direction ``n`` is only remembered *as a property* if the state keeps more of it
than of a random direction; these baselines (mean and central band of the null
distribution) are printed next to the measured values.

- cosine ``|V_k u|`` for k orthonormal rows in E dimensions: ``|V_k u|^2`` is exactly
  ``Beta(k/2, (E-k)/2)``, so its mean and quantiles are exact;
- ``|A u|`` (``A = Gbar_d L``): ``E |A u|^2 = ||A||_F^2 / E`` exactly; the mean of
  ``|A u|`` and its quantiles come from a fixed Monte Carlo sample of directions (the same
  sample at every delay, so the baseline curve is smooth).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats as st
from scipy.special import gammaln

#: Directions in the Monte Carlo sample (the mean's relative error is about 1% or less).
N_DIRECTIONS = 2000


def random_directions(dim: int, n: int = N_DIRECTIONS, seed: int = 0) -> np.ndarray:
    """``n`` unit directions (n, dim) uniform on the sphere (normalised Gaussians)."""
    x = np.random.default_rng(seed).standard_normal((n, dim))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def cosine_null(k: int, dim: int, level: float = 0.95) -> tuple[float, float, float]:
    """Mean, lower and upper ``level`` quantiles of ``|V_k u|``, u uniform in ``dim``
    dimensions (exact: ``|V_k u|^2 ~ Beta(k/2, (dim-k)/2)``)."""
    if k >= dim:
        return 1.0, 1.0, 1.0
    a, b = k / 2.0, (dim - k) / 2.0
    # E sqrt(B) = B(a + 1/2, b) / B(a, b)
    mean = math.exp(gammaln(a + 0.5) + gammaln(a + b) - gammaln(a) - gammaln(a + b + 0.5))
    alpha = (1.0 - level) / 2.0
    lo, hi = st.beta.ppf([alpha, 1.0 - alpha], a, b)
    return mean, float(math.sqrt(lo)), float(math.sqrt(hi))


def norm_null(singular_values: np.ndarray, right_vectors: np.ndarray, dim: int,
              level: float = 0.95, directions: np.ndarray | None = None
              ) -> tuple[float, float, float]:
    """Mean, lower and upper ``level`` quantiles of ``|A u|`` for u uniform on the sphere,
    ``A`` given by its singular values and right singular vectors (rows, in ``dim``
    dimensions).  Monte Carlo over ``directions`` (default: :func:`random_directions`)."""
    u = random_directions(dim) if directions is None else directions
    values = np.linalg.norm((u @ right_vectors.T) * singular_values, axis=1)
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(values, [alpha, 1.0 - alpha])
    return float(values.mean()), float(lo), float(hi)


def mean_square_norm(singular_values: np.ndarray, dim: int) -> float:
    """The exact ``E |A u|^2 = ||A||_F^2 / dim`` for u uniform on the unit sphere."""
    return float(np.sum(np.asarray(singular_values, dtype=np.float64) ** 2) / dim)
