"""What the ablated word is replaced by: ``<unk>``, a random word of its class, the mean
embedding, or nothing (``drop``).

``random`` draws, for the ablated word w at start position t, a word other than w from
the first of the result's classes after "all" that holds w and at least one other word
(from "all" if none does), with a generator seeded by (seed, t): the replacement of a
position is the same in every slice, every resume and every batch size.
"""

from __future__ import annotations

import numpy as np
import torch

from .errors import AblationError
from .model import ModelParts

REPLACEMENTS = ("unk", "random", "mean", "drop")


def check_replacement(replace: str, unk_id: int | None, parts: ModelParts) -> None:
    if replace not in REPLACEMENTS:
        raise AblationError(f"unknown replacement {replace!r}; choose one of {REPLACEMENTS}")
    if replace == "unk" and unk_id is None:
        raise AblationError("--replace unk needs a vocabulary with <unk> (this model has none)")
    if unk_id is not None and not 0 <= unk_id < parts.vocab_size:
        raise AblationError(f"<unk> id {unk_id} is outside the vocabulary")


class Replacer:
    """The input embeddings (B, E) that replace the words at a batch of start positions."""

    def __init__(self, replace: str, parts: ModelParts, membership: np.ndarray,
                 unk_id: int | None, seed: int):
        check_replacement(replace, unk_id, parts)
        self.replace = replace
        self.parts = parts
        self.unk_id = unk_id
        self.seed = int(seed)
        self.membership = membership
        # The words of each class but "all", for the draw; "all" last as the fallback.
        cols = list(range(1, membership.shape[1])) + [0]
        self.pools = [(c, np.flatnonzero(membership[:, c])) for c in cols]
        # The unweighted mean of the vocabulary's embeddings.
        self.mean = parts.embedding.to(torch.float64).mean(0).to(parts.dtype)

    def words(self, tokens: np.ndarray, starts: np.ndarray) -> np.ndarray:
        """The replacement word ids (``unk`` and ``random`` only)."""
        if self.replace == "unk":
            return np.full(len(starts), self.unk_id, dtype=np.int64)
        return np.array([self._draw(int(tokens[t]), int(t)) for t in starts], dtype=np.int64)

    def _draw(self, word: int, t: int) -> int:
        rng = np.random.default_rng([self.seed, t])
        for c, pool in self.pools:
            if self.membership[word, c] and len(pool) > 1:
                j = int(rng.integers(len(pool) - 1))
                # Draw among the others: indices at or past the word's own move up one.
                if j >= int(np.searchsorted(pool, word)):
                    j += 1
                return int(pool[j])
        raise AblationError("--replace random needs a vocabulary of at least two words")

    def inputs(self, tokens: np.ndarray, starts: np.ndarray) -> torch.Tensor | None:
        """(B, E) replacement inputs, or None for ``drop``."""
        if self.replace == "drop":
            return None
        if self.replace == "mean":
            return self.mean.expand(len(starts), -1)
        ids = torch.as_tensor(self.words(tokens, starts), device=self.parts.device)
        return self.parts.embedding[ids]
