"""The lines and matrices the figures draw, taken from what :mod:`stategrad.analysis`
computes: memory curves (:func:`stategrad.analysis.memory_curves`), singular value
replicates and their bands (:func:`stategrad.analysis.replicates`), whitened directions
(:func:`stategrad.analysis.whitened_direction`).  Nothing here computes a statistic of
its own; it only picks and labels.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..analysis import (
    AnalysisError,
    Replicates,
    Side,
    direction_statistic,
    normalizer_matrix,
    paired_difference,
    replicates,
    singular_values,
    sv_sum,
    whitened_direction,
)
from ..analysis import memory_curves as analysis_memory_curves
from ..gradients import GradientResult
from .style import Curve, PlotError


def sv_replicates(
    result: GradientResult,
    *,
    normalize=None,
    classes: Sequence[str | int] | None = None,
    ci: str = "jackknife",
    n_boot: int = 200,
    seed: int = 0,
) -> Replicates:
    """All singular values of ``Gbar_d`` (or ``Gbar_d L``) per delay and class, with their
    resampling replicates.  A result without blocks gets point estimates only."""
    method = ci if result.has_blocks else "none"
    return replicates(result, singular_values(normalizer_matrix(normalize)), classes=classes,
                      method=method, n_boot=n_boot, seed=seed)


def memory_reports(
    results: Sequence[GradientResult],
    labels: Sequence[str],
    *,
    normalize=None,
    classes: Sequence[str] | None = None,
    ci: str = "jackknife",
    level: float = 0.95,
    n_boot: int = 200,
    seed: int = 0,
):
    """(label, :class:`stategrad.analysis.MemoryReport`) per result; bands where the
    result has blocks and ``ci`` is not ``"none"``."""
    out = []
    for label, r in zip(labels, results, strict=True):
        interval = ci if r.has_blocks and ci != "none" else None
        out.append((label, analysis_memory_curves(r, normalize=normalize, classes=classes,
                                                  interval=interval, level=level,
                                                  n_boot=n_boot, seed=seed)))
    return out


def paired_difference_curves(
    results: Sequence[GradientResult],
    labels: Sequence[str],
    pair: tuple[str, str],
    *,
    normalize=None,
    ci: str = "jackknife",
    level: float = 0.95,
    n_boot: int = 200,
    seed: int = 0,
) -> list[Curve]:
    """Class A minus class B (sum of singular values) against delay, one curve per result
    that has blocks, banded by the paired interval over the same blocks."""
    a, b = pair
    curves = []
    for i, (label, r) in enumerate(zip(labels, results, strict=True)):
        if not r.has_blocks:
            continue
        pd = paired_difference(Side(r, a, normalize), Side(r, b, normalize),
                               method="jackknife" if ci == "none" else ci, level=level,
                               n_boot=n_boot, seed=seed)
        rows = pd.rows
        curves.append(Curve(
            label=f"{a} - {b}" if len(results) == 1 else f"{label}: {a} - {b}",
            x=np.array([row["delay"] for row in rows]),
            y=_floats([row["difference"] for row in rows]),
            lower=_floats([row["difference_lower"] for row in rows]),
            upper=_floats([row["difference_upper"] for row in rows]), color=i))
    if not curves:
        raise PlotError("a paired difference needs a result with blocks")
    return curves


def _series_label(result_label: str | None, class_name: str, n_results: int, n_classes: int) -> str:
    if n_results <= 1 or not result_label:
        return class_name
    if n_classes <= 1:
        return result_label
    return f"{result_label}: {class_name}"


def _floats(values) -> np.ndarray:
    """A list with ``None`` where analysis has no value, as floats with NaN gaps."""
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def memory_report_curves(entries: Sequence[tuple[str, object]]) -> list[Curve]:
    """Sum of singular values against delay: one curve per (result, class) of the
    (label, MemoryReport) entries.

    Colour follows the class (the same class has the same colour in every result) and
    line style the result; with a single class the colour follows the result."""
    curves = []
    n_classes = max(len(rep.curves) for _, rep in entries)
    for i, (label, rep) in enumerate(entries):
        for j, c in enumerate(rep.curves):
            curves.append(Curve(
                label=_series_label(label, c.class_name, len(entries), n_classes),
                x=np.arange(len(c.totals)), y=_floats(c.totals),
                lower=None if c.lower is None else _floats(c.lower),
                upper=None if c.upper is None else _floats(c.upper),
                color=j if n_classes > 1 else i, style=i if n_classes > 1 else 0,
                floor=None if c.stats is None or c.stats.floor is None else _floats(c.stats.floor),
            ))
    return curves


def topk_curves(
    entries: Sequence[tuple[str, Replicates]],
    k: int = 5,
    *,
    class_name: str = "all",
    level: float = 0.95,
) -> list[Curve]:
    """The k largest singular values against delay for one class: colour = rank,
    line style = result."""
    if k < 1:
        raise PlotError(f"k must be at least 1, got {k}")
    curves = []
    for i, (label, reps) in enumerate(entries):
        j = _class_column(reps, class_name)
        kk = min(k, reps.estimate.shape[-1])
        b = reps.derive(lambda v, kk=kk: v[..., :kk], level=level)
        x = np.arange(b.estimate.shape[0])
        for r in range(kk):
            name = f"$s_{{{r + 1}}}$"
            curves.append(Curve(
                label=name if len(entries) == 1 else f"{label}: {name}",
                x=x, y=b.estimate[:, j, r], lower=b.lower[:, j, r], upper=b.upper[:, j, r],
                color=r, style=i,
            ))
    return curves


def _class_column(reps: Replicates, class_name: str) -> int:
    if class_name not in reps.classes:
        raise PlotError(f"class {class_name!r} not among {reps.classes}")
    return reps.classes.index(class_name)


def spectrum_curves(
    entries: Sequence[tuple[str, Replicates]],
    delays: Sequence[int],
    *,
    class_name: str = "all",
    level: float = 0.95,
) -> list[Curve]:
    """Singular values against their rank at chosen delays: colour = delay, style = result."""
    curves = []
    for i, (label, reps) in enumerate(entries):
        j = _class_column(reps, class_name)
        b = reps.derive(None, level=level)
        D, K = b.estimate.shape[0], b.estimate.shape[-1]
        for c, d in enumerate(delays):
            if not 0 <= d < D:
                raise PlotError(f"delay {d} is outside the result's delays 0..{D - 1}")
            name = f"d = {d}"
            curves.append(Curve(
                label=name if len(entries) == 1 else f"{label}: {name}",
                x=np.arange(1, K + 1), y=b.estimate[d, j], lower=b.lower[d, j],
                upper=b.upper[d, j], color=c, style=i,
            ))
    return curves


def whiten_directions(vectors: np.ndarray, normalize=None) -> np.ndarray:
    """Unit directions ``n = Z v / |Z v|`` (``Z = L^-1``) of difference vectors ``v`` (rows),
    each by :func:`stategrad.analysis.whitened_direction`; without a normaliser simply
    ``v / |v|``."""
    v = np.atleast_2d(np.asarray(vectors, dtype=np.float64))
    L = normalizer_matrix(normalize)
    if L is not None and v.shape[1] != L.shape[0]:
        raise PlotError(f"difference vectors have {v.shape[1]} components, the embedding {L.shape[0]}")
    # analysis takes the whitening Z itself; L is triangular and small (E x E), so its
    # inverse is cheap and exact enough (agrees with a triangular solve to ~1e-12)
    Z = np.eye(v.shape[1]) if L is None else np.linalg.inv(L)
    try:
        return np.stack([whitened_direction(row, Z) for row in v])
    except AnalysisError as exc:
        raise PlotError("a difference vector is zero: it has no direction") from exc


def direction_replicates(
    result: GradientResult,
    directions: np.ndarray,
    *,
    normalize=None,
    class_name: str = "all",
    k: int = 5,
    ci: str = "jackknife",
    n_boot: int = 200,
    seed: int = 0,
) -> Replicates:
    """Relative memory, subspace cosine and top-k share (see
    :func:`stategrad.analysis.direction_statistic`) of whitened unit ``directions``, then
    the absolute amount kept ``|Gbar L n|`` of each: (P rel, P cos, share, P abs)."""
    method = ci if result.has_blocks else "none"
    L = normalizer_matrix(normalize)
    base = direction_statistic(directions, L, k)
    dirs = np.atleast_2d(np.asarray(directions, dtype=np.float64))

    def statistic(m: np.ndarray) -> np.ndarray:
        absolute = np.linalg.norm((m if L is None else m @ L) @ dirs.T, axis=-2)
        return np.concatenate([base(m), absolute], axis=-1)

    return replicates(result, statistic, classes=[class_name], method=method,
                      n_boot=n_boot, seed=seed)


def _ratio_to_first_delay(reps: Replicates, columns: slice) -> Replicates:
    """The replicates of ``columns`` divided by their delay-0 value, replicate by
    replicate (so a band counts the correlation of the two delays)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        est = reps.estimate[..., columns] / reps.estimate[:1, ..., columns]
        rep = reps.replicates[..., columns] / reps.replicates[:, :1, ..., columns]
    return Replicates(est, rep, reps.valid & reps.valid[:, :1], reps.classes, reps.method)


def direction_curves(
    entries: Sequence[tuple[str, Replicates]],
    names: Sequence[str],
    *,
    kind: str = "relative",
    level: float = 0.95,
) -> list[Curve]:
    """``kind="relative"``: relative memory ``|Gbar n| / s_1``; ``"cosine"``: ``|V_k^T n|``;
    ``"absolute_ratio"``: ``|Gbar n|`` over its value at delay 0 (needs the replicates of
    :func:`direction_replicates`).  Colour = direction, line style = result."""
    P = len(names)
    offset = {"relative": 0, "cosine": P, "absolute_ratio": 0}.get(kind)
    if offset is None:
        raise PlotError(f"unknown direction measure {kind!r}; use 'relative', 'cosine' or "
                        "'absolute_ratio'")
    curves = []
    for i, (label, reps) in enumerate(entries):
        if reps.estimate.shape[-1] not in (2 * P + 1, 3 * P + 1):
            raise PlotError(f"{P} direction names for replicates of {(reps.estimate.shape[-1] - 1) // 2}")
        if kind == "absolute_ratio":
            if reps.estimate.shape[-1] != 3 * P + 1:
                raise PlotError("these replicates have no absolute amounts kept")
            reps = _ratio_to_first_delay(reps, slice(2 * P + 1, 3 * P + 1))
        b = reps.derive(None, level=level)
        x = np.arange(b.estimate.shape[0])
        for p, name in enumerate(names):
            curves.append(Curve(
                label=name if len(entries) == 1 else f"{label}: {name}",
                x=x, y=b.estimate[:, 0, offset + p], lower=b.lower[:, 0, offset + p],
                upper=b.upper[:, 0, offset + p], color=p, style=i,
            ))
    return curves


def memory_matrix(report) -> np.ndarray:
    """Sum of singular values per class and delay, (classes, delays), of a MemoryReport;
    NaN where a class has no occurrence."""
    return np.stack([_floats(c.totals) for c in report.curves])


def class_memory_matrix(reps: Replicates) -> np.ndarray:
    """Sum of singular values per class and delay: (classes, delays)."""
    return reps.derive(sv_sum).estimate[:, :, 0].T.copy()


def default_spectrum_delays(max_delay: int, n: int = 4) -> list[int]:
    """Delays spread roughly logarithmically: 0, 1, ... up to the last delay."""
    if max_delay <= n:
        return list(range(max_delay))
    raw = np.unique(np.round(np.geomspace(1, max_delay - 1, n - 1)).astype(int))
    return [0] + [int(d) for d in raw if d > 0]


def result_label(result: GradientResult, index: int = 0) -> str:
    """A short name for a result: its ``label`` metadata, else model cell + state."""
    meta = result.metadata
    if meta.get("label"):
        return str(meta["label"])
    parts = []
    model = meta.get("model")
    cell = None
    if isinstance(model, dict):
        cell = model.get("cell") or (model.get("spec") or {}).get("cell")
    cell = cell or meta.get("cell")
    if cell:
        parts.append(str(cell).upper().replace("RNN_TANH", "RNN"))
    if meta.get("state"):
        parts.append(str(meta["state"]))
    return " ".join(parts) if parts else f"result {index + 1}"
