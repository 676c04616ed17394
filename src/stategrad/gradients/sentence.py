"""Every state gradient of one short text, for the sentence view."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..lm import RNNLM, LanguageModel
from .engine import StateGradientEngine
from .options import EngineError, EngineOptions


def sentence_gradients(
    model: LanguageModel | RNNLM | torch.nn.Module,
    tokens: Sequence[int] | np.ndarray,
    *,
    state: str = "cell",
    layer: int = -1,
    dtype: torch.dtype = torch.float64,
    initial_state=None,
) -> np.ndarray:
    """Every G for a short text: array (T, T, H, E) with ``[t, k] = d s_k / d x_t``
    (zero where k < t), from the zero state unless ``initial_state`` is given."""
    tokens = np.asarray(tokens, dtype=np.int64)
    T = len(tokens)
    if T == 0:
        raise EngineError("empty sentence")
    engine_holder: dict[str, np.ndarray] = {}

    def collect(k: int, starts: np.ndarray, tangents: torch.Tensor) -> None:
        out = engine_holder["out"]
        out[starts, k] = tangents.transpose(1, 2).cpu().numpy()

    with torch.no_grad():
        engine = StateGradientEngine(
            model, tokens, EngineOptions(max_delay=T, state=state, layer=layer, dtype=dtype), None
        )
        engine_holder["out"] = np.zeros((T, T, engine.H, engine.E))
        engine.run(0, T, initial_state=initial_state, progress=False, on_pairs=collect)
    return engine_holder["out"]
