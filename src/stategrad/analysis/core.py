"""Memory analysis of average state gradients: normalisation, spectra, memory curves,
relative memory of a property.

Everything here works on a :class:`~stategrad.gradients.GradientResult` (the engine's
sums and counts per delay and class) plus, for normalisation, the statistics of
the embeddings of a reference text (:class:`EmbeddingStats`).  The mathematics is
the project's ``method.md``:

- ``mu``, ``Sigma`` (unbiased) of a set of embeddings: the tokens of a reference
  text (token weighted) or the rows of the embedding table (type weighted, what the
  original's ``save_embedding`` file gave), ``L = cholesky(Sigma)`` (lower),
  ``Z = L^-1``.  Whitened inputs ``z = Z (x - mu)`` have identity covariance and
  ``ds/dz = G L``, so the *normalised* average gradient of delay d is ``Gbar_d L``.
- The singular values of ``Gbar_d L`` per delay; their sum against d is the
  memory curve.
- A difference vector ``v`` between two mean embeddings gives the direction
  ``n = Z v / |Z v|``; relative memory ``rel(d) = |Gbar_d L n| / s_1(Gbar_d L)``;
  subspace cosine ``|V_k n|`` with ``V_k`` the top k right singular vectors.

A (delay, class) cell without occurrences has no average: the functions here
say so (``EmptyClassError`` from single-cell functions, ``None`` entries plus an
``empty`` list in tables), never a silent NaN in a printed or written number.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import warnings
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from scipy.linalg import solve_triangular

from ..atomic import write_bytes_atomic, write_text_atomic
from ..gradients import EmptyClassError, GradientResult, json_default
from . import uncertainty
from ._blas import single_threaded_blas

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


class AnalysisError(ValueError):
    """An analysis that cannot be done as asked (bad input, missing data)."""


class SingularCovarianceError(AnalysisError):
    """The embedding covariance of the reference text has no Cholesky factor."""


class ConditioningWarning(UserWarning):
    """The whitening matrix is badly conditioned (condition number above 100)."""


# =========================================================================================
# Embedding statistics
# =========================================================================================


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


def load_npy(path: str | os.PathLike, key: str | None = None) -> np.ndarray:
    """One array from a .npy file (or ``key`` of a .npz), never unpickling; a damaged
    or foreign file is an AnalysisError that names it."""
    try:
        if key is None:
            return np.load(path, allow_pickle=False)
        with np.load(path, allow_pickle=False) as data:
            return data[key]
    # numpy raises these for a truncated, foreign or pickled file
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise AnalysisError(f"{path} is not a readable array file: {exc}") from exc


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


def _normalization_line(info: dict[str, Any] | None) -> list[str]:
    if not info:
        return []
    src = f" ({info['source']})" if info.get("source") else ""
    return [f"normalisation{src}: {info['text']}"]


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


def file_identity(path: str | os.PathLike) -> dict[str, Any]:
    """Path, size and SHA-256 of a file: enough to tell later which text was used."""
    path = Path(path)
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return {"path": str(path), "bytes": path.stat().st_size, "sha256": digest.hexdigest()}


def embedding_matrix(model: Any) -> np.ndarray:
    """The (V, E) input embedding matrix of a :class:`~stategrad.lm.LanguageModel`
    (or of a bare RNNLM module), as float64."""
    module = getattr(model, "module", model)
    try:
        weight = module.embedding.weight
    except AttributeError:
        raise AnalysisError(f"{type(model).__name__} has no embedding layer") from None
    return weight.detach().to("cpu").double().numpy()


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
        tokens = read_tokens(text, model.vocab, **read_kwargs)
        text_meta = file_identity(text)
    text_meta["tokens"] = int(len(tokens))
    meta = {"model": model_meta, "text": text_meta, "weighting": "token"}
    if len(tokens) == 0:
        raise AnalysisError(f"{text_meta.get('path', 'the text')} holds no tokens")
    return embedding_stats_from_tokens(embedding_matrix(model), tokens, ridge=ridge,
                                       metadata=meta)


def read_token_embeddings(path: str | os.PathLike) -> np.ndarray:
    """An N x E array of token embeddings: a ``.npy`` (N x E), a ``.npz`` (``arr_0``),
    or the original's ``save_embedding`` directory (``0.npy``, ``1.npy``, ... one per token)."""
    path = Path(path)
    if path.is_dir():
        files = sorted((f for f in path.glob("*.npy") if f.stem.isdigit()), key=lambda f: int(f.stem))
        if not files:
            raise AnalysisError(f"{path} holds no numbered .npy embedding files")
        return np.stack([load_npy(f) for f in files])
    if not path.is_file():
        raise AnalysisError(f"embedding file not found: {path}")
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as data:
            key = "arr_0" if "arr_0" in data else next(iter(data.keys()))
        return np.asarray(load_npy(path, key))
    return load_npy(path)


# =========================================================================================
# Embedding export
# =========================================================================================


def export_token_embeddings(
    model: Any, tokens: np.ndarray, out: str | os.PathLike, *, chunk: int = 65536
) -> tuple[Path, Path]:
    """The original's ``save_embedding`` as one file: ``out`` (.npy, N x E, one row per
    token, the model's dtype) and ``out.dict`` (``word<TAB>row``, the row of each
    word's first occurrence, so ``all_emb[int(row)]`` is that word's embedding as
    the original's analysis scripts read it).  Rows are written in chunks to a
    memory-mapped file, so a long text needs no N x E array in memory."""
    from numpy.lib.format import open_memmap

    out = Path(out)
    if out.suffix != ".npy":
        out = out.with_name(out.name + ".npy")
    out.parent.mkdir(parents=True, exist_ok=True)
    module = getattr(model, "module", model)
    weight = module.embedding.weight.detach().to("cpu").numpy()
    tokens = np.asarray(tokens)
    array = open_memmap(out, mode="w+", dtype=weight.dtype, shape=(len(tokens), weight.shape[1]))
    for lo in range(0, len(tokens), chunk):
        array[lo : lo + chunk] = weight[tokens[lo : lo + chunk]]
    array.flush()
    del array
    uniq, first = np.unique(tokens, return_index=True)
    dict_path = out.with_name(out.stem + ".dict")
    words = model.vocab.words
    with open(dict_path, "w", encoding="utf-8") as handle:
        for w_id, row in sorted(zip(uniq.tolist(), first.tolist(), strict=True), key=lambda p: p[1]):
            handle.write(f"{words[w_id]}\t{row}\n")
    return out, dict_path


def export_word_embeddings(model: Any, out: str | os.PathLike) -> tuple[Path, Path]:
    """The (V, E) embedding matrix as ``out`` (.npy) and the vocabulary as
    ``out.dict`` (``word<TAB>id``; row i of the matrix is word id i)."""
    out = Path(out)
    if out.suffix != ".npy":
        out = out.with_name(out.name + ".npy")
    out.parent.mkdir(parents=True, exist_ok=True)
    module = getattr(model, "module", model)
    np.save(out, module.embedding.weight.detach().to("cpu").numpy())
    dict_path = out.with_name(out.stem + ".dict")
    model.vocab.save(dict_path)
    return out, dict_path


# =========================================================================================
# Spectra of average gradients
# =========================================================================================

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


def _check_normalizer(L: np.ndarray | None, E: int) -> None:
    if L is not None and L.shape != (E, E):
        raise AnalysisError(
            f"normalisation matrix is {L.shape[0]} x {L.shape[1]} but the gradients have "
            f"embedding size {E}: were the statistics made with the same model?"
        )


def average_gradient(
    result: GradientResult, d: int, c: int | str = "all", *, normalize: Normalizer = None
) -> np.ndarray:
    """``Gbar_d`` of class c, or ``Gbar_d L`` with a normaliser.  Raises
    :class:`~stategrad.gradients.EmptyClassError` when the class has no occurrence at d."""
    G = result.mean(d, c)
    L = normalizer_matrix(normalize)
    _check_normalizer(L, result.embedding_size)
    return G if L is None else G @ L


@dataclass
class Spectrum:
    """The SVD ``G = U diag(s) Vh`` of one (normalised) average gradient.

    ``right_vectors`` are the rows of Vh: the embedding directions (whitened ones,
    when normalised) the state keeps best, in order of ``singular_values``."""

    delay: int
    class_name: str
    count: int
    normalized: bool
    singular_values: np.ndarray  # (min(H, E),)
    right_vectors: np.ndarray  # (min(H, E), E)
    left_vectors: np.ndarray  # (H, min(H, E))

    @property
    def total(self) -> float:
        return float(self.singular_values.sum())

    def top(self, k: int) -> np.ndarray:
        return self.singular_values[:k]


@single_threaded_blas
def spectrum(
    result: GradientResult, d: int, c: int | str = "all", *, normalize: Normalizer = None
) -> Spectrum:
    """Full SVD of ``Gbar_d`` (or ``Gbar_d L``) for one delay and class."""
    L = normalizer_matrix(normalize)
    G = average_gradient(result, d, c, normalize=L)
    if not np.isfinite(G).all():  # the SVD would fail with an unhelpful LinAlgError
        raise AnalysisError(f"the average gradient at delay {d}, class "
                            f"{result.classes[result.class_index(c)]!r} holds NaN or infinite values")
    u, s, vh = np.linalg.svd(G, full_matrices=False)
    return Spectrum(int(d), result.classes[result.class_index(c)], result.count(d, c),
                    L is not None, s, vh, u)


def check_finite(result: GradientResult, source: str | os.PathLike = "the result") -> None:
    """An error naming ``source`` and the first (delay, class) whose sums are NaN or
    infinite or whose count is negative, in the totals or in a block: such a result
    comes from a diverged model or a damaged file, and no analysis of it means anything."""
    def first_bad(sums: np.ndarray, counts: np.ndarray) -> str | None:
        bad = ~np.isfinite(sums).all(axis=(-2, -1)) | (counts < 0)
        if not bad.any():
            return None
        d, c = (int(i) for i in np.argwhere(bad)[0])
        what = "a negative count" if counts[d, c] < 0 else "NaN or infinite sums"
        more = int(bad.sum()) - 1
        return (f"{what} at delay {d}, class {result.classes[c]!r}"
                + (f" (and {more} more delay/class cells)" if more else ""))

    where = first_bad(result.sums, result.counts)
    # Blocks read lazily from a file are checked by the interval code as it reads each
    # delay (uncertainty.replicates), so that they are not read twice.
    if where is None and isinstance(result.block_sums, np.ndarray):
        for b in range(len(result.block_sums)):
            found = first_bad(result.block_sums[b], result.block_counts[b])
            if found:
                where = f"{found} in block {b} (start {int(result.block_starts[b])})"
                break
    if where is not None:
        raise AnalysisError(f"{source}: {where}: the run that wrote it went wrong (a diverged "
                            "model or a damaged file); recompute it")


@single_threaded_blas
def spectra(
    result: GradientResult, c: int | str = "all", *, normalize: Normalizer = None
) -> list[Spectrum | None]:
    """:func:`spectrum` for every delay of class c; ``None`` where c has no occurrence."""
    L = normalizer_matrix(normalize)
    out: list[Spectrum | None] = []
    for d in result.delays:
        try:
            out.append(spectrum(result, int(d), c, normalize=L))
        except EmptyClassError:
            out.append(None)
    return out


def _class_list(result: GradientResult, classes: Iterable[int | str] | None) -> list[str]:
    if classes is None:
        return list(result.classes)
    return [result.classes[result.class_index(c)] for c in classes]


def _fmt(x: float | None, width: int = 11) -> str:
    if x is None:
        return "-".rjust(width)
    return f"{x:{width}.5g}"


@dataclass
class SingularValueTable:
    """Top-k singular values and their total per (class, delay).

    ``rows`` are dicts ``class, delay, count, sv_1..sv_k, sum``; the values are
    ``None`` where the class has no occurrence at that delay (listed in ``empty``).
    """

    top: int
    normalized: bool
    rows: list[dict[str, Any]]
    #: What the normalisation statistics were computed from (their weighting), if any.
    normalization: dict[str, Any] | None = None

    @property
    def empty(self) -> list[tuple[str, int]]:
        return [(r["class"], r["delay"]) for r in self.rows if r["count"] == 0]

    @property
    def columns(self) -> list[str]:
        return ["class", "delay", "count"] + [f"sv_{i + 1}" for i in range(self.top)] + ["sum"]

    def format(self) -> str:
        cols = self.columns
        header = f"{'class':<12}{'delay':>6}{'count':>10}" + "".join(f"{c:>11}" for c in cols[3:])
        lines = [("normalised (G L)" if self.normalized else "raw (G)") + " singular values",
                 header]
        for r in self.rows:
            count = "-" if r["count"] is None else r["count"]  # unknown for averaged files
            lines.append(f"{r['class']:<12}{r['delay']:>6}{count:>10}"
                         + "".join(_fmt(r[c]) for c in cols[3:]))
        lines.extend(_empty_notes(self.empty))
        lines.extend(_normalization_line(self.normalization))
        return "\n".join(lines)

    def to_csv(self, path: str | os.PathLike) -> Path:
        return _write_csv(path, self.columns, self.rows)

    def to_json(self, path: str | os.PathLike) -> Path:
        return _write_json(path, {"normalized": self.normalized, "top": self.top,
                                  "normalization": self.normalization,
                                  "rows": self.rows, "empty": self.empty})


def _empty_notes(empty: Sequence[tuple[str, int]]) -> list[str]:
    by_class: dict[str, list[int]] = {}
    for name, d in empty:
        by_class.setdefault(name, []).append(d)
    return [f"note: class {name!r} has no occurrences at delay(s) {_ranges(ds)}: no average there"
            for name, ds in by_class.items()]


def _ranges(values: Sequence[int]) -> str:
    parts = []
    start = prev = None
    for v in list(values) + [None]:
        if v is not None and prev is not None and v == prev + 1:
            prev = v
            continue
        if start is not None:
            parts.append(str(start) if start == prev else f"{start}-{prev}")
        start = prev = v
    return ", ".join(parts)


def _write_csv(path, columns, rows) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in columns})
    return write_text_atomic(path, buffer.getvalue(), newline="")


def _write_json(path, payload) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_text_atomic(path, json.dumps(payload, indent=1, default=json_default) + "\n")


@single_threaded_blas
def singular_value_table(
    result: GradientResult,
    *,
    normalize: Normalizer = None,
    classes: Iterable[int | str] | None = None,
    top: int = 5,
) -> SingularValueTable:
    """The original ``calculate_svs.py`` figures for every delay and class: the ``top``
    largest singular values of ``Gbar_d L`` (``Gbar_d`` without normaliser) and the
    sum of all of them."""
    L = normalizer_matrix(normalize)
    _check_normalizer(L, result.embedding_size)
    rank = min(result.hidden_size, result.embedding_size)
    if not 1 <= top <= rank:
        raise AnalysisError(f"top must be between 1 and min(H, E) = {rank}, got {top}")
    rows = []
    for name in _class_list(result, classes):
        for sp, d in zip(spectra(result, name, normalize=L), result.delays, strict=True):
            row: dict[str, Any] = {"class": name, "delay": int(d),
                                   "count": result.count(int(d), name)}
            for i in range(top):
                row[f"sv_{i + 1}"] = None if sp is None else float(sp.singular_values[i])
            row["sum"] = None if sp is None else sp.total
            rows.append(row)
    return SingularValueTable(top, L is not None, rows, normalization_info(normalize))


# =========================================================================================
# Memory curves
# =========================================================================================

SpanStatus = Literal["falls", "never", "undefined"]


@dataclass
class MemorySpan:
    """The first delay at which a memory curve falls below ``fraction`` of its
    delay-0 value.

    Precisely: with ``S(d)`` the sum of singular values at delay d, ``delay`` is the
    smallest d >= 1 with occurrences and ``S(d) < fraction * S(0)``; status
    ``"falls"``.  When no such d exists among the result's delays, ``delay`` is
    ``None`` and status ``"never"``: the memory reaches beyond the largest delay
    computed.  When S(0) is missing (no occurrence at delay 0) or zero, there is
    nothing to compare with: status ``"undefined"``.  Delays without occurrences
    are skipped, never taken as a fall.
    """

    delay: int | None
    status: SpanStatus
    fraction: float
    threshold: float | None
    max_delay: int

    def format(self) -> str:
        if self.status == "falls":
            return str(self.delay)
        if self.status == "never":
            return f">{self.max_delay}"
        return "undefined"


def memory_span(totals: np.ndarray, counts: np.ndarray, fraction: float = 0.1) -> MemorySpan:
    """:class:`MemorySpan` of a curve ``totals[d]`` whose delays have ``counts[d]``
    occurrences (entries with count 0 are ignored, whatever their value)."""
    if not 0 < fraction < 1:
        raise AnalysisError(f"fraction must lie strictly between 0 and 1, got {fraction}")
    totals = np.asarray(totals, dtype=np.float64)
    counts = np.asarray(counts)
    last = len(totals) - 1
    if len(totals) == 0 or counts[0] == 0 or not totals[0] > 0:
        return MemorySpan(None, "undefined", fraction, None, last)
    threshold = fraction * totals[0]
    for d in range(1, len(totals)):
        if counts[d] > 0 and totals[d] < threshold:
            return MemorySpan(d, "falls", fraction, float(threshold), last)
    return MemorySpan(None, "never", fraction, float(threshold), last)


@dataclass
class MemoryCurve:
    """Sum of singular values against delay for one class (``None`` where the class has
    no occurrence), with its counts and span."""

    class_name: str
    delays: list[int]
    counts: list[int]
    totals: list[float | None]
    top1: list[float | None]
    span: MemorySpan
    #: Confidence band of ``totals`` (None without an interval method, or where undefined).
    lower: list[float | None] | None = None
    upper: list[float | None] | None = None
    #: The span over the resampling replicates: (smallest, largest) delay at which a
    #: replicate falls, and how many replicates never fall within the delays computed.
    span_range: tuple[int | None, int | None] | None = None
    span_never: int | None = None

    @property
    def empty_delays(self) -> list[int]:
        return [d for d, n in zip(self.delays, self.counts, strict=True) if n == 0]

    def span_text(self) -> str:
        """The span, with its range over the replicates when there is one."""
        text = self.span.format()
        if self.span_range is None:
            return text
        lo, hi = self.span_range
        parts = []
        if lo is not None:
            parts.append(f"{lo}-{hi}" if hi != lo else f"{lo}")
        if self.span_never:
            parts.append(f"{self.span_never} never")
        return f"{text} [{', '.join(parts) or 'n/a'}]"


#: Most classes whose interval lines the text table of a memory report shows.
MAX_BAND_COLUMNS = 6


@dataclass
class MemoryReport:
    normalized: bool
    fraction: float
    curves: list[MemoryCurve]
    #: How the bands were computed ("jackknife", "bootstrap") and their level; None: no bands.
    interval: str | None = None
    level: float | None = None
    #: What the normalisation statistics were computed from (their weighting), if any.
    normalization: dict[str, Any] | None = None

    def curve(self, name: str) -> MemoryCurve:
        for c in self.curves:
            if c.class_name == name:
                return c
        raise AnalysisError(f"no curve for class {name!r}; have {[c.class_name for c in self.curves]}")

    def _columns(self) -> list[str]:
        base = ["class", "delay", "count", "sum", "sv_1"]
        return base + ["lower", "upper"] if self.interval else base

    def rows(self) -> list[dict[str, Any]]:
        rows = []
        for c in self.curves:
            for i, (d, n, s, s1) in enumerate(zip(c.delays, c.counts, c.totals, c.top1, strict=True)):
                row: dict[str, Any] = {"class": c.class_name, "delay": d, "count": n, "sum": s,
                                       "sv_1": s1}
                if self.interval:
                    row["lower"] = c.lower[i] if c.lower else None
                    row["upper"] = c.upper[i] if c.upper else None
                rows.append(row)
        return rows

    def span_rows(self) -> list[dict[str, Any]]:
        rows = []
        for c in self.curves:
            row: dict[str, Any] = {"class": c.class_name, "span": c.span.delay,
                                   "status": c.span.status, "fraction": c.span.fraction,
                                   "threshold": c.span.threshold,
                                   "sum_at_0": c.totals[0] if c.totals else None,
                                   "empty_delays": c.empty_delays}
            if self.interval:
                lo, hi = c.span_range or (None, None)
                row.update(span_min=lo, span_max=hi, span_never=c.span_never)
            rows.append(row)
        return rows

    def format(self) -> str:
        kind = "normalised (G L)" if self.normalized else "raw (G)"
        names = [c.class_name for c in self.curves]
        lines = [f"memory curves: sum of {kind} singular values per delay"]
        # A line of intervals under every delay is readable for a few classes only.
        show_bands = bool(self.interval) and len(self.curves) <= MAX_BAND_COLUMNS
        if show_bands:
            lines.append(f"(with its {100 * self.level:g}% {self.interval} interval)")
        elif self.interval:
            lines.append(f"({100 * self.level:g}% {self.interval} intervals: in --csv/--json, "
                         f"or here for at most {MAX_BAND_COLUMNS} classes given with --classes)")
        lines.append(f"{'delay':>6}" + "".join(f"{n[:14]:>15}" for n in names))
        for i, d in enumerate(self.curves[0].delays if self.curves else []):
            lines.append(f"{d:>6}" + "".join(_fmt(c.totals[i], 15) for c in self.curves))
            if show_bands:
                lines.append(" " * 6 + "".join(_fmt_band(c, i) for c in self.curves))
        lines.append("")
        lines.append(f"memory span: first delay whose sum is below {self.fraction:g} x the sum at "
                     "delay 0 ('>D': never within the delays computed)")
        if self.interval:
            lines.append(f"[range over the {self.interval} replicates; 'k never': k replicates "
                         "do not fall]")
        for c in self.curves:
            lines.append(f"  {c.class_name:<14}{c.span_text():>8}")
        lines.extend(_empty_notes([(c.class_name, d) for c in self.curves for d in c.empty_delays]))
        lines.extend(_normalization_line(self.normalization))
        return "\n".join(lines)

    def to_csv(self, path: str | os.PathLike) -> Path:
        return _write_csv(path, self._columns(), self.rows())

    def to_json(self, path: str | os.PathLike) -> Path:
        return _write_json(path, {"normalized": self.normalized, "fraction": self.fraction,
                                  "normalization": self.normalization,
                                  "interval": self.interval, "level": self.level,
                                  "curves": self.rows(), "spans": self.span_rows()})


def _fmt_band(curve: MemoryCurve, i: int) -> str:
    lo = curve.lower[i] if curve.lower else None
    hi = curve.upper[i] if curve.upper else None
    if lo is None or hi is None:
        return f"{'':>15}"
    return f"{f'[{lo:.3g}, {hi:.3g}]':>15}"


def _none_if_nan(values: np.ndarray) -> list[float | None]:
    return [float(x) if np.isfinite(x) else None for x in values]


@single_threaded_blas
def memory_curves(
    result: GradientResult,
    *,
    normalize: Normalizer = None,
    classes: Iterable[int | str] | None = None,
    fraction: float = 0.1,
    interval: str | None = None,
    level: float = 0.95,
    n_boot: int = 200,
    seed: int = 0,
) -> MemoryReport:
    """Memory curve (sum of singular values of ``Gbar_d L`` against d) and
    :class:`MemorySpan` of every class.

    With ``interval`` ("jackknife" or "bootstrap"; the result must have been computed
    with blocks) every curve also gets its confidence band (see
    :mod:`stategrad.uncertainty`) and its span the range of the spans of the
    resampling replicates, which says how firmly the data fix it.
    """
    L = normalizer_matrix(normalize)
    _check_normalizer(L, result.embedding_size)
    names = _class_list(result, classes)
    bands = _memory_bands(result, L, names, fraction, interval, level, n_boot, seed)
    curves = []
    for name in names:
        sps = spectra(result, name, normalize=L)
        totals = [None if sp is None else sp.total for sp in sps]
        counts = [int(n) for n in result.counts[:, result.class_index(name)]]
        span = memory_span(np.array([np.nan if t is None else t for t in totals]),
                           np.array(counts), fraction)
        curves.append(MemoryCurve(
            name, [int(d) for d in result.delays], counts, totals,
            [None if sp is None else float(sp.singular_values[0]) for sp in sps], span,
        ))
        if bands is not None:
            curves[-1].lower, curves[-1].upper, curves[-1].span_range, curves[-1].span_never = \
                bands[name]
    return MemoryReport(L is not None, fraction, curves,
                        interval if bands is not None else None,
                        level if bands is not None else None, normalization_info(normalize))


def _memory_bands(result: GradientResult, L: np.ndarray | None, names: list[str],
                  fraction: float, interval: str | None, level: float, n_boot: int,
                  seed: int) -> dict[str, tuple] | None:
    """Per class: band of the singular-value sum, and the span's range over replicates."""
    if interval in (None, "none"):
        return None

    reps = uncertainty.replicates(result, uncertainty.singular_values(L), classes=names,
                                  method=interval, n_boot=n_boot, seed=seed)
    band = reps.derive(uncertainty.sv_sum, level=level)
    sums = reps.replicates.sum(axis=-1)  # (R, D, C')
    out = {}
    for j, name in enumerate(reps.classes):
        counts = result.counts[:, result.class_index(name)]
        falls, never = [], 0
        for r in range(sums.shape[0]):
            if not reps.valid[r, 0, j]:
                continue
            # A replicate without a value at some delay (no occurrence left there) skips it,
            # exactly as the full-data span skips empty delays.
            rep_counts = np.where(reps.valid[r, :, j], counts, 0)
            span = memory_span(np.nan_to_num(sums[r, :, j]), rep_counts, fraction)
            if span.status == "falls":
                falls.append(span.delay)
            elif span.status == "never":
                never += 1
        span_range = (min(falls), max(falls)) if falls else (None, None)
        out[name] = (_none_if_nan(band.lower[:, j, 0]), _none_if_nan(band.upper[:, j, 0]),
                     span_range, never)
    return out


# =========================================================================================
# Difference vectors, relative memory, subspace cosine
# =========================================================================================


def word_ids(vocab: Any, words: Iterable[str]) -> tuple[np.ndarray, list[str]]:
    """Ids of ``words`` in ``vocab`` (a Vocabulary or word list) and the words it lacks."""
    index = {w: i for i, w in enumerate(getattr(vocab, "words", vocab))}
    ids, missing = [], []
    for w in dict.fromkeys(words):  # keep order, drop repeats
        if w in index:
            ids.append(index[w])
        else:
            missing.append(w)
    return np.asarray(ids, dtype=np.int64), missing


@dataclass
class DifferenceVector:
    """``v = mean(A) - mean(B)`` of two sets of words' embeddings.

    ``weighting`` is ``"types"`` (each word once) or ``"tokens"`` (each word as often
    as it occurs in a text; words that do not occur do not count).  ``n_shared``: words
    that were in both sets (left out of both, unless kept; see :func:`difference_vector`)."""

    vector: np.ndarray  # (E,)
    label: str
    weighting: str
    n_words: tuple[int, int]
    n_tokens: tuple[int, int] | None = None
    n_shared: int = 0
    shared: str = "drop"

    def save(self, path: str | os.PathLike) -> Path:
        """As a plain ``.npy`` (E,), the format the original's scripts load."""
        path = Path(path)
        np.save(path, self.vector)
        return path


def mean_embedding(
    embeddings: np.ndarray, ids: Iterable[int] | np.ndarray, token_counts: np.ndarray | None = None
) -> tuple[np.ndarray, int, int]:
    """Mean embedding of the words ``ids`` (a list of ids or a (V,) boolean mask):
    over types, or token weighted by ``token_counts`` (V,).  Returns the mean, the
    number of words and the number of tokens (= words without counts) behind it."""
    W = np.asarray(embeddings, dtype=np.float64)
    ids = np.asarray(ids)
    if ids.dtype == bool:
        ids = np.flatnonzero(ids)
    ids = np.unique(ids.astype(np.int64))
    if len(ids) == 0:
        raise AnalysisError("the word set is empty (none of its words is in the vocabulary)")
    if token_counts is None:
        return W[ids].mean(axis=0), len(ids), len(ids)
    weights = np.asarray(token_counts, dtype=np.float64)[ids]
    total = weights.sum()
    if total == 0:
        raise AnalysisError(
            f"none of the {len(ids)} words of the set occurs in the weighting text; "
            "use type weighting or another text"
        )
    return weights @ W[ids] / total, int((weights > 0).sum()), int(total)


def difference_vector(
    embeddings: np.ndarray,
    ids_a: Iterable[int] | np.ndarray,
    ids_b: Iterable[int] | np.ndarray,
    *,
    token_counts: np.ndarray | None = None,
    label: str = "A - B",
    shared: str = "drop",
) -> DifferenceVector:
    """Mean embedding of set A minus that of set B (see :func:`mean_embedding`).

    A word in both sets (``shared``; e.g. a word tagged both NN and NNS) adds the same
    embedding to both means and so blurs the property: by default (``"drop"``) it is
    left out of both.  ``"keep"`` keeps it in both, as the original's per-class mean
    embeddings did (one example per (word, tag) pair).
    """
    if shared not in ("drop", "keep"):
        raise AnalysisError(f"shared must be 'drop' or 'keep', got {shared!r}")
    a, b = _id_set(ids_a), _id_set(ids_b)
    common = np.intersect1d(a, b)
    if shared == "drop" and len(common):
        a, b = np.setdiff1d(a, common), np.setdiff1d(b, common)
        for name, ids in (("A", a), ("B", b)):
            if len(ids) == 0:
                raise AnalysisError(
                    f"every word of set {name} is also in the other set ({len(common)} shared "
                    "words); nothing is left to average once they are dropped (keep them with "
                    "shared='keep', --keep-shared on the command line)")
    ma, wa, ta = mean_embedding(embeddings, a, token_counts)
    mb, wb, tb = mean_embedding(embeddings, b, token_counts)
    weighting = "types" if token_counts is None else "tokens"
    return DifferenceVector(ma - mb, label, weighting, (wa, wb),
                            None if token_counts is None else (ta, tb), int(len(common)), shared)


def _id_set(ids: Iterable[int] | np.ndarray) -> np.ndarray:
    ids = np.asarray(list(ids) if not isinstance(ids, np.ndarray) else ids)
    if ids.dtype == bool:
        ids = np.flatnonzero(ids)
    return np.unique(ids.astype(np.int64))


def class_difference_vector(
    embeddings: np.ndarray,
    class_set: Any,
    class_a: str,
    class_b: str,
    *,
    token_counts: np.ndarray | None = None,
    shared: str = "drop",
) -> DifferenceVector:
    """Difference of the mean embeddings of two classes of a
    :class:`~stategrad.data.ClassSet` (e.g. ``NNS`` minus ``NN``); words of both
    classes are handled as ``shared`` says (see :func:`difference_vector`)."""
    def column(name: str) -> np.ndarray:
        try:
            return class_set.membership[:, class_set.names.index(name)]
        except ValueError:
            raise AnalysisError(f"no class {name!r}; the class set has {class_set.names}") from None

    return difference_vector(embeddings, column(class_a), column(class_b),
                             token_counts=token_counts, label=f"{class_a} - {class_b}",
                             shared=shared)


def whitened_direction(v: np.ndarray, whitening: np.ndarray) -> np.ndarray:
    """``n = Z v / |Z v|``: the unit direction in whitened space of an embedding-space
    difference ``v``."""
    zv = np.asarray(whitening, dtype=np.float64) @ np.asarray(v, dtype=np.float64)
    norm = np.linalg.norm(zv)
    if not norm > 0:
        raise AnalysisError("the difference vector is zero: the two word sets have the same "
                            "mean embedding, so there is no direction to measure")
    return zv / norm


@dataclass
class RelativeMemoryTable:
    """Per delay: ``relative`` = |Gbar_d^norm n| / s_1, ``cosine`` = |V_k n| (top_k
    right singular vectors), ``share`` = sum of the top_k singular values / sum of all.
    Values are ``None`` where the class has no occurrence at d (see ``empty``)."""

    class_name: str
    label: str
    top_k: int
    rows: list[dict[str, Any]]
    #: With bands, rows also carry relative_lower/upper and cosine_lower/upper.
    interval: str | None = None
    level: float | None = None
    #: What the normalisation statistics were computed from (their weighting).
    normalization: dict[str, Any] | None = None

    @property
    def empty(self) -> list[tuple[str, int]]:
        return [(self.class_name, r["delay"]) for r in self.rows if r["count"] == 0]

    def _columns(self) -> list[str]:
        base = ["delay", "count", "relative", "cosine", "share"]
        if self.interval:
            base += ["relative_lower", "relative_upper", "cosine_lower", "cosine_upper"]
        return base

    def format(self) -> str:
        lines = [f"relative memory of {self.label} (class {self.class_name}, "
                 f"subspace of the top {self.top_k} right singular vectors)"]
        header = f"{'delay':>6}{'count':>10}{'relative':>11}{'cosine':>11}{'share':>11}"
        if self.interval:
            lines.append(f"(with {100 * self.level:g}% {self.interval} intervals)")
            header += f"{'relative interval':>22}{'cosine interval':>22}"
        lines.append(header)
        for r in self.rows:
            line = (f"{r['delay']:>6}{r['count']:>10}" + _fmt(r["relative"])
                    + _fmt(r["cosine"]) + _fmt(r["share"]))
            if self.interval:
                for what in ("relative", "cosine"):
                    lo, hi = r.get(f"{what}_lower"), r.get(f"{what}_upper")
                    cell = "" if lo is None or hi is None else f"[{lo:.3g}, {hi:.3g}]"
                    line += f"{cell:>22}"
            lines.append(line)
        lines.extend(_empty_notes(self.empty))
        lines.extend(_normalization_line(self.normalization))
        return "\n".join(lines)

    def to_csv(self, path: str | os.PathLike) -> Path:
        return _write_csv(path, self._columns(), self.rows)

    def to_json(self, path: str | os.PathLike) -> Path:
        return _write_json(path, {"class": self.class_name, "label": self.label,
                                  "top_k": self.top_k, "normalization": self.normalization,
                                  "interval": self.interval,
                                  "level": self.level, "rows": self.rows, "empty": self.empty})


@single_threaded_blas
def relative_memory(
    result: GradientResult,
    v: np.ndarray | DifferenceVector,
    stats: EmbeddingStats,
    *,
    c: int | str = "all",
    top_k: int = 5,
    interval: str | None = None,
    level: float = 0.95,
    n_boot: int = 200,
    seed: int = 0,
) -> RelativeMemoryTable:
    """Relative memory and subspace cosine of the property ``v`` at every delay.

    With ``n = Z v / |Z v|`` and ``Gbar_d^norm = Gbar_d L``:
    ``relative(d) = |Gbar_d^norm n| / s_1(Gbar_d^norm)`` (1 when the state keeps the
    property as well as its best-kept direction, 0 when it forgets it),
    ``cosine(d) = |V_k n|`` (the length of n's projection on the span of the top k
    right singular vectors), ``share(d) = sum(s[:k]) / sum(s)``.

    The original's ``cos_subspace_diff_vector.py`` took ``vh[:thr + 1]``, i.e. k + 1
    vectors for its argument k; pass ``top_k = k + 1`` to reproduce its numbers.

    With ``interval`` ("jackknife" or "bootstrap", on a result with blocks) each row also
    gets the confidence interval of ``relative`` and ``cosine``.
    """
    label = v.label if isinstance(v, DifferenceVector) else "difference vector"
    vec = v.vector if isinstance(v, DifferenceVector) else np.asarray(v, dtype=np.float64)
    E = result.embedding_size
    if vec.shape != (E,):
        raise AnalysisError(f"difference vector has shape {vec.shape}; the gradients need ({E},)")
    _check_normalizer(stats.cholesky, E)
    rank = min(result.hidden_size, E)
    if not 1 <= top_k <= rank:
        raise AnalysisError(f"top_k must be between 1 and min(H, E) = {rank}, got {top_k}")
    n = whitened_direction(vec, stats.whitening)
    name = result.classes[result.class_index(c)]
    rows = []
    for sp, d in zip(spectra(result, name, normalize=stats), result.delays, strict=True):
        row: dict[str, Any] = {"delay": int(d), "count": result.count(int(d), name)}
        if sp is None:
            row.update(relative=None, cosine=None, share=None)
        else:
            s = sp.singular_values
            # |G n| = |diag(s) Vh n| because U has orthonormal columns.
            row["relative"] = float(np.linalg.norm(s * (sp.right_vectors @ n)) / s[0]) if s[0] > 0 else None
            row["cosine"] = float(np.linalg.norm(sp.right_vectors[:top_k] @ n))
            row["share"] = float(s[:top_k].sum() / s.sum()) if s.sum() > 0 else None
        rows.append(row)
    info = normalization_info(stats)
    if interval in (None, "none"):
        return RelativeMemoryTable(name, label, top_k, rows, normalization=info)

    band = uncertainty.band(result, uncertainty.direction_statistic(n[None], stats.cholesky,
                                                                    k=top_k),
                            classes=[name], method=interval, level=level, n_boot=n_boot,
                            seed=seed)
    for d, row in enumerate(rows):
        for col, what in ((0, "relative"), (1, "cosine")):
            row[f"{what}_lower"] = _none_if_nan(band.lower[d, 0, col:col + 1])[0]
            row[f"{what}_upper"] = _none_if_nan(band.upper[d, 0, col:col + 1])[0]
    return RelativeMemoryTable(name, label, top_k, rows, interval, level, info)


__all__ = [
    "AnalysisError", "ConditioningWarning", "DifferenceVector", "EmbeddingStats",
    "MemoryCurve", "MemoryReport", "MemorySpan", "RelativeMemoryTable", "SanityChecks",
    "SingularCovarianceError", "SingularValueTable", "Spectrum", "average_gradient",
    "check_finite", "checked_normalizer",
    "class_difference_vector", "difference_vector", "embedding_matrix",
    "embedding_stats_for_model", "embedding_stats_from_array", "embedding_stats_from_counts",
    "embedding_stats_from_tokens", "export_token_embeddings", "export_word_embeddings",
    "file_identity", "load_embedding_stats", "mean_embedding", "memory_curves", "memory_span",
    "normalization_info", "normalizer_matrix", "read_token_embeddings", "relative_memory", "singular_value_table",
    "spectra", "spectrum", "stats_weighting", "weighting_text", "whitened_direction", "word_ids",
]
