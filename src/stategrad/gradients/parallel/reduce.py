"""A rank's slices added up, and all ranks' sums, counts and blocks brought to rank 0."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from ...comm import Communicator
from ..coverage import merged_coverage
from ..engine import StateGradientEngine
from ..errors import ResultError
from ..result import GradientResult


def _add(total: GradientResult | None, part: GradientResult,
         blocks: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> GradientResult:
    """Running sum of this rank's slices; blocks are set aside (they are concatenated,
    not added)."""
    if part.has_blocks:
        # Into memory now: a part read from a file may be deleted before the reduction.
        blocks.append((part.block_starts, part.block_counts, np.asarray(part.block_sums)))
    if total is None:
        return GradientResult(part.sums.copy(), part.counts.copy(), list(part.classes),
                              list(part.vocab), dict(part.metadata))
    problems = total.compatible(dataclasses.replace(part, block_sums=None, block_counts=None,
                                                    block_starts=None))
    if problems:
        raise ResultError("slices of one run disagree: " + "; ".join(problems))
    total.sums += part.sums
    total.counts += part.counts
    # The start positions actually summed, slice by slice (an overlap is an error here too).
    total.metadata["coverage"] = merged_coverage(total.metadata, part.metadata, True)
    return total


def _reduce(comm: Communicator, engine: StateGradientEngine, local: GradientResult | None,
            blocks: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
            metadata: dict[str, Any] | None, start: int, stop: int) -> GradientResult | None:
    """Sums and counts of all ranks added on rank 0; blocks gathered there one at a time."""
    D, C, H, E = engine.D, engine.C, engine.H, engine.E
    sums = local.sums if local is not None else np.zeros((D, C, H, E))
    counts = local.counts if local is not None else np.zeros((D, C), dtype=np.int64)
    sums = comm.reduce_sum(np.ascontiguousarray(sums, dtype=np.float64))
    counts = comm.reduce_sum(np.ascontiguousarray(counts, dtype=np.int64))
    all_blocks = _gather_blocks(comm, blocks)
    if local is not None and metadata is not None:  # what this rank's slices covered together
        metadata = metadata | {"coverage": local.metadata.get("coverage")}
    metas = comm.all_gather(metadata)
    if not comm.is_main:
        return None
    meta = dict(next(m for m in metas if m is not None))
    meta["slice"] = {"start": int(start), "stop": int(stop)}
    meta["coverage"] = _union_of_coverage([m for m in metas if m is not None])
    sampling = dict(meta.get("sampling") or {})
    sampling["starts_used"] = int(counts[0, 0])
    meta["sampling"] = sampling
    meta["created"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    kwargs: dict[str, Any] = {}
    if all_blocks:
        starts = np.concatenate([b[0] for b in all_blocks])
        order = np.argsort(starts, kind="stable")
        kwargs = dict(block_starts=starts[order],
                      block_counts=np.concatenate([b[1] for b in all_blocks])[order],
                      block_sums=np.concatenate([b[2] for b in all_blocks])[order])
    vocab = local.vocab if local is not None else (engine.vocab or [])
    return GradientResult(sums, counts, list(engine.classes.names), list(vocab), meta, **kwargs)


def _union_of_coverage(metas: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
    """The start positions all ranks summed (None when a slice had no record)."""
    coverage = metas[0].get("coverage")
    for m in metas[1:]:
        coverage = merged_coverage({"coverage": coverage}, m, True)
    return coverage


def _gather_blocks(comm: Communicator, blocks: list[tuple[np.ndarray, np.ndarray, np.ndarray]]
                   ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per-block sums can be large (B x D x C x H x E); they travel to rank 0 as tensors,
    one slice's blocks at a time, rather than as one pickled object."""
    if not comm.active:
        return blocks
    shapes = comm.all_gather([(b[0].tolist(), b[1].tolist(), b[2].shape) for b in blocks])
    if not comm.is_main:
        for _, _, sums in blocks:
            dist.send(torch.from_numpy(np.ascontiguousarray(sums, dtype=np.float32)), dst=0)
        return []
    out = list(blocks)
    for r in range(1, comm.world_size):
        for starts, counts, shape in shapes[r]:
            buf = torch.empty(shape, dtype=torch.float32)
            dist.recv(buf, src=r)
            out.append((np.asarray(starts, dtype=np.int64), np.asarray(counts, dtype=np.int64),
                        buf.numpy()))
    return out
