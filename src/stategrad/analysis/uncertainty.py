"""Confidence intervals for statistics of average state gradients, from blocks of text.

A result may keep, besides its total sums and counts, the sums and counts of each
*block* (a contiguous piece of the text).  Blocks are the natural unit of
resampling: state gradients of nearby positions are correlated (they share the
same recurrent trajectory), whereas blocks of a few thousand tokens are close to
independent of each other.  A statistic ``theta`` of a mean matrix (the sum of
singular values of ``Gbar_d L``, the top singular values, relative memory, ...)
then gets its uncertainty from how much it moves when the blocks change.

Estimators
----------
**Delete-one-block jackknife** (default).  For a (delay, class) cell with total
sum ``S`` and count ``n``, and block sums and counts ``S_b``, ``n_b``:

* leave-one-block-out mean ``M_-b = (S - S_b) / (n - n_b)``, replicate
  ``theta_-b = theta(M_-b)``;
* only the ``B'`` blocks with ``n_b > 0`` in that cell are used (a block without
  occurrences of the class carries no information about it; leaving it out gives
  back the full estimate);
* ``var = (B' - 1) / B' * sum_b (theta_-b - mean_b theta_-b)^2``, ``se = sqrt(var)``;
* band: ``theta(S / n) +- t_{(1+level)/2, B'-1} * se``: the Student t quantile with
  ``B' - 1`` degrees of freedom, not the normal one (with 10 blocks ``t = 2.26`` where
  ``z = 1.96``: a normal band would be 13% too narrow and cover ~91%, not 95%);
* bias-corrected estimate (:attr:`Band.bias_corrected`):
  ``theta_bc = B' theta - (B' - 1) mean_b theta_-b``, which removes the O(1/n) bias of
  a smooth statistic (the sum of singular values of a noisy mean is biased upward).

With fewer than two informative blocks no band exists (NaN).  For a linear
statistic and equal block sizes the jackknife variance equals the classical
``var(block means) / B``; for smooth non-linear statistics it is a first-order
(delta-method) approximation.  A class seen 300 times spreads over few blocks
and few tokens, so its band is much wider than that of a class seen 30,000
times -- which is the point of drawing bands at all.

**Block bootstrap** (option).  ``R`` resamples of the blocks with replacement (the
same resample for every delay and class, so that curves stay coherent); each
replicate's mean is ``sum_b w_b S_b / sum_b w_b n_b``; the band is the percentile
interval of the replicates, ``se`` their standard deviation, and the bias-corrected
estimate ``2 theta - mean_r theta_r``.

**Simultaneous bands** (``simultaneous=True``) hold for all delays of a curve at once:
the jackknife uses Bonferroni over the ``D'`` delays with a band (t quantile at
``1 - (1 - level) / (2 D')``); the bootstrap uses the max-|t| over delays of each
resample, ``max_d |theta_r(d) - theta(d)| / se(d)``, whose ``level`` quantile replaces
the per-delay quantile.

Both are computed from one pass that keeps every replicate of a *vector*
statistic (e.g. all singular values), so that any function of it (their sum, the
top k) gets its interval from the same replicates via :meth:`Replicates.derive`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as _scipy_stats

from ..gradients import GradientResult, ResultError
from ._blas import single_threaded_blas
from .normalization import Normalizer, normalizer_matrix, renamed_keyword

#: A statistic of a stack of mean matrices: (N, H, E) -> (N, K).
Statistic = Callable[[np.ndarray], np.ndarray]

METHODS = ("jackknife", "bootstrap", "none")


class UncertaintyError(ResultError):
    """Confidence intervals that cannot be computed as asked."""


@dataclass
class Band:
    """A statistic per (delay, class) with its standard error and confidence band.

    Arrays are (D, C', K) for the classes asked for (``classes`` names them); a
    scalar statistic has K = 1.  Cells without occurrences are NaN; cells with
    fewer than two informative blocks have NaN ``se``/``lower``/``upper``.
    """

    estimate: np.ndarray
    se: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    n_blocks: np.ndarray  # (D, C') blocks with occurrences in that cell
    classes: list[str]
    method: str
    level: float
    #: Jackknife (or bootstrap) bias-corrected estimate, same shape as ``estimate``.
    bias_corrected: np.ndarray | None = None
    #: Whether the band holds for all delays of a curve at once.
    simultaneous: bool = False


@dataclass
class Replicates:
    """The full-data statistic and its resampling replicates.

    ``estimate``: (D, C', K); ``replicates``: (R, D, C', K) with NaN where a replicate
    is not defined (a block without occurrences in the jackknife, an empty resample in
    the bootstrap); ``valid`` (R, D, C') says which replicates count.
    """

    estimate: np.ndarray
    replicates: np.ndarray
    valid: np.ndarray  # (R, D, C') bool
    classes: list[str]
    method: str

    def derive(self, fn: Callable[[np.ndarray], np.ndarray] | None = None,
               level: float = 0.95, *, simultaneous: bool = False) -> Band:
        """The band of ``fn`` of the statistic (``fn`` maps (..., K) -> (..., K'));
        ``None`` keeps the statistic as it is.  ``simultaneous``: bands that hold for
        every delay of a curve at once (see the module's docstring)."""
        if not 0.0 < level < 1.0:
            raise UncertaintyError(f"confidence level must be between 0 and 1, got {level}")
        fn = fn or (lambda x: x)
        est = np.asarray(fn(self.estimate), dtype=np.float64)
        if self.method == "none":
            nan = np.full_like(est, np.nan)
            return Band(est, nan, nan.copy(), nan.copy(), np.zeros(est.shape[:2], dtype=np.int64),
                        list(self.classes), self.method, level, None, simultaneous)
        reps = np.asarray(fn(self.replicates), dtype=np.float64)
        valid = self.valid[..., None]
        nvalid = self.valid.sum(axis=0)  # (D, C')
        masked = np.where(valid, reps, 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = masked.sum(axis=0) / nvalid[..., None]
            dev2 = np.where(valid, (reps - mean) ** 2, 0.0).sum(axis=0)
            b = nvalid[..., None].astype(np.float64)
            if self.method == "jackknife":
                se = np.sqrt((b - 1.0) / b * dev2)
                bc = b * est - (b - 1.0) * mean
                q = t_quantile(level, b - 1.0, _n_delays(nvalid) if simultaneous else 1)
                lower, upper = est - q * se, est + q * se
            else:
                se = np.sqrt(dev2 / (b - 1.0))
                bc = 2.0 * est - mean
                if simultaneous:
                    q = _max_t_quantile(reps, valid, est, se, level)
                    lower, upper = est - q * se, est + q * se
                else:
                    lower, upper = _percentiles(reps, valid, est, level)
        few = (nvalid < 2)[..., None] | ~np.isfinite(est)
        se, lower, upper, bc = (np.where(few, np.nan, x) for x in (se, lower, upper, bc))
        return Band(est, se, lower, upper, nvalid.astype(np.int64), list(self.classes),
                    self.method, level, bc, simultaneous)


def t_quantile(level: float, dof: np.ndarray | float, n_tests: np.ndarray | int = 1) -> np.ndarray:
    """The two-sided ``level`` quantile of Student's t with ``dof`` degrees of freedom,
    Bonferroni-corrected for ``n_tests`` simultaneous intervals (NaN where dof < 1)."""
    alpha = (1.0 - level) / (2.0 * np.asarray(n_tests, dtype=np.float64))
    dof = np.asarray(dof, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return np.where(dof >= 1, _scipy_stats.t.ppf(1.0 - alpha, np.maximum(dof, 1.0)), np.nan)


def _n_delays(nvalid: np.ndarray) -> np.ndarray:
    """Per class: how many delays have a band (two blocks or more), as (1, C', 1)."""
    return np.maximum((nvalid >= 2).sum(axis=0), 1)[None, :, None]


def _percentiles(reps, valid, est, level):
    alpha = (1.0 - level) / 2.0
    filled = np.where(valid, reps, np.nan)
    if not filled.size:
        return est * np.nan, est * np.nan
    return np.nanquantile(filled, alpha, axis=0), np.nanquantile(filled, 1.0 - alpha, axis=0)


def _max_t_quantile(reps, valid, est, se, level):
    """The ``level`` quantile over resamples of ``max_d |theta_r(d) - theta(d)| / se(d)``
    per class and component: (1, C', K).  A resample that misses a delay skips it."""
    with np.errstate(invalid="ignore", divide="ignore"):
        t = np.abs(reps - est[None]) / se[None]
    t = np.where(valid & np.isfinite(t), t, -np.inf).max(axis=1, keepdims=True)  # (R, 1, C', K)
    t = np.where(np.isfinite(t), t, np.nan)
    with np.errstate(invalid="ignore"):
        return np.nanquantile(t, level, axis=0) if t.size else np.nan


# --- statistics of mean matrices ------------------------------------------------------------

def _matrix(normalize: Normalizer) -> np.ndarray | None:
    # An array is used as given (as before normalize= existed); anything else becomes L.
    return normalize if normalize is None or isinstance(normalize, np.ndarray) \
        else normalizer_matrix(normalize)


def singular_values(normalize: Normalizer = None, *, L: np.ndarray | None = None) -> Statistic:
    """All singular values (descending) of ``M`` or of ``M @ L``, L from ``normalize``
    (statistics, L itself or a file; ``L=`` is the deprecated name of the keyword)."""
    L = _matrix(renamed_keyword(normalize, L, "L", "singular_values"))

    def stat(m: np.ndarray) -> np.ndarray:
        if L is not None:
            m = m @ L
        return _singular_values(m)

    return stat


def _singular_values(m: np.ndarray) -> np.ndarray:
    """Singular values of a stack of H x E matrices, descending.

    The replicates need tens of thousands of them; for H > E the eigenvalues of the
    E x E Gram matrix give them several times faster than an SVD of the H x E matrix.
    Squaring costs accuracy only for values below ~1e-8 of the largest, which do not
    move a sum or the top few."""
    if m.shape[-2] <= m.shape[-1]:
        return np.linalg.svd(m, compute_uv=False)
    gram = np.swapaxes(m, -1, -2) @ m
    eig = np.linalg.eigvalsh(gram)[..., ::-1]
    return np.sqrt(np.clip(eig, 0.0, None))


def sv_sum(values: np.ndarray) -> np.ndarray:
    """Sum of singular values along the last axis, kept as a length-1 axis."""
    return values.sum(axis=-1, keepdims=True)


def top_k(k: int) -> Callable[[np.ndarray], np.ndarray]:
    def fn(values: np.ndarray) -> np.ndarray:
        return values[..., :k]

    return fn


def direction_statistic(directions: np.ndarray, normalize: Normalizer = None,
                        k: int = 5, *, L: np.ndarray | None = None) -> Statistic:
    """Relative memory and subspace cosine of unit directions ``n`` (rows of ``directions``,
    already whitened: ``n = Z v / |Z v|``), per mean matrix ``M`` (normalised as ``M L``):

    output (N, 2P + 1) laid out as ``[rel_0..rel_{P-1}, cos_0..cos_{P-1}, share]``:
    relative memory ``|M n_p| / s_1``, the cosine ``|V_k^T n_p|`` between ``n_p`` and the
    top-k right singular subspace, and the share of the singular value sum that the top
    k carry (the same for every p).  ``normalize`` gives L as everywhere in the analyses
    (``L=`` is the deprecated name of the keyword); :func:`whitened_direction` makes ``n``.
    """
    L = _matrix(renamed_keyword(normalize, L, "L", "direction_statistic"))
    dirs = np.atleast_2d(np.asarray(directions, dtype=np.float64))

    def stat(m: np.ndarray) -> np.ndarray:
        if L is not None:
            m = m @ L
        _, s, vt = np.linalg.svd(m, full_matrices=False)
        with np.errstate(invalid="ignore", divide="ignore"):
            rel = np.linalg.norm(m @ dirs.T, axis=-2) / s[..., :1]
            cos = np.linalg.norm(vt[..., :k, :] @ dirs.T, axis=-2)
            share = s[..., :k].sum(axis=-1, keepdims=True) / s.sum(axis=-1, keepdims=True)
        return np.concatenate([rel, cos, share], axis=-1)

    return stat


# --- replicates -----------------------------------------------------------------------------

def _class_indices(result: GradientResult, classes: Sequence[str | int] | None) -> list[int]:
    if classes is None:
        return list(range(len(result.classes)))
    return [result.class_index(c) for c in classes]


@single_threaded_blas
def replicates(
    result: GradientResult,
    statistic: Statistic,
    *,
    classes: Sequence[str | int] | None = None,
    method: str = "jackknife",
    n_boot: int = 200,
    seed: int = 0,
) -> Replicates:
    """The statistic of every (delay, class) mean and its resampling replicates.

    ``method`` is ``"jackknife"`` (delete one block), ``"bootstrap"`` (resample blocks)
    or ``"none"`` (point estimates only; also what a result without blocks allows).
    """
    if method not in METHODS:
        raise UncertaintyError(f"unknown interval method {method!r}; choose one of {METHODS}")
    cidx = _class_indices(result, classes)
    names = [result.classes[c] for c in cidx]
    if method != "none" and not result.has_blocks:
        raise UncertaintyError(
            "this result has no per-block sums, so no confidence interval can be computed; "
            "recompute it with blocks (block_size) or ask for method 'none'"
        )
    D = result.max_delay
    est = None
    reps = None
    valid = None
    rng = np.random.default_rng(seed)
    if method == "bootstrap":
        B = result.n_blocks
        # One set of resamples for the whole result: every curve sees the same texts.
        weights = np.stack([np.bincount(rng.integers(0, B, B), minlength=B) for _ in range(n_boot)])
        weights = weights.astype(np.float64)
    for d in range(D):
        n = result.counts[d, cidx].astype(np.float64)  # (C')
        with np.errstate(invalid="ignore", divide="ignore"):
            full = result.sums[d, cidx] / n[:, None, None]
        theta = _apply(statistic, full, n > 0)  # (C', K)
        if est is None:
            K = theta.shape[-1]
            est = np.full((D, len(cidx), K), np.nan)
            R = {"jackknife": result.n_blocks,
                 "bootstrap": n_boot, "none": 0}[method]
            reps = np.full((R, D, len(cidx), K), np.nan)
            valid = np.zeros((R, D, len(cidx)), dtype=bool)
        est[d] = theta
        if method == "none":
            continue
        # One delay of the blocks at a time (they may be far larger than memory), and
        # class by class in float64, so that the working set stays a small part of the
        # result's size whatever the number of blocks or resamples.
        bs = result.block_delay(d)[:, cidx]  # (B, C', H, E), float32 from a file
        bn = result.block_counts[:, d, cidx].astype(np.float64)  # (B, C')
        _check_blocks_finite(bs, d, result, cidx)
        if method == "jackknife":
            rest_n = n[None, :] - bn
            ok = (bn > 0) & (rest_n > 0)
        else:
            rest_n = weights @ bn  # (R, C')
            ok = rest_n > 0
        for j in range(len(cidx)):
            sums_j = bs[:, j].astype(np.float64)  # (B, H, E)
            with np.errstate(invalid="ignore", divide="ignore"):
                if method == "jackknife":
                    m = (result.sums[d, cidx[j]][None] - sums_j) / rest_n[:, j, None, None]
                else:
                    m = np.einsum("rb,bhe->rhe", weights, sums_j) / rest_n[:, j, None, None]
            reps[:, d, j] = _apply(statistic, m, ok[:, j])
        valid[:, d] = ok
    if est is None:  # a result with no delays at all
        raise UncertaintyError("the result has no delays")
    return Replicates(est, reps, valid, names, method)


def _check_blocks_finite(bs: np.ndarray, d: int, result: GradientResult,
                         cidx: list[int]) -> None:
    """Checked here, where each delay of the blocks is read anyway (checking at load
    would read the blocks twice): a NaN would otherwise become a NaN band, or an SVD error."""
    bad = ~np.isfinite(bs).all(axis=(-2, -1))  # (B, C')
    if bad.any():
        b, j = (int(i) for i in np.argwhere(bad)[0])
        raise UncertaintyError(
            f"NaN or infinite sums at delay {d}, class {result.classes[cidx[j]]!r} in block {b} "
            f"(start {int(result.block_starts[b])}): the run that wrote it went wrong (a "
            "diverged model or a damaged file); recompute it")


def _apply(statistic: Statistic, stack: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """The statistic of the rows with ``ok``, NaN for the others (empty cells)."""
    if ok.all():
        return np.asarray(statistic(stack), dtype=np.float64)
    probe = statistic(np.zeros((1,) + stack.shape[1:]))
    out = np.full((stack.shape[0], probe.shape[-1]), np.nan)
    if ok.any():
        out[ok] = statistic(stack[ok])
    return out


def band(
    result: GradientResult,
    statistic: Statistic,
    fn: Callable[[np.ndarray], np.ndarray] | None = None,
    *,
    classes: Sequence[str | int] | None = None,
    method: str = "jackknife",
    level: float = 0.95,
    n_boot: int = 200,
    seed: int = 0,
    simultaneous: bool = False,
) -> Band:
    """Shortcut: :func:`replicates` then :meth:`Replicates.derive`."""
    reps = replicates(result, statistic, classes=classes, method=method, n_boot=n_boot, seed=seed)
    return reps.derive(fn, level=level, simultaneous=simultaneous)


def describe(method: str, level: float, simultaneous: bool = False) -> str:
    """One sentence for figure captions and reports."""
    pct = f"{100 * level:g}%"
    over = " simultaneous over delays" if simultaneous else ""
    if method == "jackknife":
        how = " (Bonferroni over delays)" if simultaneous else ""
        return (f"Bands: {pct}{over} Student-t intervals (B' - 1 degrees of freedom, B' the "
                f"blocks with occurrences){how} from a delete-one-block jackknife over "
                "contiguous blocks of the text.")
    if method == "bootstrap":
        kind = "max-|t| intervals" if simultaneous else "percentile intervals"
        return f"Bands: {pct}{over} {kind} from a bootstrap resampling blocks of the text."
    return "No confidence bands."
