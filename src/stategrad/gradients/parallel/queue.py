"""The shared work queue of slices."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from ...comm import Communicator


def _work_queue(comm: Communicator, todo: list[int]) -> Callable[[], int | None]:
    """Hand out ``todo`` one slice at a time: an atomic counter in the rendezvous's
    key-value store is a shared queue, so a slow rank simply takes fewer slices.
    One process takes them all in order; in a process group the caller initialised
    (no store of ours) rank r takes every world-size-th slice from the r-th."""
    if not comm.active or comm.store is None:
        it = iter(todo[comm.rank::comm.world_size] if comm.active else todo)
        return lambda: next(it, None)
    # A fresh key per call: several runs may share one process group.
    key = "stategrad/queue/" + comm.broadcast(uuid.uuid4().hex)
    store = comm.store

    def claim() -> int | None:
        n = store.add(key, 1) - 1
        return todo[n] if n < len(todo) else None

    return claim
