"""What the engine asks of a cell: advance the tangents in flight by one step.

Two implementations: ``FusedCells`` (``fused.py``) for PyTorch's ``nn.LSTM``/``nn.GRU``/
``nn.RNN``, which folds each step's derivative into the weights (the fast path), and
``GenericCells`` (``generic.py``) for any model of the :mod:`stategrad.lm` recurrent
protocol, which pushes the tangents through the model's own ``step`` with
``torch.func.jvp`` vmapped over them.  The engine's pass (rows in flight, windows,
accumulation, blocks, the running state) is the same for both.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import torch

from .pass_state import Key, _Pass

# The recurrent state as the pass carries it: per part, (h, c) with c None but for an
# LSTM's layers (the generic cells: one pair per tensor of the model's state, c None).
PassState = list[tuple[torch.Tensor, torch.Tensor | None]]


class TangentStep(Protocol):
    cell: str  # the result's metadata["cell"]
    layer: int  # the analysed layer, counted from 0
    E: int  # embedding size: tangent columns per start position
    H: int  # size of the analysed state
    V: int  # vocabulary size

    def buffers(self, rows: int, window: int, device, dtype) -> tuple[dict[Key, torch.Tensor], Key]:
        """Zero tangent buffers (slots, rows, E, width) per state part, and the analysed
        part's key (W + 1 slots; the others 2)."""

    def state_shapes(self) -> list[tuple[tuple[int, ...], tuple[int, ...] | None]]:
        """Shapes of the (h, c) pairs of a ``PassState`` (checked on resume)."""

    def pass_state(self, state: Any) -> PassState:
        """A state given by the caller (or ``states_before``) as the pass carries it."""

    def advance(self, p: _Pass, keep: int, inject: bool, tokens: np.ndarray, window: int) -> None:
        """The forward step at ``p.k`` (token ``tokens[p.k]``) and the new tangents of the
        first ``keep`` rows (plus a fresh row on top if ``inject``), written to
        ``p.slots(p.slot, key)[1]`` of every part: the analysed one to
        ``p.bufs[p.chosen][p.slot + 1]``.  ``window``: steps per accumulation window (the
        fused cells run the forward pass that many steps ahead)."""

    def states_before(self, tokens: np.ndarray, starts: Sequence[int], chunk: int | None,
                      device) -> dict[int, PassState]:
        """The state before each of ``starts``, from one no-grad forward pass."""
