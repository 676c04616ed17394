"""Planted embeddings: word vectors with exactly known per-direction variance over the
training text, so that what the normalisation should undo is known in advance."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..atomic import write_atomic
from ..data import BOS, EOS, UNK, Vocabulary
from .config import SynthConfig, SynthError, class_label, embedding_groups


def default_scales(config: SynthConfig) -> dict[str, float]:
    """The scale of every embedding block: 1, or the ``unequal`` trap, then the
    configuration's own."""
    scales = dict.fromkeys(embedding_groups(config), 1.0)
    if config.variance == "unequal":
        # The trap: the class remembered longest lives in the most stretched directions (its
        # raw gradients shrink by the stretch), the one remembered shortest in the most
        # squeezed (its raw gradients grow), so raw gradient sizes rank the classes backwards
        # and only the equal-variance normalisation restores the true order.  Scales run
        # geometrically from 1/3 to 3 with the delay: a condition number of 9.
        by_delay = sorted(config.triggers, key=lambda t: t.delay)
        n = len(by_delay)
        for i, t in enumerate(by_delay):
            frac = i / (n - 1) if n > 1 else 1.0
            scales[class_label(t)] = float(3.0 ** (2 * frac - 1))
    scales.update(config.scales)
    return scales


def _allocate_dims(dim: int, capacity: dict[str, int], first: Sequence[str]) -> dict[str, int]:
    """Dims per block: the blocks in ``first`` (group codes, trigger identities) are filled
    to capacity in turn; targets and fillers share the rest in proportion to capacity."""
    left = dim
    dims = {}
    for name in first:
        dims[name] = min(capacity[name], left)
        left -= dims[name]
    cap_t, cap_f = capacity["target"], capacity["filler"]
    dims["target"] = min(cap_t, round(left * cap_t / max(cap_t + cap_f, 1)))
    dims["filler"] = min(cap_f, left - dims["target"])
    dims["target"] += left - dims["target"] - dims["filler"]  # what fillers cannot take
    return dims


def planted_embeddings(
    language,
    vocab: Vocabulary,
    counts: np.ndarray,
    *,
    dim: int,
    scales: Mapping[str, float] | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Embeddings with exactly diagonal token-weighted covariance and chosen per-axis scales.

    ``language`` is a :class:`~stategrad.synth.SynthLanguage`; ``counts[v]`` is how often
    ``vocab.words[v]`` occurs in the reference text (the train split, ``<eos>`` included).
    The E axes are cut into blocks:

    * ``groups``: which kind of word it is (a code per group: ``<eos>``, filler, target,
      each trigger class), so a linear unit can detect a trigger class;
    * one block per group with its members' identities, centred within the group.

    Centring each identity block within its group makes every cross-block covariance zero,
    so whitening each block alone whitens the whole; each block is then multiplied by its
    scale.  The unbiased (ddof=1) token-weighted covariance over the reference text is
    exactly ``diag(scale**2)`` and the mean is zero.  Words absent from the text (``<unk>``,
    ``<bos>``) get random vectors of the same per-axis scales.
    """
    scales = dict(scales or {})
    counts = np.asarray(counts, dtype=np.float64)
    if counts.shape != (len(vocab),):
        raise SynthError(f"counts must have one entry per vocabulary word ({len(vocab)})")
    total = counts.sum()
    if total < 2:
        raise SynthError("the reference text is too short to weight embeddings by")
    weights = counts / total
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5E3D]))

    present, live = _present_groups(language, vocab, counts)
    trig_groups = [class_label(t) for t in language.config.triggers]
    order = ["groups", *trig_groups, "target", "filler"]
    dims = _block_dims(dim, present, live, trig_groups)

    X = np.zeros((len(vocab), dim))
    layout: dict[str, dict[str, Any]] = {}
    col = 0
    for block in order:
        cols = np.arange(col, col + dims[block])
        col += dims[block]
        layout[block] = {"axes": cols.tolist(), "scale": float(scales.get(block, 1.0))}
        if cols.size:
            _plant_block(X, block, cols, present, live, weights, total, layout[block]["scale"], rng)

    scale_per_axis = np.empty(dim)
    for block in order:
        scale_per_axis[layout[block]["axes"]] = layout[block]["scale"]
    absent = np.flatnonzero(counts == 0)
    X[absent] = rng.standard_normal((absent.size, dim)) * scale_per_axis
    info = {
        "dim": dim,
        "blocks": layout,
        "variances": (scale_per_axis**2).tolist(),
        "weighted_by": "token counts of the train split, <eos> included; unbiased covariance",
        "absent_words": [vocab.words[v] for v in absent],
    }
    return X.astype(np.float32), info


def _present_groups(language, vocab: Vocabulary,
                    counts: np.ndarray) -> tuple[dict[str, list[int]], list[str]]:
    """Per group (``eos``, ``filler``, ``target``, each trigger class) the vocabulary rows
    of its words that occur in the text, and the groups that have any."""
    group_of: dict[str, str] = {}
    subsets = language.property_classes()  # subsets of other classes: not groups
    for name, members in language.classes().items():
        if name in subsets:
            continue
        for w in members:
            group_of[w] = name
    group_of[EOS] = "eos"
    groups = ["eos", "filler", "target"] + [class_label(t) for t in language.config.triggers]
    vocab_group = [group_of.get(w) for w in vocab.words]
    for w, g in zip(vocab.words, vocab_group, strict=True):
        if g is None and w not in (UNK, BOS):
            raise SynthError(f"vocabulary word {w!r} is not a word of the synthetic language")
    present = {g: [v for v, gv in enumerate(vocab_group) if gv == g and counts[v] > 0]
               for g in groups}
    return present, [g for g in groups if present[g]]


def _block_dims(dim: int, present: dict[str, list[int]], live: list[str],
                trig_groups: list[str]) -> dict[str, int]:
    """Axes per block; an error when ``dim`` is more than the text can fill or too few to
    tell every trigger apart."""
    capacity = {"groups": len(live) - 1}
    for g in list(present)[1:]:
        capacity[g] = max(len(present[g]) - 1, 0)
    most = sum(capacity.values())
    if dim > most:
        raise SynthError(
            f"embedding_dim {dim} is more than this vocabulary can fill with independent "
            f"directions over the train text ({most}); use at most {most}"
        )
    dims = _allocate_dims(dim, capacity, ["groups", *trig_groups])
    short = [g for g in ["groups", *trig_groups] if dims[g] < capacity[g]]
    if short:
        need = capacity["groups"] + sum(capacity[g] for g in trig_groups)
        raise SynthError(
            f"embedding_dim {dim} leaves no room to tell every trigger apart "
            f"(blocks {', '.join(short)} cut short); use at least {need}"
        )
    return dims


def _plant_block(X: np.ndarray, block: str, cols: np.ndarray, present: dict[str, list[int]],
                 live: list[str], weights: np.ndarray, total: float, scale: float,
                 rng: np.random.Generator) -> None:
    """Fill the axes ``cols`` of one block: random codes (centred within the group for an
    identity block), whitened over all tokens, then scaled."""
    d = cols.size
    if block == "groups":
        codes = _unit_rows(rng, len(live), d)
        for g_rows, code in zip([present[g] for g in live], codes, strict=True):
            X[np.ix_(g_rows, cols)] = code
    else:
        members = present[block]
        X[np.ix_(members, cols)] = _unit_rows(rng, len(members), d)
        # Centre within the group: zero covariance with every other block.
        w = weights[members]
        X[np.ix_(members, cols)] -= (w @ X[np.ix_(members, cols)]) / w.sum()
    # Whiten the block over all tokens (population covariance), then scale it.
    sub = X[:, cols]
    mean = weights @ sub
    cov = (sub - mean).T @ ((sub - mean) * weights[:, None])
    try:
        chol = np.linalg.cholesky(cov)
    except np.linalg.LinAlgError:
        raise SynthError(f"embedding block {block!r} is degenerate; try another seed") from None
    white = np.linalg.solve(chol, (sub - mean).T).T
    # ddof=1 correction so that np.cov over the text's tokens gives exactly scale**2.
    X[:, cols] = white * scale * math.sqrt((total - 1) / total)


def _unit_rows(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    """n random unit vectors in d dims: every one is a vertex of their convex hull, so a
    linear read-out can single out each."""
    if d == 1:
        # The 1-d "sphere" has two points; spread the words on a line instead.
        return np.linspace(-1.0, 1.0, n)[:, None]
    x = rng.standard_normal((n, d))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def save_embeddings(path: str | os.PathLike, vectors: np.ndarray, words: Sequence[str]) -> None:
    """The embedding file format: ``.npz`` with ``vectors`` (V, E) float32 and ``words``."""
    arrays = {"vectors": np.asarray(vectors, dtype=np.float32), "words": np.asarray(words, dtype=str)}
    write_atomic(path, lambda tmp: np.savez(tmp, **arrays), suffix=".tmp.npz")
