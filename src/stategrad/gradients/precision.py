"""How far a reduced precision is from float64, for the user to see."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import torch

from ..comm import matmul_precision
from ..data import ClassSet
from ..lm import RNNLM, LanguageModel
from .engine import StateGradientEngine
from .options import EngineOptions


def precision_error(
    model: LanguageModel | RNNLM | torch.nn.Module,
    tokens: Sequence[int] | np.ndarray,
    options: EngineOptions,
    classes: ClassSet | None = None,
    *,
    tf32: bool = False,
    positions: int = 2000,
) -> dict[str, float]:
    """How far ``options.dtype`` (with TF32 products if ``tf32``) is from float64 on the
    first ``positions`` start positions of ``tokens``: the largest element-wise error
    of the sums relative to their largest magnitude, and the largest relative
    Frobenius error of a mean ``Gbar_d`` over delays.  Report it whenever the user
    picks a reduced precision."""
    n = min(len(tokens), positions + options.max_delay - 1)
    text = np.asarray(tokens)[:n]
    stop = min(positions, n)
    classes = classes.prefix(n) if classes is not None else None  # token classes: of ``text``
    with torch.no_grad():
        ref = StateGradientEngine(model, text, dataclasses.replace(options, dtype=torch.float64,
                                                                     block_size=None),
                                  classes).run(0, stop, progress=False)
        with matmul_precision(tf32):
            low = StateGradientEngine(model, text, dataclasses.replace(options, block_size=None),
                                      classes).run(0, stop, progress=False)
    scale = float(np.abs(ref.sums).max()) or 1.0
    max_rel = float(np.abs(low.sums - ref.sums).max()) / scale
    fro = []
    for d in range(ref.max_delay):
        if ref.counts[d, 0]:
            a, b = ref.sums[d, 0], low.sums[d, 0]
            fro.append(float(np.linalg.norm(b - a) / max(np.linalg.norm(a), 1e-300)))
    return {"max_relative_error": max_rel, "max_mean_frobenius_error": max(fro, default=0.0),
            "positions": float(stop)}
