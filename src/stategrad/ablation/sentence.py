"""The ablation effect of every earlier word on every later prediction of one short
text, for the sentence view beside the gradient map.

``kl[t, k]``: KL(p_orig || p_ablated) of the prediction made from the state at k
(``s_k``, which predicts w_{k+1}) when w_t is replaced; the same cell as the gradient
map's ``G(t, k - t) = d s_k / d x_t``.  ``loss_increase[t, k]``: the rise of the loss of
``w_{k+1}`` (NaN for the last word, which predicts nothing in the text).  With ``drop``
there is no state at k = t (NaN).  From the zero state, in ``dtype`` (float64)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..data import UNK, ClassSet
from .errors import AblationError
from .model import cat_states, check_tokens, log_probs, model_parts
from .replacements import Replacer
from .walk import Walker


@dataclass
class SentenceAblation:
    kl: np.ndarray  # (T, T), NaN where k < t
    loss_increase: np.ndarray  # (T, T)
    replace: str


def sentence_ablation(model, tokens: Sequence[int] | np.ndarray, *, replace: str = "unk",
                      classes: ClassSet | None = None, seed: int = 0,
                      dtype: torch.dtype = torch.float64) -> SentenceAblation:
    with torch.no_grad():
        parts = model_parts(model, "cpu", dtype)
        tokens = check_tokens(parts, tokens)
        T = len(tokens)
        if T == 0:
            raise AblationError("empty sentence")
        classes = classes if classes is not None else ClassSet.only_all(parts.vocab_size)
        unk = parts.vocab.index(UNK) if parts.vocab is not None and UNK in parts.vocab else None
        replacer = Replacer(replace, parts, classes.membership, unk, seed)
        walker = Walker(parts, tokens)
        orig = log_probs(parts, walker.tops(T + 1)[1:])  # from s_0 .. s_{T-1}
        states = walker.snapshots(T)
        starts = np.arange(T)
        x = replacer.inputs(tokens, starts)
        # Every run t reads T inputs (the words after the text are padding, never used).
        rest = parts.embedding[torch.as_tensor(
            tokens[np.minimum(starts[None, :] + np.arange(1, T)[:, None], T - 1)])]
        inputs = rest if x is None else torch.cat([x[None], rest])
        out, _ = parts.rnn(inputs, cat_states(parts, states))  # (steps, T runs, H)
        ablated = log_probs(parts, out)
        kl = np.full((T, T), np.nan)
        inc = np.full((T, T), np.nan)
        shift = 1 if x is None else 0  # drop: output j is the state at t + 1 + j
        for t in range(T):
            for k in range(t + shift, T):
                la, lo = ablated[k - t - shift, t], orig[k]
                kl[t, k] = float((lo.exp() * (lo - la)).sum())
                if k + 1 < T:
                    w = tokens[k + 1]
                    inc[t, k] = float(lo[w] - la[w])
        return SentenceAblation(kl, inc, replace)
