"""Data-parallel training under ``torchrun``: :class:`TrainingSync` is what
:func:`stategrad.lm.train` uses to split the rows of the batch stream over ranks."""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist

from ..comm import Communicator, DistributedError, is_distributed_launch


class TrainingSync:
    """DistributedDataParallel training the way :func:`stategrad.lm.train` needs it.

    Rank r trains rows ``r, r + N, r + 2N, ...`` of the original's ``batch_size`` rows
    (so the batch stream is the single-process one, split); each rank's cost is its
    summed cross entropy over its own rows, and DDP's gradient average over ranks
    then equals the single-process gradient of the whole batch.
    """

    def __init__(self, comm: Communicator):
        self.comm = comm

    @classmethod
    def from_environment(cls, device: str = "cpu") -> TrainingSync | None:
        """None when this is not a multi-process launch (train as one process)."""
        if not is_distributed_launch():
            return None
        return cls(Communicator.from_environment(device))

    @property
    def rank(self) -> int:
        return self.comm.rank

    @property
    def world_size(self) -> int:
        return self.comm.world_size

    @property
    def is_main(self) -> bool:
        return self.comm.is_main

    def device(self, requested: str) -> str:
        return self.comm.device(requested)

    def seed_ranks(self, seed: int) -> None:
        """Distinct random streams per rank after the (identical) initialisation, so that
        dropout masks of different rows are independent, as in one process."""
        torch.manual_seed(seed * 1_000_003 + 7919 * (self.rank + 1))

    def local_rows(self, rows: torch.Tensor) -> torch.Tensor:
        """This rank's columns of a (row_len, batch) id tensor."""
        batch = rows.shape[1]
        if batch % self.world_size:
            raise DistributedError(
                f"training.batch_size={batch} does not divide among {self.world_size} ranks; "
                f"choose a batch size that is a multiple of {self.world_size}")
        return rows[:, self.rank::self.world_size].contiguous()

    def wrap(self, module: torch.nn.Module) -> torch.nn.Module:
        from torch.nn.parallel import DistributedDataParallel

        device = next(module.parameters()).device
        ids = [device.index] if device.type == "cuda" else None
        # the recurrent state is carried between batches, so no buffer broadcast is needed
        return DistributedDataParallel(module, device_ids=ids, broadcast_buffers=False)

    def step(self, cost: torch.Tensor, stop: bool) -> tuple[float, bool]:
        """The batch's cost of the whole batch (mean over ranks of the per-rank costs) and
        whether any rank wants to stop -- one all-reduce, so every rank decides alike
        (a non-finite cost anywhere makes the sum non-finite everywhere)."""
        t = torch.tensor([float(cost.detach()), 1.0 if stop else 0.0], dtype=torch.float64)
        dist.all_reduce(t)
        return float(t[0]) / self.world_size, bool(t[1] > 0)

    def broadcast(self, value: Any) -> Any:
        return self.comm.broadcast(value)

    def barrier(self) -> None:
        self.comm.barrier()

    def gather(self, value: Any) -> list[Any]:
        return self.comm.all_gather(value)

    def full_state(self, state) -> list[torch.Tensor]:
        """The recurrent state of all rows (single-process layout), as CPU tensors."""
        mine = [s.detach().cpu() for s in (state if isinstance(state, tuple) else (state,))]
        parts = self.comm.all_gather(mine)
        full = []
        for k, t in enumerate(mine):
            shape = list(t.shape)
            shape[1] *= self.world_size
            whole = torch.empty(shape, dtype=t.dtype)
            for r in range(self.world_size):
                whole[:, r::self.world_size] = parts[r][k]
            full.append(whole)
        return full

    def local_state(self, tensors: list[torch.Tensor]) -> list[torch.Tensor]:
        return [t[:, self.rank::self.world_size].contiguous() for t in tensors]

    def close(self) -> None:
        self.comm.close()


__all__ = ["TrainingSync"]
