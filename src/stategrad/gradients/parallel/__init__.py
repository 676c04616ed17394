"""The sliced state gradient run over several processes (``torchrun``) or one:
``slices`` plans the work, ``queue`` hands it out, ``reduce`` adds it up, ``run``
drives it all."""

from __future__ import annotations

from .run import DistributedRun, RankReport, compute_state_gradients_distributed
from .slices import boundary_states, plan_slices, usable_positions

__all__ = [
    "DistributedRun",
    "RankReport",
    "boundary_states",
    "compute_state_gradients_distributed",
    "plan_slices",
    "usable_positions",
]
