"""Adding finished state gradients into their (delay, class) sums.

Finished matrices are gathered over a window of steps and added into their
(delay, class) sums with one batched matrix product, so per-class accumulation
costs a small fraction of the recurrence even for a dozen classes.  Sums are
kept in the compute dtype per chunk of start positions (an ``Accumulator``) and
folded into float64 when the chunk closes."""

from __future__ import annotations

import numpy as np
import torch


class Accumulator:
    """Per (delay, class) sums for a range of start positions, in the compute dtype."""

    def __init__(self, D: int, C: int, H: int, E: int, device, dtype):
        self.sums = torch.zeros(D, C, E * H, device=device, dtype=dtype)
        self.counts = np.zeros((D, C), dtype=np.int64)


def _open(accs: dict[int, Accumulator], b: int, D: int, C: int, H: int, E: int, dev, dt
          ) -> Accumulator:
    acc = accs.get(b)
    if acc is None:
        acc = accs[b] = Accumulator(D, C, H, E, dev, dt)
    return acc


def accumulate(buf: torch.Tensor, window_steps: list[int], window_starts: list[np.ndarray],
               accs: dict[int, Accumulator], chunk: int, keys: np.ndarray,
               membership: np.ndarray, D: int, C: int, H: int, E: int) -> None:
    """Add the window's finished matrices into their (delay, class) sums.

    Start position t is in the classes of row ``keys[t]`` of ``membership``: its word
    id for word-type classes, its own row for token-level ones.

    For every delay d the window's rows with that delay are summed with class
    weights by one batched product (delays, C, n) @ (delays, n, E*H).  In the
    steady state of a full pass row a holds delay a in every slot, so the window
    is used as a strided view; otherwise (start, sampling, segments) the rows are
    gathered first.
    """
    n_slots = len(window_steps)
    A_max = buf.shape[1]
    dev, dt = buf.device, buf.dtype
    # Rows hold delays 0, 1, 2, ... whenever every position of the slice so far was a
    # start (no sampling, not past ``stop``): then the window is a strided view.
    aligned = all(len(st) == 0 or (st[0] == k and st[0] - st[-1] == len(st) - 1)
                  for k, st in zip(window_steps, window_starts, strict=True))
    if aligned:
        steps = np.asarray(window_steps)
        n_rows = np.array([len(st) for st in window_starts])
        R = int(n_rows.max())
        if R == 0:
            return
        pair_start = steps[None, :] - np.arange(R)[:, None]  # (R, n_slots)
        valid = np.arange(R)[:, None] < n_rows[None, :]
        member = membership[keys[np.where(valid, pair_start, 0)]] & valid[:, :, None]
        chunk_of = np.where(valid, pair_start, -1) // chunk
        view = buf[1 : n_slots + 1, :R].reshape(n_slots, R, E * H).transpose(0, 1)
        for b in np.unique(chunk_of[valid]):
            acc = _open(accs, int(b), D, C, H, E, dev, dt)
            mem = member & (chunk_of == b)[:, :, None]
            acc.counts[:R] += mem.sum(axis=1)
            weights = torch.as_tensor(mem.transpose(0, 2, 1), dtype=dt).to(dev)
            acc.sums[:R].baddbmm_(weights, view)
        return

    slot_idx, row_idx, pair_start, pair_delay = [], [], [], []
    for s, (k, st) in enumerate(zip(window_steps, window_starts, strict=True)):
        if len(st):
            slot_idx.append(np.full(len(st), s + 1))
            row_idx.append(np.arange(len(st)))
            pair_start.append(st)
            pair_delay.append(k - st)
    if not slot_idx:
        return
    rows_all = np.concatenate(slot_idx) * A_max + np.concatenate(row_idx)
    pair_start = np.concatenate(pair_start)
    pair_delay = np.concatenate(pair_delay)
    member_all = membership[keys[pair_start]]  # (P, C)
    chunk_of = pair_start // chunk
    flat = buf.view(-1, E * H)
    for b in np.unique(chunk_of):
        sel = np.flatnonzero(chunk_of == b)
        acc = _open(accs, int(b), D, C, H, E, dev, dt)
        order = sel[np.argsort(pair_delay[sel], kind="stable")]
        delays = pair_delay[order]
        mem = member_all[order]
        np.add.at(acc.counts, delays, mem.astype(np.int64))
        present, first, per_delay = np.unique(delays, return_index=True, return_counts=True)
        group = np.repeat(np.arange(len(present)), per_delay)
        pos = np.arange(len(delays)) - first[group]
        gather = np.zeros((len(present), int(per_delay.max())), dtype=np.int64)
        gather[group, pos] = rows_all[order]
        weights = torch.zeros(len(present), C, gather.shape[1], dtype=dt)
        weights[torch.as_tensor(group), :, torch.as_tensor(pos)] = torch.as_tensor(mem, dtype=dt)
        gathered = flat[torch.as_tensor(gather.reshape(-1), device=dev)]
        gathered = gathered.view(len(present), gather.shape[1], E * H)
        idx = torch.as_tensor(present, device=dev)
        acc.sums.index_add_(0, idx, torch.bmm(weights.to(dev), gathered))
