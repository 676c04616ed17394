"""torch.distributed plumbing shared by DDP training (:mod:`stategrad.lm`) and the
sliced gradient run (:mod:`stategrad.gradients`): the launch, the rendezvous store, the
:class:`Communicator` and the TF32 switch.  Everything is a no-op for one process."""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import numpy as np
import torch
import torch.distributed as dist


class DistributedError(RuntimeError):
    """A distributed run that cannot go on; the message names the rank(s) and what to do."""


# --- the launch ---------------------------------------------------------------------------

def is_distributed_launch() -> bool:
    """True when this process is one of several started by ``torchrun`` (or an equivalent
    launcher that sets ``WORLD_SIZE``/``RANK``), or a process group is already set up."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size() > 1
    try:
        return int(os.environ.get("WORLD_SIZE", "1")) > 1
    except ValueError:
        return False


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise DistributedError(f"environment variable {name}={value!r} is not an integer") from None


def _rendezvous_store(rank: int, world: int, timeout: timedelta) -> Any:
    """The env:// rendezvous store, made with the public ``TCPStore`` so that the slice
    queue can use it: under torchrun with its agent's store (TORCHELASTIC_USE_AGENT_STORE)
    every rank is a client of that store; otherwise rank 0 hosts it at MASTER_ADDR:MASTER_PORT
    (what ``init_process_group("env://")`` does itself)."""
    host = os.environ["MASTER_ADDR"]
    port = _env_int("MASTER_PORT", 0)
    if not 0 < port < 2**16:
        raise DistributedError(f"MASTER_PORT={os.environ.get('MASTER_PORT')!r} is not a port number")
    agent_store = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == str(True)
    try:
        if agent_store:
            return dist.TCPStore(host, port, world, is_master=False, timeout=timeout)
        return dist.TCPStore(host, port, world, is_master=rank == 0, timeout=timeout,
                             multi_tenant=True)
    except (RuntimeError, OSError) as exc:
        role = "reach" if agent_store or rank != 0 else "open"
        raise DistributedError(f"rank {rank} could not {role} the rendezvous store at "
                               f"{host}:{port}: {exc}") from exc


@dataclasses.dataclass
class Communicator:
    """Rank, world size and the few collectives this module needs; all no-ops for one
    process.  Use :meth:`from_environment`."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False  # we initialised the process group, so we tear it down
    #: The key-value store of the rendezvous (a public ``TCPStore``), when we made it; it
    #: carries the shared slice queue.  None for a group the caller initialised.
    store: Any = None

    @classmethod
    def from_environment(cls, device: str = "cpu", timeout_s: float = 1800.0) -> Communicator:
        """Join the process group ``torchrun`` describes (env:// rendezvous: MASTER_ADDR,
        MASTER_PORT, RANK, WORLD_SIZE, LOCAL_RANK), or use the one already initialised."""
        if dist.is_available() and dist.is_initialized():
            return cls(dist.get_rank(), dist.get_world_size(), _env_int("LOCAL_RANK", 0), False)
        world = _env_int("WORLD_SIZE", 1)
        if world <= 1:
            return cls()
        if not dist.is_available():
            raise DistributedError("this PyTorch was built without torch.distributed")
        missing = [v for v in ("MASTER_ADDR", "MASTER_PORT", "RANK") if v not in os.environ]
        if missing:
            raise DistributedError(
                f"WORLD_SIZE={world} but {', '.join(missing)} not set: start the workers with "
                "torchrun (it sets them), or set them as in docs/distributed.md")
        local_rank = _env_int("LOCAL_RANK", 0)
        if torch.device(device).type == "cuda":
            if not torch.cuda.is_available():
                raise DistributedError("--device cuda asked for, but PyTorch sees no CUDA device")
            torch.cuda.set_device(local_rank % torch.cuda.device_count())
            # gloo for the small CPU-side messages, NCCL for tensors on the GPU
            backend = "cpu:gloo,cuda:nccl"
        else:
            backend = "gloo"
        rank = _env_int("RANK", 0)
        store = _rendezvous_store(rank, world, timedelta(seconds=timeout_s))
        dist.init_process_group(backend, store=store, rank=rank, world_size=world,
                                timeout=timedelta(seconds=timeout_s))
        return cls(dist.get_rank(), dist.get_world_size(), local_rank, True, store)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    def device(self, requested: str) -> str:
        """One GPU per local rank: ``cuda`` becomes ``cuda:LOCAL_RANK`` under a launcher."""
        dev = torch.device(requested)
        if dev.type == "cuda" and dev.index is None and self.active and torch.cuda.is_available():
            return f"cuda:{self.local_rank % torch.cuda.device_count()}"
        return requested

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def all_gather(self, obj: Any) -> list[Any]:
        if not self.active:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if not self.active:
            return obj
        box = [obj if self.is_main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def reduce_sum(self, array: np.ndarray) -> np.ndarray:
        """Element-wise sum over ranks, valid on rank 0 (gloo, on CPU)."""
        if not self.active:
            return array
        tensor = torch.from_numpy(np.ascontiguousarray(array))
        dist.reduce(tensor, dst=0, op=dist.ReduceOp.SUM)
        return tensor.numpy()

    def close(self) -> None:
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()
            self.owns_group = False


# --- precision ----------------------------------------------------------------------------

@contextlib.contextmanager
def matmul_precision(tf32: bool = False) -> Iterator[None]:
    """Allow TF32 tensor-core matrix products (and cuDNN convolutions/RNNs) inside the
    block, only when asked: TF32 keeps 10 mantissa bits, so results move by ~1e-3
    relative.  Without CUDA this changes nothing.  The previous setting is restored."""
    old = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = bool(tf32)
    torch.backends.cudnn.allow_tf32 = bool(tf32)
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


__all__ = [
    "Communicator",
    "DistributedError",
    "is_distributed_launch",
    "matmul_precision",
]
