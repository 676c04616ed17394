"""Cutting the start positions into slices, the plan of a parts directory, and the
exact recurrent state at each slice start."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ...comm import DistributedError
from ..engine import StateGradientEngine
from ..options import usable_positions

PLAN_FORMAT = "stategrad-slice-plan"
PLAN_VERSION = 1


def plan_slices(stop: int, n_slices: int, *, align: int = 1, min_length: int = 1,
                start: int = 0) -> list[tuple[int, int]]:
    """Cut ``[start, stop)`` into at most ``n_slices`` contiguous slices of near-equal
    length, boundaries on multiples of ``align`` (the block size, so that no block of
    a confidence-interval run is split) and no slice shorter than ``min_length``
    unless the whole range is."""
    if n_slices < 1:
        raise DistributedError(f"the number of slices must be positive, got {n_slices}")
    if align < 1:
        raise DistributedError(f"slice alignment must be positive, got {align}")
    length = stop - start
    if length <= 0:
        return []
    n = max(1, min(n_slices, length // max(min_length, 1) or 1))
    cuts = [start]
    for i in range(1, n):
        cut = start + round(i * length / n / align) * align
        if cuts[-1] < cut < stop:
            cuts.append(cut)
    cuts.append(stop)
    return [(a, b) for a, b in zip(cuts[:-1], cuts[1:], strict=True) if b > a]


def boundary_states(engine: StateGradientEngine, starts: Sequence[int], chunk: int = 65536
                    ) -> dict[int, list[tuple[torch.Tensor, torch.Tensor | None]]]:
    """The recurrent state before each of ``starts``, as ``engine.initial_state`` gives
    it, from ONE forward pass over the text (chunked so memory stays bounded) rather
    than one pass per slice.  Returned on the CPU."""
    return engine.states_before(starts, chunk=chunk, device="cpu")


def _part_name(i: int, a: int, b: int) -> str:
    return f"slice-{i:05d}-{a}-{b}.h5"


def _load_or_make_plan(parts: Path, fingerprint: dict[str, Any], slices: list[tuple[int, int]]
                       ) -> tuple[list[tuple[int, int]], bool]:
    """The slice plan stored in ``parts`` (a rerun keeps its slicing, whatever the number of
    ranks now), or ``slices`` written there.  Returns (plan, whether it was reused)."""
    plan_file = parts / "plan.json"
    if plan_file.is_file():
        try:
            stored = json.loads(plan_file.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise DistributedError(f"{plan_file} is unreadable ({exc}); delete {parts} to start "
                                   "afresh") from None
        if stored.get("format") != PLAN_FORMAT or stored.get("fingerprint") != fingerprint:
            theirs = stored.get("fingerprint") or {}
            diff = sorted(k for k in fingerprint if k != "options" and fingerprint[k] != theirs.get(k))
            ours_o, theirs_o = fingerprint["options"], theirs.get("options") or {}
            diff += sorted(f"{k} ({theirs_o.get(k)!r} there, {v!r} now)" for k, v in ours_o.items()
                           if theirs_o.get(k) != v)
            raise DistributedError(
                f"{parts} holds slices of a different run (differs in: {', '.join(diff) or 'format'}); "
                "delete it, or choose another output file")
        return [tuple(s) for s in stored["slices"]], True  # type: ignore[misc]
    parts.mkdir(parents=True, exist_ok=True)
    tmp = plan_file.with_name("plan.json.tmp")
    tmp.write_text(json.dumps({"format": PLAN_FORMAT, "version": PLAN_VERSION,
                               "fingerprint": fingerprint, "slices": slices}, indent=1),
                   encoding="utf-8")
    os.replace(tmp, plan_file)
    return slices, False


def _finished_parts(parts: Path, plan: list[tuple[int, int]]) -> list[int]:
    """Slices whose part file this rank can see and that look complete (the file is
    renamed into place only once written, so presence plus a readable header suffices)."""
    import h5py

    done = []
    for i, (a, b) in enumerate(plan):
        path = parts / _part_name(i, a, b)
        if not path.is_file():
            continue
        try:
            with h5py.File(path, "r") as f:
                meta = json.loads(f.attrs["metadata"])
        except (OSError, KeyError, ValueError):
            continue  # a damaged part is computed again
        if meta.get("slice") == {"start": a, "stop": b}:
            done.append(i)
    return done


__all__ = ["boundary_states", "plan_slices", "usable_positions"]
