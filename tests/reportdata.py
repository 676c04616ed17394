"""Synthetic GradientResults with blocks, for the report, plot and uncertainty tests.

Each block b holds n_bdc i.i.d. matrices G = mu_dc + sigma * noise, so its sum is
n mu_dc + sqrt(n) sigma Z: the spread of every mean is known exactly."""

from __future__ import annotations

import numpy as np

from stategrad.gradients import GradientResult


def block_result(
    *,
    D: int = 6,
    H: int = 5,
    E: int = 4,
    classes: tuple[str, ...] = ("all", "nouns", "verbs"),
    per_block: tuple[int, ...] = (40, 12, 6),
    B: int = 8,
    sigma: float = 0.3,
    decay: float = 0.7,
    seed: int = 0,
    mu: np.ndarray | None = None,
    metadata: dict | None = None,
) -> GradientResult:
    rng = np.random.default_rng(seed)
    C = len(classes)
    if mu is None:
        base = np.random.default_rng(1234).normal(size=(H, E))
        mu = np.stack([[base * decay**d * (1.0 + 0.3 * c) for c in range(C)] for d in range(D)])
    counts = np.empty((B, D, C), dtype=np.int64)
    for b in range(B):
        for c in range(C):
            # Pairs near the end of the text have fewer delays: counts fall with d.
            counts[b, :, c] = np.maximum(per_block[c] - np.arange(D) // 3, 0)
    noise = rng.normal(size=(B, D, C, H, E))
    block_sums = counts[..., None, None] * mu[None] + np.sqrt(counts)[..., None, None] * sigma * noise
    meta = {"semantics": "carry", "state": "cell", "layer": 0, "cell": "lstm",
            "model_identity": "abc123", "text": {"tokens": int(counts[:, 0, 0].sum()),
                                                 "sha256": "f" * 64},
            "class_definitions": {"all": "every word", "nouns": ["NN", "NNS"], "verbs": ["VB"]},
            "block_size": int(per_block[0])}
    meta.update(metadata or {})
    return GradientResult(
        sums=block_sums.sum(axis=0),
        counts=counts.sum(axis=0),
        classes=list(classes),
        vocab=["<unk>", "a", "b"],
        metadata=meta,
        block_sums=block_sums,
        block_counts=counts,
        block_starts=np.arange(B) * per_block[0],
    )
