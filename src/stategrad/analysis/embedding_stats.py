"""Statistics of embeddings, for normalisation to equal variance (the project's
``method.md``): ``mu``, ``Sigma`` (unbiased) of a set of embeddings, either the tokens of a
reference text (token weighted) or the rows of the embedding table (type weighted, what
the original's ``save_embedding`` file gave); ``L = cholesky(Sigma)`` (lower) and
``Z = L^-1``.  Whitened inputs ``z = Z (x - mu)`` have identity covariance and
``ds/dz = G L``, so the *normalised* average gradient of delay d is ``Gbar_d L``.

Statistics are computed from token counts (never building the N x E token matrix), from
an N x E array (the original's route) or from a model and a text, and saved to / read from
one ``.npz`` (or the original's four ``.npy`` files)."""

from __future__ import annotations

import io
import json
import math
import os
import warnings
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.linalg import solve_triangular

from ..atomic import write_bytes_atomic
from ..gradients import json_default
from .embeddings import embedding_matrix, file_identity, load_npy
from .errors import AnalysisError

STATS_FORMAT = "stategrad-embedding-stats"
STATS_VERSION = 1

# How the embeddings behind the statistics are weighted (recorded as metadata "weighting"):
# "token": each word as often as it occurs in a text; "type": every row of the model's
# embedding table once (the original's save_embedding saved that table, so its statistics
# were type weighted).  Files written before the option existed are token weighted when
# they name a text.
WEIGHTINGS = ("token", "type")

# The original's normalize_equal_variance.py warns about a condition number of Z above this.
CONDITION_WARNING = 100.0

# Suffixes of the four files the original's normalize_equal_variance.py writes.
LEGACY_SUFFIXES = {
    "mean": "_mean.npy",
    "covariance": "_covar.npy",
    "cholesky": "_D_norm_grad.npy",
    "whitening": "_Z_norm_emb.npy",
}



class SingularCovarianceError(AnalysisError):
    """The embedding covariance of the reference text has no Cholesky factor."""


class ConditioningWarning(UserWarning):
    """The whitening matrix is badly conditioned (condition number above 100)."""



@dataclass
class SanityChecks:
    """The checks the original printed after normalisation, as numbers.

    - ``centered_mean_max``: max |mean of x - mu| (should be ~0);
    - ``identity_error``: max |Z L L^T Z^T - I| (the original printed an element-wise
      product there; this is the matrix product the check means);
    - ``condition_number``: s_max(Z) / s_min(Z), expected below 100;
    - ``whitened_covariance_error``: max |cov(Z x) - I|, computed again from the
      embeddings (not from Sigma), so it tests the whole chain.  With a ridge it
      is about the ridge's size by construction.
    """

    centered_mean_max: float
    identity_error: float
    condition_number: float
    whitened_covariance_error: float

    @property
    def well_conditioned(self) -> bool:
        return self.condition_number <= CONDITION_WARNING

    def format(self) -> str:
        lines = [
            "max |mean(x - mu)|            "
            + ("n/a (embeddings not at hand)" if math.isnan(self.centered_mean_max)
               else f"{self.centered_mean_max:.3e}  (should be ~0)"),
            f"max |Z L L^T Z^T - I|         {self.identity_error:.3e}  (should be ~0)",
            f"condition number of Z         {self.condition_number:.4g}"
            + ("" if self.well_conditioned else "  WARNING: above 100, normalised figures are "
               "dominated by low-variance embedding directions"),
            f"max |cov(Z x) - I|            {self.whitened_covariance_error:.3e}  (should be ~0)",
        ]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, float]:
        return {
            "centered_mean_max": self.centered_mean_max,
            "identity_error": self.identity_error,
            "condition_number": self.condition_number,
            "whitened_covariance_error": self.whitened_covariance_error,
        }


@dataclass
class EmbeddingStats:
    """Statistics of a set of embeddings: the tokens of a reference text (token
    weighted) or the rows of a model's embedding table (type weighted); ``weighting``
    says which.

    ``cholesky`` is L (lower, L L^T = covariance): it normalises gradients
    (``G L``).  ``whitening`` is Z = L^-1: it normalises embeddings (``Z (x - mu)``).
    """

    mean: np.ndarray  # (E,)
    covariance: np.ndarray  # (E, E)
    cholesky: np.ndarray  # (E, E) lower
    whitening: np.ndarray  # (E, E) lower
    n_tokens: int
    n_types: int
    checks: SanityChecks
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def embedding_size(self) -> int:
        return self.mean.shape[0]

    @property
    def weighting(self) -> str:
        """``"token"``, ``"type"``, ``"rows"`` (each row of a given array once) or
        ``"unknown"`` (the original's four files do not say)."""
        return stats_weighting(self.metadata)

    def describe(self) -> dict[str, Any]:
        """What the statistics were computed from, for the outputs that use them."""
        return {"weighting": self.weighting, "text": weighting_text(self),
                "model_identity": (self.metadata.get("model") or {}).get("identity"),
                "n_tokens": self.n_tokens, "n_types": self.n_types}

    def whiten(self, x: np.ndarray) -> np.ndarray:
        """``Z (x - mu)`` for one embedding (E,) or a stack (N, E)."""
        return (np.asarray(x, dtype=np.float64) - self.mean) @ self.whitening.T

    def save(self, path: str | os.PathLike) -> Path:
        """One ``.npz`` file: the four arrays, the checks and the metadata (JSON), written
        atomically (an earlier file stays as it was when writing fails)."""
        path = Path(path)
        meta = dict(self.metadata)
        meta.update(n_tokens=self.n_tokens, n_types=self.n_types, checks=self.checks.to_dict())
        buffer = io.BytesIO()
        np.savez(
            buffer,
            format=np.array(STATS_FORMAT),
            version=np.array(STATS_VERSION),
            mean=self.mean,
            covariance=self.covariance,
            cholesky=self.cholesky,
            whitening=self.whitening,
            metadata=np.array(json.dumps(meta, sort_keys=True, default=json_default)),
        )
        return _write_stats_file(path, buffer.getvalue())



def _write_stats_file(path: Path, data: bytes) -> Path:
    try:
        return write_bytes_atomic(path, data)
    except OSError as exc:
        raise AnalysisError(f"could not write embedding statistics {path}: "
                            f"{exc.strerror or exc}") from exc


def load_embedding_stats(path: str | os.PathLike) -> EmbeddingStats:
    """Read statistics written by :meth:`EmbeddingStats.save`, or the original's files.

    ``path`` may also be one of the original's ``<prefix>_*.npy`` files or the
    prefix itself; the four files are then read and the checks recomputed.
    """
    path = Path(path)
    if path.suffix == ".npz" and path.is_file():
        try:
            with np.load(path, allow_pickle=False) as data:
                if "format" not in data or str(data["format"]) != STATS_FORMAT:
                    raise AnalysisError(f"{path} is not a stategrad embedding-stats file")
                version = int(data["version"])
                if version != STATS_VERSION:
                    raise AnalysisError(
                        f"{path} has embedding-stats version {version}; this stategrad reads "
                        f"{STATS_VERSION}"
                    )
                meta = json.loads(str(data["metadata"]))
                arrays = {k: np.asarray(data[k], dtype=np.float64)
                          for k in ("mean", "covariance", "cholesky", "whitening")}
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            if isinstance(exc, AnalysisError):
                raise
            raise AnalysisError(f"{path} is not a readable embedding-stats file: {exc}") from exc
        checks = SanityChecks(**meta.pop("checks"))
        return EmbeddingStats(
            n_tokens=int(meta.pop("n_tokens")), n_types=int(meta.pop("n_types")),
            checks=checks, metadata=meta, **arrays,
        )
    prefix = _legacy_prefix(path)
    if prefix is None:
        raise AnalysisError(
            f"{path}: expected a .npz written by 'stategrad embedding-stats' or one of the "
            "original's <prefix>_mean/_covar/_D_norm_grad/_Z_norm_emb.npy files"
        )
    arrays = {}
    for attr, suffix in LEGACY_SUFFIXES.items():
        f = Path(prefix + suffix)
        if not f.is_file():
            raise AnalysisError(f"{f} not found: the original's normalisation writes four files "
                                f"next to each other ({', '.join(LEGACY_SUFFIXES.values())})")
        arrays[attr] = np.asarray(load_npy(f), dtype=np.float64)
    L, Z, sigma = arrays["cholesky"], arrays["whitening"], arrays["covariance"]
    checks = SanityChecks(
        centered_mean_max=float("nan"),  # the embeddings themselves are not in these files
        identity_error=_identity_error(Z, L),
        condition_number=_condition_number(Z),
        whitened_covariance_error=float(np.abs(Z @ sigma @ Z.T - np.eye(len(Z))).max()),
    )
    return EmbeddingStats(n_tokens=0, n_types=0, checks=checks,
                          metadata={"source": "original normalize_equal_variance files",
                                    "prefix": prefix}, **arrays)


def stats_weighting(meta: Mapping[str, Any]) -> str:
    """The weighting recorded in statistics metadata (see :data:`WEIGHTINGS`)."""
    if meta.get("weighting"):
        return str(meta["weighting"])
    if isinstance(meta.get("text"), dict):
        return "token"  # written before the option existed: always a text's tokens
    if meta.get("embeddings"):
        return "rows"
    return "unknown"


def weighting_text(stats: EmbeddingStats) -> str:
    """One line saying how the statistics are weighted, shown wherever they are used."""
    w = stats.weighting
    if w == "type":
        return (f"type weighted: every row of the embedding table once ({stats.n_types} words;"
                " as the original's save_embedding file, so as the papers)")
    if w == "token":
        text = stats.metadata.get("text") or {}
        where = f" of {text['path']}" if isinstance(text, dict) and text.get("path") else ""
        return f"token weighted: {stats.n_tokens} tokens{where} ({stats.n_types} distinct words)"
    if w == "rows":
        return (f"each of the {stats.n_tokens} rows of {stats.metadata.get('embeddings')} once "
                "(type weighted if it is the embedding table, token weighted if one row per token)")
    return "weighting unknown (the original's normalisation files do not record it)"



def _legacy_prefix(path: Path) -> str | None:
    text = str(path)
    for suffix in LEGACY_SUFFIXES.values():
        if text.endswith(suffix):
            return text[: -len(suffix)]
    if Path(text + LEGACY_SUFFIXES["cholesky"]).is_file():
        return text
    return None


def embedding_stats_from_counts(
    embeddings: np.ndarray,
    counts: np.ndarray,
    *,
    ridge: float = 0.0,
    metadata: Mapping[str, Any] | None = None,
) -> EmbeddingStats:
    """Statistics of a text given as token counts per word id.

    ``embeddings`` is the (V, E) embedding matrix, ``counts`` (V,) how often each
    word occurs in the text (``np.bincount(tokens, minlength=V)``).  The result is
    exactly that of the N x E matrix of token embeddings (mean, ``np.cov``), which
    is never built: it costs O(V E^2), not O(N E).

    ``ridge`` adds ``ridge * I`` to the covariance before the Cholesky factor (for a
    covariance that is singular or nearly so); it is recorded in the metadata, and
    ``cov(Z x)`` then differs from I by about the ridge.
    """
    W = np.asarray(embeddings, dtype=np.float64)
    counts = np.asarray(counts)
    if W.ndim != 2:
        raise AnalysisError(f"embeddings must be a (V, E) matrix, got shape {W.shape}")
    if counts.shape != (W.shape[0],):
        raise AnalysisError(f"counts must have shape ({W.shape[0]},), got {counts.shape}")
    if (counts < 0).any():
        raise AnalysisError("token counts cannot be negative")
    used = np.flatnonzero(counts)
    weights = counts[used].astype(np.float64)
    n = float(weights.sum())
    rows = W[used]
    mean = weights @ rows / n if n else np.full(W.shape[1], np.nan)
    # Centre before the weighted product: E[x x^T] - mu mu^T loses digits when |mu| >> spread.
    centered = rows - mean
    dof = n - 1.0
    covariance = (centered.T * weights) @ centered / dof if dof > 0 else None
    centered_mean = float(np.abs(weights @ centered / n).max()) if n else float("nan")

    def whitened_covariance(Z: np.ndarray) -> np.ndarray:
        zr = rows @ Z.T
        zm = weights @ zr / n
        zc = zr - zm
        return (zc.T * weights) @ zc / dof

    return _finish_stats(mean, covariance, int(n), len(used), W.shape[1], ridge,
                         centered_mean, whitened_covariance, metadata)


def embedding_stats_from_tokens(
    embeddings: np.ndarray,
    tokens: np.ndarray,
    *,
    ridge: float = 0.0,
    metadata: Mapping[str, Any] | None = None,
) -> EmbeddingStats:
    """Statistics of the tokens ``tokens`` (word ids) under the (V, E) ``embeddings``."""
    embeddings = np.asarray(embeddings)
    tokens = np.asarray(tokens)
    if tokens.size and (tokens.min() < 0 or tokens.max() >= embeddings.shape[0]):
        raise AnalysisError(
            f"token ids must lie in 0..{embeddings.shape[0] - 1}; found {tokens.min()}..{tokens.max()}"
        )
    counts = np.bincount(tokens.ravel(), minlength=embeddings.shape[0])
    return embedding_stats_from_counts(embeddings, counts, ridge=ridge, metadata=metadata)


def embedding_stats_from_array(
    token_embeddings: np.ndarray,
    *,
    ridge: float = 0.0,
    metadata: Mapping[str, Any] | None = None,
) -> EmbeddingStats:
    """Statistics of an N x E array of token embeddings (the original's input:
    the stacked output of ``save_embedding``), computed as the original did
    (``np.cov`` of the transposed array)."""
    X = np.asarray(token_embeddings, dtype=np.float64)
    if X.ndim != 2:
        raise AnalysisError(f"token embeddings must be an N x E array, got shape {X.shape}")
    n = X.shape[0]
    mean = X.mean(axis=0) if n else np.full(X.shape[1], np.nan)
    covariance = np.cov(X.T) if n > 1 else None
    if covariance is not None:
        covariance = np.atleast_2d(covariance)
    n_types = len(np.unique(X, axis=0)) if n else 0
    centered_mean = float(np.abs((X - mean).mean(axis=0)).max()) if n else float("nan")

    def whitened_covariance(Z: np.ndarray) -> np.ndarray:
        return np.atleast_2d(np.cov((X @ Z.T).T))

    return _finish_stats(mean, covariance, n, n_types, X.shape[1], ridge, centered_mean,
                         whitened_covariance, metadata)


def _finish_stats(mean, covariance, n_tokens, n_types, E, ridge, centered_mean,
                  whitened_covariance, metadata) -> EmbeddingStats:
    advice = ("Use a larger or more varied reference text (usually the training text), "
              "or pass a small ridge (e.g. ridge=1e-6 times the mean variance, "
              "--ridge on the command line) to regularise the covariance.")
    if covariance is None:
        raise SingularCovarianceError(
            f"{n_tokens} token(s) cannot give a covariance (need at least 2). {advice}"
        )
    if ridge < 0:
        raise AnalysisError(f"ridge must be >= 0, got {ridge}")
    covariance = covariance + ridge * np.eye(E)
    variances = np.diag(covariance)
    problems = []
    if n_types <= E and ridge == 0:
        problems.append(
            f"the text has {n_types} distinct word(s), so the covariance of its {E}-dimensional "
            f"embeddings has rank at most {max(n_types - 1, 0)} < {E}"
        )
    flat = np.flatnonzero(variances <= 0)
    if len(flat):
        problems.append(
            f"embedding dimension(s) {flat[:10].tolist()} have zero variance over the text "
            "(frozen or zero embeddings?)"
        )
    L = None
    if not problems:
        try:
            L = np.linalg.cholesky(covariance)
        except np.linalg.LinAlgError:
            problems.append("the covariance is not positive definite (Cholesky failed)")
    if L is not None:
        # Cholesky can succeed on a numerically singular matrix; a pivot at rounding level
        # would make Z explode without a clear error.
        pivots = np.diag(L) ** 2
        if pivots.min() <= 1e-12 * max(pivots.max(), np.finfo(float).tiny):
            problems.append(
                f"the covariance is numerically singular (smallest Cholesky pivot "
                f"{pivots.min():.3e} vs largest {pivots.max():.3e}: some embedding "
                "direction has no variance over the text)"
            )
            L = None
    if L is None:
        raise SingularCovarianceError(
            "cannot normalise to equal variance: " + "; ".join(problems) + ". " + advice
        )
    Z = solve_triangular(L, np.eye(E), lower=True)
    checks = SanityChecks(
        centered_mean_max=centered_mean,
        identity_error=_identity_error(Z, L),
        condition_number=_condition_number(Z),
        whitened_covariance_error=float(np.abs(whitened_covariance(Z) - np.eye(E)).max()),
    )
    if not checks.well_conditioned:
        warnings.warn(
            f"condition number of the whitening matrix Z is {checks.condition_number:.4g} "
            f"(> {CONDITION_WARNING:g}): normalised gradients will be dominated by embedding "
            "directions with little variance",
            ConditioningWarning,
            stacklevel=3,
        )
    meta = dict(metadata or {})
    meta["ridge"] = float(ridge)
    return EmbeddingStats(mean=np.asarray(mean, dtype=np.float64), covariance=covariance,
                          cholesky=L, whitening=Z, n_tokens=int(n_tokens), n_types=int(n_types),
                          checks=checks, metadata=meta)


def _identity_error(Z: np.ndarray, L: np.ndarray) -> float:
    return float(np.abs(Z @ L @ L.T @ Z.T - np.eye(len(Z))).max())


def _condition_number(Z: np.ndarray) -> float:
    s = np.linalg.svd(Z, compute_uv=False)
    return float(s[0] / s[-1]) if s[-1] > 0 else math.inf



def embedding_stats_for_model(
    model: Any,
    text: str | os.PathLike | np.ndarray | None = None,
    *,
    weighting: str = "token",
    ridge: float = 0.0,
    **read_kwargs: Any,
) -> EmbeddingStats:
    """Statistics of a trained model's embeddings.

    ``weighting="token"``: over the tokens of ``text``, a file (read with the
    original's rules: ``<eos>`` per line, unknown words as ``<unk>``) or an array of
    token ids.  ``weighting="type"``: over the rows of the embedding table, each word
    of the vocabulary once (``<unk>``, ``<eos>`` and ``<bos>`` included), no text;
    that is what the original's ``save_embedding`` file held, so it reproduces the
    papers' normalisation.  The weighting and the model's (and text's) identity go
    into the metadata.
    """
    from ..data import read_tokens

    if weighting not in WEIGHTINGS:
        raise AnalysisError(f"weighting must be one of {', '.join(WEIGHTINGS)}, got {weighting!r}")
    model_meta = {"source": str(getattr(model, "source", "")),
                  "identity": model.identity() if hasattr(model, "identity") else None}
    if weighting == "type":
        if text is not None:
            raise AnalysisError("type weighting uses the embedding table, not a text: "
                                "give no text (or use token weighting)")
        W = embedding_matrix(model)
        return embedding_stats_from_counts(
            W, np.ones(W.shape[0], dtype=np.int64), ridge=ridge,
            metadata={"model": model_meta, "weighting": "type"})
    if text is None:
        raise AnalysisError("token weighting needs a text (usually the training text)")
    if isinstance(text, np.ndarray):
        tokens = text
        text_meta: dict[str, Any] = {"source": "token array"}
    else:
        # read as the model reads texts unless told: a model from elsewhere reads them plainly
        read_kwargs.setdefault("tokenization", getattr(model, "tokenization", "original"))
        tokens = read_tokens(text, model.vocab, **read_kwargs)
        text_meta = file_identity(text) | {"tokenization": read_kwargs["tokenization"]}
    text_meta["tokens"] = int(len(tokens))
    meta = {"model": model_meta, "text": text_meta, "weighting": "token"}
    if len(tokens) == 0:
        raise AnalysisError(f"{text_meta.get('path', 'the text')} holds no tokens")
    return embedding_stats_from_tokens(embedding_matrix(model), tokens, ridge=ridge,
                                       metadata=meta)
