"""The sentence view: for a sentence, how strongly each earlier word still moves the
state at each later word (the Frobenius norm or top singular value of every
``G(t, k - t)``, raw or normalised ``G L``).

The view draws gradients computed by the caller (:func:`sentence_map_from_gradients`
takes the ``(T, T, H, E)`` array of :func:`stategrad.gradients.sentence_gradients`);
:func:`sentence_map` is the one convenience that computes them from a model first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..ablation import sentence_ablation
from ..gradients import sentence_gradients
from .plots import plot_sentence
from .style import ReportError, resolve_normalizer

MEASURES = ("fro", "sv1")


@dataclass
class SentenceMap:
    """``matrix[t, k]``: size of ``G(t, k - t) = d s_k / d x_t`` (NaN where k < t)."""

    words: list[str]
    token_ids: np.ndarray
    matrix: np.ndarray
    measure: str
    normalised: bool
    state: str
    layer: int
    unknown: list[str] = field(default_factory=list)
    #: ``ablation[t, k]``: KL of the prediction made at k when the word at t is replaced
    #: (:func:`stategrad.ablation.sentence_ablation`); None without one.
    ablation: np.ndarray | None = None
    ablation_label: str = ""

    @property
    def measure_label(self) -> str:
        what = "Frobenius norm" if self.measure == "fro" else "top singular value"
        g = "G L" if self.normalised else "G"
        return f"{what} of {g}(t, k - t)"


def tokenize(text: str | Sequence[str]) -> list[str]:
    """Words of a typed sentence: split on white space (the corpora are pre-tokenised)."""
    words = text.split() if isinstance(text, str) else [str(w) for w in text]
    if not words:
        raise ReportError("the sentence is empty: give at least one word")
    return words


def _check_measure(measure: str) -> None:
    if measure not in MEASURES:
        raise ReportError(f"unknown measure {measure!r}; choose one of {MEASURES}")


def sentence_map_from_gradients(
    gradients: np.ndarray,
    words: Sequence[str],
    token_ids: np.ndarray,
    *,
    state: str = "cell",
    layer: int = -1,
    normalize=None,
    measure: str = "fro",
    unknown: Sequence[str] = (),
) -> SentenceMap:
    """The :class:`SentenceMap` of sentence gradients ``G[t, k] = d s_k / d x_t``
    (``(T, T, H, E)``, as :func:`stategrad.gradients.sentence_gradients` returns them)."""
    _check_measure(measure)
    L = resolve_normalizer(normalize)
    G = np.asarray(gradients)
    if L is not None:
        if L.shape[0] != G.shape[-1]:
            raise ReportError(
                f"normalisation statistics are for {L.shape[0]}-dimensional embeddings; "
                f"the model's are {G.shape[-1]}-dimensional"
            )
        G = G @ L
    matrix = _matrix_size(G, measure)
    T = len(words)
    matrix[np.tril_indices(T, -1)] = np.nan  # the future never moves the past
    return SentenceMap(list(words), token_ids, matrix, measure, L is not None, state, layer,
                       list(unknown))


def sentence_map(
    model: Any,
    text: str | Sequence[str],
    *,
    state: str = "cell",
    layer: int = -1,
    normalize=None,
    measure: str = "fro",
    L: np.ndarray | None = None,
    ablate: str | None = None,
) -> SentenceMap:
    """Compute the sentence gradients of ``model`` (a :class:`stategrad.lm.LanguageModel`)
    for ``text``, then their map (:func:`sentence_map_from_gradients`).  Words outside
    its vocabulary become ``<unk>``, also in the map's labels (and are listed in
    ``unknown``).  ``L=`` is the
    deprecated name of ``normalize=``.  ``ablate`` (unk, random, mean, drop) adds the
    ablation map of the same sentence (KL, see :func:`stategrad.ablation.sentence_ablation`)."""
    _check_measure(measure)  # before the gradients: a typo should not cost a backward pass
    L = resolve_normalizer(normalize, L)
    words = tokenize(text)
    vocab = model.vocab
    unknown = [w for w in words if w not in vocab]
    ids = vocab.encode(words)
    G = sentence_gradients(model, ids, state=state, layer=layer)  # (T, T, H, E)
    # Label each position with the word the model read there: <unk> for an unknown word.
    words = [w if w in vocab else vocab.words[int(i)] for w, i in zip(words, ids, strict=True)]
    smap = sentence_map_from_gradients(G, words, ids, state=state, layer=layer, normalize=L,
                                       measure=measure, unknown=unknown)
    if ablate is not None:
        smap.ablation = sentence_ablation(model, ids, replace=ablate).kl
        smap.ablation_label = f"KL(p_orig || p_ablated), the word at t replaced ({ablate})"
    return smap


def _matrix_size(G: np.ndarray, measure: str) -> np.ndarray:
    if measure == "fro":
        return np.sqrt(np.einsum("tkhe,tkhe->tk", G, G))
    return np.linalg.svd(G, compute_uv=False)[..., 0]


def plot_sentence_map(smap: SentenceMap, title: str | None = None):
    """The heat map of a :class:`SentenceMap` (a matplotlib Figure)."""
    norm = "normalised" if smap.normalised else "raw"
    title = title or f"{smap.state} state, {norm}"
    return plot_sentence(smap.matrix, smap.words, colorbar_label=smap.measure_label, title=title)
