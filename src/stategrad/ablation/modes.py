"""The two measures as batched runs over a chunk of consecutive positions.

**Ablation** (``distance`` d = 1 .. D).  For a start position t, the ablated run starts
from the exact state before t, ``s_{t-1}``, reads the replacement instead of ``w_t`` and
then the true words ``w_{t+1} .. w_{t+D-1}``; its output after d inputs predicts
``w_{t+d}``.  The *loss at distance d* is the loss of that prediction (of w_{t+d} from the
context up to t+d-1, so d = 1 is the word right after the ablated one), compared with
the unablated prediction of the same word.  ``drop`` removes w_t: the prediction of
``w_{t+d}`` is made from ``s_{t-1}`` followed by ``w_{t+1} .. w_{t+d-1}`` (d-1 words; for
d = 1 from s_{t-1} itself), i.e. the text is shortened by one word and the predicted
words keep their identity.  Only starts with ``t + D <= N - 1`` are used, so every
start has every distance.  Rows are classed by the ablated word.

**Context length** (``context`` k = 0 .. C).  The prediction of ``w_i`` from only the k
words before it: a run from the initial state (zeros) at ``i - k`` (the rest of the
context cut, as in Khandelwal et al. 2018).  One run from s over ``w_s .. w_{s+C-1}``
gives the predictions of ``w_{s+k}`` with context k for every k <= C at once.
Predicted positions i >= C are used, so every position has every context length; rows
are classed by the predicted word, and the loss increase and KL compare with the
prediction from the whole text.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .model import ModelParts, cat_states, top_h, zero_state
from .replacements import Replacer
from .walk import Walker, baseline, compare


@dataclass
class Rows:
    """The compared predictions of one chunk: axis index, the position that decides the
    class and the block, and the three values, one entry per row."""

    axis_index: np.ndarray
    class_position: np.ndarray
    loss: np.ndarray
    loss_increase: np.ndarray
    kl: np.ndarray


class AblationMode:
    name = "ablation"
    axis_name = "distance"

    def __init__(self, parts: ModelParts, tokens: np.ndarray, max_distance: int,
                 replacer: Replacer, sample_every: int | None):
        self.parts, self.tokens, self.D = parts, tokens, int(max_distance)
        self.replacer = replacer
        self.every = sample_every or 1
        self.axis = np.arange(1, self.D + 1)

    def bounds(self, start: int, stop: int) -> tuple[int, int]:
        """The positions the chunks walk over (the start positions used)."""
        hi = min(stop, len(self.tokens) - self.D)
        return start, max(hi, start)

    def chunk(self, walker: Walker, a: int, b: int) -> Rows | None:
        p, D = self.parts, self.D
        orig = baseline(p, self.tokens, a, walker.tops(b + D))
        snaps = walker.snapshots(b)
        sel = np.arange(a, b)
        sel = sel[sel % self.every == 0]
        if not len(sel):
            return None
        state = cat_states(p, [snaps[t - a] for t in sel])
        outs = self._run(sel, state)  # (D, B, H)
        positions = sel[:, None] + np.arange(1, D + 1)  # (B, D)
        loss, inc, kl = compare(p, self.tokens, outs.transpose(0, 1).reshape(-1, p.hidden_size),
                                positions.reshape(-1), orig)
        B = len(sel)
        return Rows(np.tile(np.arange(D), B), np.repeat(sel, D), loss, inc, kl)

    def _run(self, sel: np.ndarray, state) -> torch.Tensor:
        p = self.parts
        x = self.replacer.inputs(self.tokens, sel)
        rest = None
        if self.D > 1:
            ids = torch.as_tensor(self.tokens[sel[None, :] + np.arange(1, self.D)[:, None]],
                                  device=p.device)
            rest = p.embedding[ids]  # (D-1, B, E)
        if x is None:  # drop: the first prediction comes from the state before t
            first = top_h(p, state)[None]
            if rest is None:
                return first
            out, _ = p.rnn(rest, state)
            return torch.cat([first, out])
        inputs = x[None] if rest is None else torch.cat([x[None], rest])
        out, _ = p.rnn(inputs, state)
        return out


class ContextMode:
    name = "context-length"
    axis_name = "context"

    def __init__(self, parts: ModelParts, tokens: np.ndarray, max_context: int,
                 sample_every: int | None):
        self.parts, self.tokens, self.C = parts, tokens, int(max_context)
        self.every = sample_every or 1
        self.axis = np.arange(0, self.C + 1)
        self.first, self.last = 0, 0

    def bounds(self, start: int, stop: int) -> tuple[int, int]:
        """Run starts s: every s with a used prediction s + k, k <= C."""
        self.first = max(start, self.C)
        self.last = max(min(stop, len(self.tokens)), self.first)
        return max(self.first - self.C, 0), max(self.last, self.first - self.C)

    def chunk(self, walker: Walker, a: int, b: int) -> Rows | None:
        p, C, N = self.parts, self.C, len(self.tokens)
        orig = baseline(p, self.tokens, a, walker.tops(min(b + C, N)))
        walker.advance_to(b)
        s = np.arange(a, b)
        positions = s[:, None] + self.axis  # (B, C+1)
        ok = (positions >= self.first) & (positions < self.last) & (positions % self.every == 0)
        if not ok.any():
            return None
        keep = ok.any(1)
        s, positions, ok = s[keep], positions[keep], ok[keep]
        # (C, B) input words; positions past the text are clipped: their predictions never count
        ids = self.tokens[np.minimum(s[:, None] + np.arange(C), N - 1).T]
        zero = zero_state(p, len(s))
        outs = [top_h(p, zero)[None]]
        if C:
            out, _ = p.rnn(p.embedding[torch.as_tensor(ids, device=p.device)], zero)
            outs.append(out)
        flat = torch.cat(outs).transpose(0, 1).reshape(-1, p.hidden_size)  # (B*(C+1), H)
        rows = np.flatnonzero(ok.reshape(-1))
        loss, inc, kl = compare(p, self.tokens, flat[torch.as_tensor(rows, device=p.device)],
                                positions.reshape(-1)[rows], orig)
        k = np.tile(self.axis, len(s))[rows]
        return Rows(k, positions.reshape(-1)[rows], loss, inc, kl)
