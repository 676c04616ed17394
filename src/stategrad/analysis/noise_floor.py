"""The noise floor of a statistic of average state gradients: the value it would take
for a class of the same size and spread over the text, with no memory at all.

Why a floor is needed.  The average ``Gbar_d`` of a class is its true mean plus noise,
and the noise does not average to zero in a singular-value statistic: the sum of the
singular values of a noisy mean is at least of the order of the noise's norm, which
falls only as ``1 / sqrt(n)``.  A class seen 50 times therefore shows a sizeable "memory"
at every delay even where it has none, and a curve can only be read as memory where it
rises above what noise alone would give.

Method: random signs on the block deviations (a sign-flip, or Rademacher, null).  For a
(delay, class) cell with block sums ``S_b``, counts ``n_b`` (total ``n``) and mean
``M = S / n``, the deviations ``D_b = S_b - n_b M`` hold the block-to-block noise and no
signal (they sum to zero).  With independent random signs ``e_b = +-1``

    ``M* = sqrt(B' / (B' - 1)) * sum_b e_b D_b / n``

has mean zero and, to first order, the covariance of the noise in ``M`` (the factor
undoes the ``(B' - 1) / B'`` shrinkage of deviations from an estimated mean; ``B'`` the
blocks with occurrences).  ``theta(M*)`` over many sign draws is the distribution of the
statistic for a class with the same blocks, counts and noise and zero mean: the
no-memory distribution.  It keeps what a shuffled or random-word baseline would have to
imitate (the class's frequency profile over the text, the correlation of positions
within a block, the structure of the noise across the H x E entries), needs no second
pass over the text, and does not depend on how much memory the class has.  The same
signs serve every delay and class, so that a curve's null is coherent.

``null="flip"`` flips the raw block sums instead: exact under "no memory" for any number
of blocks (the all-plus draw *is* ``M``), but where the class does have memory the draws
carry ``mu sum_b e_b n_b / n`` too, so its floor rises with the memory itself (about
``|mu| / sqrt(B')``); use it for per-delay tests (``simultaneous=False``) only.

The floor of a cell is the ``level`` quantile of ``theta(M*)``; a value above it is
distinguishable from noise.  Since a curve is judged over many delays, ``simultaneous``
(the default) makes the floor hold for all ``D`` judged delays of a class at once
(Bonferroni): the ``1 - (1 - level) / D`` quantile of a log-normal fitted to the draws
(the mean and standard deviation of their logs), since a quantile that extreme cannot be
read off a few hundred draws and the null of a sum of singular values is positive and
right-skewed.  A class with no memory then crosses its floor at *any* delay with
probability at most about ``1 - level``.  Measured on memoryless synthetic classes (5
delays, 200 draws, 200 simulations each): 3-4% false alarms with 10 blocks, 3.5% with 20
(nominal 5%).  Without ``simultaneous`` each delay is judged alone, and noise crosses
the floor at one of D delays far more often than ``1 - level``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ..gradients import GradientResult
from ._blas import single_threaded_blas
from .normalization import Normalizer
from .uncertainty import (
    Statistic,
    UncertaintyError,
    _apply,
    _check_blocks_finite,
    _class_indices,
    singular_values,
    sv_sum,
)

NULLS = ("deviations", "flip")

#: Sign draws evaluated at once (bounds the (R, H, E) working set).
_CHUNK = 256


@dataclass
class NoiseFloor:
    """The no-memory distribution of a statistic per (delay, class).

    Arrays are (D, C', K) for the classes in ``classes``; NaN where a cell has no
    occurrences or fewer than two blocks with occurrences (no floor can be told).
    ``floor``: the ``level`` quantile of the statistic under no signal (simultaneous over
    the delays from ``from_delay`` on when ``simultaneous``); ``null_mean``: its mean, the
    expected value of the statistic with no memory; ``p_value``: per cell, the share of
    sign draws at least as large as the estimate; ``above``: estimate > floor.
    """

    estimate: np.ndarray
    floor: np.ndarray
    null_mean: np.ndarray
    p_value: np.ndarray
    above: np.ndarray  # bool
    classes: list[str]
    level: float
    n_flips: int
    simultaneous: bool
    from_delay: int

    def index(self, name: str) -> int:
        try:
            return self.classes.index(name)
        except ValueError:
            raise UncertaintyError(f"no noise floor for class {name!r}; have {self.classes}") from None

    def distinguishable(self, name: str, k: int = 0) -> bool:
        """Whether the class's curve (component k) clears its floor at some delay
        from ``from_delay`` on; ``False``: not distinguishable from noise."""
        j = self.index(name)
        return bool(self.above[self.from_delay:, j, k].any())


@single_threaded_blas
def noise_floor(
    result: GradientResult,
    statistic: Statistic | None = None,
    classes: Sequence[str | int] | None = None,
    *,
    fn: Callable[[np.ndarray], np.ndarray] | None = None,
    normalize: Normalizer = None,
    level: float = 0.95,
    n_flips: int = 200,
    seed: int = 0,
    simultaneous: bool = True,
    from_delay: int = 1,
    null: str = "deviations",
) -> NoiseFloor:
    """The noise floor of ``fn(statistic)`` for every delay and class (see the module).

    ``statistic`` maps a stack of mean matrices (N, H, E) to (N, K), as in
    :mod:`~stategrad.analysis.uncertainty`; ``None`` is the sum of the singular values
    of ``Gbar_d L`` with L from ``normalize`` (the memory curve).  The result must have
    been computed with blocks.  ``from_delay``: the first delay the simultaneous floor
    and :meth:`NoiseFloor.distinguishable` judge (delay 0 is the input's own effect on
    the state, which every class has).  ``null``: ``"flip"`` (random signs on the block
    sums) or ``"deviations"`` (on the deviations from the mean, the default; see the
    module).
    """
    if not 0.0 < level < 1.0:
        raise UncertaintyError(f"noise floor level must be between 0 and 1, got {level}")
    if null not in NULLS:
        raise UncertaintyError(f"unknown noise-floor null {null!r}; choose one of {NULLS}")
    if n_flips < 20:
        raise UncertaintyError(f"a noise floor needs at least 20 sign draws, got {n_flips}")
    if not result.has_blocks:
        raise UncertaintyError("this result has no per-block sums, so no noise floor can be "
                               "computed; recompute it with blocks (block_size)")
    if statistic is None:
        statistic, fn = singular_values(normalize), sv_sum
    fn = fn or (lambda x: x)
    cidx = _class_indices(result, classes)
    signs = np.random.default_rng(seed).choice([-1.0, 1.0], size=(n_flips, result.n_blocks))
    est, draws = _null_draws(result, statistic, fn, cidx, signs, null == "deviations")
    return _summarise(est, draws, [result.classes[c] for c in cidx], level, simultaneous,
                      from_delay)


def _null_draws(result, statistic, fn, cidx, signs, centred):
    """The statistic of every cell's mean, (D, C', K), and of its sign-flipped block
    sums (``centred``: deviations), (R, D, C', K) (NaN where a cell has fewer than two
    informative blocks)."""
    D, R = result.max_delay, signs.shape[0]
    est = null = None
    for d in range(D):
        n = result.counts[d, cidx].astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            full = result.sums[d, cidx] / n[:, None, None]
        theta = np.asarray(fn(_apply(statistic, full, n > 0)), dtype=np.float64)
        if est is None:
            est = np.full((D, len(cidx), theta.shape[-1]), np.nan)
            null = np.full((R, D, len(cidx), theta.shape[-1]), np.nan)
        est[d] = theta
        bs = result.block_delay(d)[:, cidx]
        bn = result.block_counts[:, d, cidx].astype(np.float64)
        _check_blocks_finite(bs, d, result, cidx)
        for j in range(len(cidx)):
            nb = int((bn[:, j] > 0).sum())
            if nb < 2:
                continue
            dev = bs[:, j].astype(np.float64)
            scale = 1.0 / n[j]
            if centred:
                dev = dev - bn[:, j, None, None] * full[j][None]
                scale *= np.sqrt(nb / (nb - 1.0))
            for r0 in range(0, R, _CHUNK):
                m = np.einsum("rb,bhe->rhe", signs[r0:r0 + _CHUNK], dev) * scale
                null[r0:r0 + _CHUNK, d, j] = fn(np.asarray(statistic(m), dtype=np.float64))
            # A draw with the same sign on every informative block is the mean itself (or
            # its negative): not a draw of noise, and it would put the estimate in its own floor.
            same = np.abs(signs[:, bn[:, j] > 0].sum(axis=1)) == nb
            null[same, d, j] = np.nan
    return est, null


def _summarise(est, null, names, level, simultaneous, from_delay) -> NoiseFloor:
    finite = np.isfinite(null)
    R = finite.sum(axis=0)  # (D, C', K) draws that count
    ok = R > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        null_mean = np.where(ok, np.where(finite, null, 0.0).sum(axis=0) / R, np.nan)
        p_value = np.where(ok, ((finite & (null >= est[None])).sum(axis=0) + 1.0) / (R + 1.0),
                           np.nan)
    floor = np.full(est.shape, np.nan)
    for d, j, k in zip(*np.nonzero(ok), strict=True):
        floor[d, j, k] = np.quantile(null[finite[:, d, j, k], d, j, k], level, method="higher")
    if simultaneous:
        n_judged = max(est.shape[0] - from_delay, 1)
        floor[from_delay:] = np.where(ok[from_delay:], _lognormal_bonferroni(
            null[:, from_delay:], level, n_judged), np.nan)
    above = np.isfinite(est) & (est > floor)
    return NoiseFloor(est, floor, null_mean, p_value, above, names, level, null.shape[0],
                      simultaneous, from_delay)


def _lognormal_bonferroni(null: np.ndarray, level: float, n_tests: int) -> np.ndarray:
    """Per delay: the ``1 - (1 - level) / n_tests`` quantile of a log-normal fitted to the
    draws (see the module: too few draws to read so extreme a quantile off them)."""
    from scipy.stats import norm

    with np.errstate(invalid="ignore", divide="ignore"):
        logs = np.log(np.where(null > 0, null, np.nan))
        mean = np.nanmean(logs, axis=0)
        sd = np.nanstd(logs, axis=0, ddof=1)
    return np.exp(mean + norm.ppf(1.0 - (1.0 - level) / n_tests) * sd)
