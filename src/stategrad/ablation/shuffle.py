"""Context length with the far context shuffled instead of cut (Khandelwal et al. 2018).

The prediction of ``w_i`` with k words in order: from the initial state at ``i - C`` the
model reads ``w_{i-C} .. w_{i-k-1}`` in a random order (a generator seeded by
(seed, i, k)), then ``w_{i-k} .. w_{i-1}`` as they are.  So it always sees the same C
words; only the order beyond the last k is lost.  k = C is the cut run of C words.
Each (i, k) is one run of C steps, batched over positions and k: C (C + 1) steps per
position, against C for the cut mode.
"""

from __future__ import annotations

import numpy as np
import torch

from .model import ModelParts, top_h, zero_state
from .modes import Rows
from .walk import Walker, baseline, compare


def shuffled_inputs(tokens: np.ndarray, positions: np.ndarray, C: int, seed: int) -> np.ndarray:
    """(C, B * (C + 1)) input words: for every position i and k = 0 .. C in turn."""
    out = np.empty((len(positions), C + 1, C), dtype=np.int64)
    for r, i in enumerate(positions):
        window = tokens[i - C: i]
        for k in range(C + 1):
            far = window[: C - k]
            rng = np.random.default_rng([seed, int(i), k])
            out[r, k] = np.concatenate([far[rng.permutation(len(far))], window[C - k:]])
    return out.reshape(-1, C).T


class ShuffledContextMode:
    name = "context-length"
    axis_name = "context"

    def __init__(self, parts: ModelParts, tokens: np.ndarray, max_context: int,
                 sample_every: int | None, seed: int):
        self.parts, self.tokens, self.C = parts, tokens, int(max_context)
        self.every = sample_every or 1
        self.seed = int(seed)
        self.axis = np.arange(0, self.C + 1)

    def bounds(self, start: int, stop: int) -> tuple[int, int]:
        """The predicted positions: i >= C, so that every i has all C words."""
        first = max(start, self.C)
        return first, max(min(stop, len(self.tokens)), first)

    def chunk(self, walker: Walker, a: int, b: int) -> Rows | None:
        p, C = self.parts, self.C
        orig = baseline(p, self.tokens, a, walker.tops(b))
        walker.advance_to(b)
        pos = np.arange(a, b)
        pos = pos[pos % self.every == 0]
        if not len(pos):
            return None
        R = len(pos) * (C + 1)
        zero = zero_state(p, R)
        if C:
            ids = torch.as_tensor(shuffled_inputs(self.tokens, pos, C, self.seed), device=p.device)
            out, _ = p.rnn(p.embedding[ids], zero)
            last = out[-1]
        else:
            last = top_h(p, zero)
        positions = np.repeat(pos, C + 1)
        loss, inc, kl = compare(p, self.tokens, last, positions, orig)
        return Rows(np.tile(self.axis, len(pos)), positions, loss, inc, kl)
