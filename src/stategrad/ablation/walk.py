"""The unablated run along the text: the exact recurrent state before every position and
the predictions the model makes with its whole context (the baseline every ablated
prediction is compared with)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .model import ModelParts, State, log_probs, logits_of, top_h, zero_state

_SPAN = 4096  # tokens per fused call when only moving along the text


class Walker:
    """The state before position ``pos`` of one run over the whole text (``s_{pos-1}``)."""

    def __init__(self, parts: ModelParts, tokens: np.ndarray, state: State | None = None,
                 pos: int = 0):
        self.parts = parts
        self.tokens = tokens
        self.state = zero_state(parts, 1) if state is None else state
        self.pos = pos

    def _embed(self, lo: int, hi: int) -> torch.Tensor:
        ids = torch.as_tensor(self.tokens[lo:hi], device=self.parts.device)
        return self.parts.embedding[ids].unsqueeze(1)  # (steps, 1, E)

    def advance_to(self, target: int) -> None:
        while self.pos < target:
            hi = min(target, self.pos + _SPAN)
            _, self.state = self.parts.rnn(self._embed(self.pos, hi), self.state)
            self.pos = hi

    def snapshots(self, b: int) -> list[State]:
        """The states before positions pos .. b-1 (batch 1 each), one step at a time, so
        each is the state the run over the text has there; the walker ends at ``b``."""
        out = []
        while self.pos < b:
            out.append(self.state)
            _, self.state = self.parts.rnn(self._embed(self.pos, self.pos + 1), self.state)
            self.pos += 1
        return out

    def tops(self, hi: int) -> torch.Tensor:
        """Top-layer h of the states before positions pos .. hi-1, (hi - pos, H), without
        moving: row j - pos is what the prediction of w_j is made from."""
        first = top_h(self.parts, self.state)  # (1, H)
        if hi - self.pos <= 1:
            return first[: max(hi - self.pos, 0)]
        out, _ = self.parts.rnn(self._embed(self.pos, hi - 1), self.state)
        return torch.cat([first, out[:, 0]])


@dataclass
class Baseline:
    """The full-context predictions of positions ``base .. base + n - 1``: probabilities
    (n, V), ``sum p log p`` (n,) and the loss of the true word (n,)."""

    base: int
    p: torch.Tensor
    neg_entropy: torch.Tensor
    loss: torch.Tensor


def baseline(parts: ModelParts, tokens: np.ndarray, base: int, tops: torch.Tensor) -> Baseline:
    lp = log_probs(parts, tops)
    p = lp.exp()
    ids = torch.as_tensor(tokens[base: base + len(tops)], device=parts.device)
    return Baseline(base, p, (p * lp).sum(-1), -lp.gather(1, ids[:, None])[:, 0])


def compare(parts: ModelParts, tokens: np.ndarray, outs: torch.Tensor, positions: np.ndarray,
            orig: Baseline, rows_per_chunk: int | None = None) -> tuple[np.ndarray, ...]:
    """The ablated predictions made from top-layer outputs ``outs`` (R, H) of the words at
    ``positions`` (R,), against the baseline: the ablated loss, the loss increase and
    KL(p_orig || p_ablated), each (R,) float64.

    The ablated distribution is never normalised in full: with ``z`` its logits,
    ``KL = sum p log p - sum p z + logsumexp z`` (the p sum to one), and the loss is
    ``logsumexp z - z[w]``; one matrix product, one logsumexp and one dot product a row,
    the last two in float64 (see :func:`log_probs`)."""
    V = parts.vocab_size
    step = rows_per_chunk or max(1, (1 << 22) // V)
    pos_t = torch.as_tensor(positions, device=parts.device)
    ids = torch.as_tensor(tokens[positions], device=parts.device)
    loss, inc, kl = [], [], []
    for lo in range(0, len(positions), step):
        sl = slice(lo, lo + step)
        z = logits_of(parts, outs[sl]).double()  # the sums over V in float64 (log_probs)
        lse = torch.logsumexp(z, -1)
        rows = pos_t[sl] - orig.base
        la = lse - z.gather(1, ids[sl, None])[:, 0]
        cross = torch.einsum("rv,rv->r", orig.p[rows], z)
        loss.append(la)
        inc.append(la - orig.loss[rows])
        kl.append(orig.neg_entropy[rows] - cross + lse)
    as_np = [torch.cat(x).to(torch.float64).cpu().numpy() if x else np.zeros(0)
             for x in (loss, inc, kl)]
    return tuple(as_np)
