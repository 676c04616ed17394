"""The normaliser of the analyses: ``normalize=`` takes embedding statistics, a matrix L
(E x E, lower: the Cholesky factor of the embedding covariance), a statistics file or the
original's ``_D_norm_grad.npy``.  Here it becomes L, is checked (shape, finiteness,
singularity, the model it was made from) and is described for the tables."""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .embedding_stats import LEGACY_SUFFIXES, EmbeddingStats, load_embedding_stats
from .errors import AnalysisError

Normalizer = EmbeddingStats | np.ndarray | str | os.PathLike | None


def normalizer_matrix(normalize: Normalizer) -> np.ndarray | None:
    """L (E x E) from statistics, an array, a stats file or the original's
    ``_D_norm_grad.npy``; ``None`` for raw (unnormalised) gradients."""
    if normalize is None:
        return None
    if isinstance(normalize, EmbeddingStats):
        return normalize.cholesky
    if isinstance(normalize, np.ndarray):
        L = np.asarray(normalize, dtype=np.float64)
    else:
        path = Path(normalize)
        if _is_bare_matrix(path):
            return _read_bare_matrix(path)
        return load_embedding_stats(path).cholesky
    if L.ndim != 2 or L.shape[0] != L.shape[1]:
        raise AnalysisError(f"normalisation matrix must be square E x E, got shape {L.shape}")
    return L


def _is_bare_matrix(path: Path) -> bool:
    """A ``.npy`` holding L alone (also the original's ``_D_norm_grad.npy``), not one of
    the original's other normalisation files."""
    return path.suffix == ".npy" and path.is_file() and not str(path).endswith(
        tuple(s for k, s in LEGACY_SUFFIXES.items() if k != "cholesky"))


def _read_bare_matrix(path: Path) -> np.ndarray:
    try:
        L = np.asarray(np.load(path, allow_pickle=False), dtype=np.float64)
    except (OSError, ValueError, TypeError) as exc:
        raise AnalysisError(f"{path} is not a readable .npy normalisation matrix: {exc}") from exc
    return validate_normalizer(L, path)


def validate_normalizer(L: np.ndarray, source: str | os.PathLike, E: int | None = None) -> np.ndarray:
    """L itself, or an error naming ``source`` when L cannot normalise: not a square
    (E x E) matrix, not finite, or singular (G L would silently lose directions, and an
    all-zero L gives a table of zeros)."""
    if L.ndim != 2 or L.shape[0] != L.shape[1]:
        raise AnalysisError(f"{source}: normalisation matrix must be square E x E, got shape {L.shape}")
    if E is not None and L.shape != (E, E):
        raise AnalysisError(f"{source}: normalisation matrix is {L.shape[0]} x {L.shape[1]} but the "
                            f"gradients have embedding size {E}: made with another model?")
    if not np.isfinite(L).all():
        raise AnalysisError(f"{source}: normalisation matrix holds NaN or infinite values")
    s = np.linalg.svd(L, compute_uv=False)
    if s[0] == 0 or s[-1] <= 1e-12 * s[0]:
        raise AnalysisError(
            f"{source}: normalisation matrix is " + ("all zero" if s[0] == 0 else
                                                     f"singular (singular values {s[0]:.3e} .. {s[-1]:.3e})")
            + ": it is not the Cholesky factor of an embedding covariance")
    return L


def checked_normalizer(
    path: str | os.PathLike,
    identities: Mapping[str, str | None],
    embedding_size: int,
    *,
    force: bool = False,
    need_stats: bool = False,
) -> tuple[EmbeddingStats | None, np.ndarray, list[str]]:
    """Statistics of a ``--normalize`` file checked against the model(s) they are used with.

    ``identities`` maps what is normalised (a result file, a model) to its model identity.
    Statistics of another model are an error (unless ``force``: then a warning), since the
    normalised numbers would be wrong without any sign of it.  Returns (the statistics, or
    None for a bare ``.npy`` L; L; warnings to show).  A bare L and the original's files
    carry no identity: accepted with a warning that they cannot be checked."""
    path = Path(path)
    stats = None if _is_bare_matrix(path) and not need_stats else load_embedding_stats(path)
    L = validate_normalizer(_read_bare_matrix(path) if stats is None else stats.cholesky,
                            path, embedding_size)
    model = (stats.metadata.get("model") or {}) if stats is not None else {}
    mine = model.get("identity") if isinstance(model, dict) else None
    notes: list[str] = []
    if mine is None:
        notes.append(f"{path} records no model identity: cannot check that it belongs to the "
                     "model of " + ", ".join(identities) + "; make sure it does")
    for name, theirs in identities.items():
        if theirs is None:
            notes.append(f"{name} records no model identity: cannot check that {path} belongs to it")
        elif mine is not None and theirs != mine:
            what = (f"{path} was made from another model (identity {mine[:12]}...) than {name} "
                    f"({theirs[:12]}...)")
            if not force:
                raise AnalysisError(f"{what}: the normalised numbers would be wrong; use that "
                                    "model's statistics (embedding-stats), or --force")
            notes.append(f"--force: {what}; the normalised numbers do NOT describe the model of {name}")
    return stats, L, notes


def check_normalizer(L: np.ndarray | None, E: int) -> None:
    if L is not None and L.shape != (E, E):
        raise AnalysisError(
            f"normalisation matrix is {L.shape[0]} x {L.shape[1]} but the gradients have "
            f"embedding size {E}: were the statistics made with the same model?"
        )



def normalization_info(normalize: Any) -> dict[str, Any] | None:
    """:meth:`EmbeddingStats.describe` of a normaliser (statistics or their file), for
    the tables that use it; ``None`` without normalisation."""
    if normalize is None:
        return None
    if isinstance(normalize, np.ndarray):
        return {"weighting": "unknown", "text": "weighting unknown (a bare matrix L)"}
    stats = normalize
    source = None
    if not isinstance(normalize, EmbeddingStats):
        source = str(normalize)
        path = Path(normalize)
        if path.suffix == ".npy":  # the original's _D_norm_grad.npy or a bare L
            return {"weighting": "unknown", "source": source,
                    "text": "weighting unknown (the original's normalisation files do not "
                            "record it)"}
        stats = load_embedding_stats(path)
    info = stats.describe()
    if source:
        info["source"] = source
    return info


def renamed_keyword(new: Any, old: Any, old_name: str, where: str) -> Any:
    """The value of a keyword given under its new name ``normalize=`` or under its old,
    deprecated one (``L=``, ``stats=``): every analysis calls the normaliser ``normalize``."""
    if old is None:
        return new
    if new is not None:
        raise TypeError(f"{where}() got both normalize= and its deprecated alias {old_name}=")
    warnings.warn(f"{where}(): {old_name}= is deprecated, use normalize=", DeprecationWarning,
                  stacklevel=3)
    return old
