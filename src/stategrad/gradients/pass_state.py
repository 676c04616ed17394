"""What one pass of the engine carries from step to step: the ``_Pass`` object, which is
also what the running-state file stores."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .accumulate import Accumulator
from .blocks import BlockSpill
from .cells import _WindowMaps
from .options import EngineError

Key = tuple[int, str]  # a state buffer: (layer, "h" or "c")


@dataclass
class _Pass:
    """Everything one pass carries from step ``k`` to step ``k + 1``.

    Rows of the tangent buffers are start positions still in flight (``starts``,
    newest first).  The analysed state's buffer (``chosen``) keeps W+1 slots, one per
    step of the accumulation window (``slot``: where the last step wrote; slot 0 is
    the last step of the previous window); every other buffer ping-pongs between two
    slots, ``cur`` saying which holds the current tangents.
    """

    start: int
    stop: int
    end: int  # one past the last step: pairs run past ``stop`` up to D - 1 steps
    k: int
    hs: list[torch.Tensor]  # the forward state before step k, per layer
    cs: list[torch.Tensor | None]
    bufs: dict[Key, torch.Tensor]  # (slots, rows, E, H) tangents per state
    chosen: Key
    scratch: torch.Tensor | None  # LSTM: the [dc | dh] product before it is combined
    total: torch.Tensor  # (D, C, E*H) float64 sums of closed chunks
    total_counts: np.ndarray
    spill: BlockSpill | None  # closed blocks live on disk (memory would grow with them)
    chunk: int  # start positions per accumulator (the block size, if any)
    starts: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    cur: dict[Key, int] = field(default_factory=dict)
    slot: int = 0
    window_steps: list[int] = field(default_factory=list)
    window_starts: list[np.ndarray] = field(default_factory=list)
    window_maps: list[_WindowMaps] = field(default_factory=list)
    accs: dict[int, Accumulator] = field(default_factory=dict)
    closed_blocks: dict[int, tuple[Any, np.ndarray]] = field(default_factory=dict)
    x_proj: dict[int, torch.Tensor] = field(default_factory=dict)  # layer 0's, by span
    steps_done: int = 0
    resumed: bool = False

    def slots(self, slot: int, key: Key) -> tuple[torch.Tensor, torch.Tensor]:
        """(previous, next) tangent slot of one buffer: the analysed state walks through
        its window slots, the others alternate between two."""
        buf = self.bufs[key]
        if key == self.chosen:
            return buf[slot], buf[slot + 1]
        return buf[self.cur[key]], buf[1 - self.cur[key]]


def spill_block(spill: BlockSpill, b: int, sums: np.ndarray):
    """Keep closed block ``b`` on disk (an ``EngineError`` saying what to do if there is
    no room)."""
    try:
        return spill.add(b, sums)
    except OSError as exc:
        raise EngineError(f"could not keep block {b} on disk in {spill.folder}: "
                          f"{exc.strerror or exc}; set TMPDIR to a folder with room") from exc
