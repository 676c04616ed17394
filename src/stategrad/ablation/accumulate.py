"""Sums per (axis value, class) of the compared predictions, in total and per block."""

from __future__ import annotations

import numpy as np

from .modes import Rows

QUANTITIES = ("loss", "loss_increase", "kl")


class Sums:
    """``values`` (3, K, C) float64 sums of QUANTITIES and ``counts`` (K, C), in total and
    per block of ``block_size`` positions (of the ablated word, or the predicted one)."""

    def __init__(self, K: int, membership: np.ndarray, keys: np.ndarray,
                 block_size: int | None):
        self.K, self.C = K, membership.shape[1]
        self.membership = membership
        self.keys = keys  # position t is in the classes of row keys[t] (word ids, or token rows)
        self.block_size = block_size
        self.values = np.zeros((3, K, self.C))
        self.counts = np.zeros((K, self.C), dtype=np.int64)
        self.blocks: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def add(self, rows: Rows) -> None:
        if self.block_size is None:
            self._add_into(self.values, self.counts, rows, slice(None))
            return
        ids = rows.class_position // self.block_size
        for b in np.unique(ids):
            vals, counts = self.blocks.setdefault(
                int(b), (np.zeros_like(self.values), np.zeros_like(self.counts)))
            self._add_into(vals, counts, rows, ids == b)
            self._add_into(self.values, self.counts, rows, ids == b)

    def _add_into(self, values: np.ndarray, counts: np.ndarray, rows: Rows, sel) -> None:
        member = self.membership[self.keys[rows.class_position[sel]]].astype(np.float64)  # (R, C)
        onehot = np.zeros((len(member), self.K))
        onehot[np.arange(len(member)), rows.axis_index[sel]] = 1.0
        for q, name in enumerate(QUANTITIES):
            values[q] += onehot.T @ (getattr(rows, name)[sel][:, None] * member)
        counts += np.rint(onehot.T @ member).astype(np.int64)

    def block_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        order = sorted(self.blocks)
        K, C = self.K, self.C
        vals = np.stack([self.blocks[b][0] for b in order]) if order else np.zeros((0, 3, K, C))
        counts = (np.stack([self.blocks[b][1] for b in order]) if order
                  else np.zeros((0, K, C), dtype=np.int64))
        starts = np.array([b * (self.block_size or 0) for b in order], dtype=np.int64)
        return vals, counts, starts
