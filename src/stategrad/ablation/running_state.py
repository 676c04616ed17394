"""The running state of an ablation pass: what a killed run resumes from.

One ``.npz`` read with ``allow_pickle=False`` (no file at that path can run code),
written atomically: the next chunk's first position, the walker's recurrent state
there, the sums in total and per block, and a JSON fingerprint of the run.  A state
of another run is refused; a damaged one is set aside as ``*.damaged``."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..atomic import write_atomic
from ..lm import flatten_state, unflatten_state
from .accumulate import Sums
from .errors import AblationError
from .walk import Walker

FORMAT = "stategrad-ablation-state"


def save_state(path: Path, fingerprint: dict[str, Any], pos: int, walker: Walker,
               sums: Sums) -> None:
    state, _ = flatten_state(walker.state)
    vals, counts, starts = sums.block_arrays()
    arrays = {
        "meta": np.array(json.dumps({"format": FORMAT, "fingerprint": fingerprint,
                                     "pos": int(pos)})),
        "values": sums.values, "counts": sums.counts,
        "block_values": vals, "block_counts": counts, "block_ids": starts,
    }
    for i, s in enumerate(state):
        arrays[f"state{i}"] = s.detach().cpu().numpy()

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays)
    write_atomic(path, write)


def load_state(path: Path, fingerprint: dict[str, Any], walker: Walker, sums: Sums) -> int | None:
    """Restore the walker and the sums from ``path``; the position to go on from, or None
    to start afresh (no file, or a damaged one, which is renamed)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            arrays = {k: data[k] for k in data.files}
    except Exception as exc:  # truncated, not an npz, pickled objects: many exception types
        _set_aside(path, f"is damaged or not a running state ({type(exc).__name__})")
        return None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise AblationError(f"{path} is not an ablation running state; move it away or "
                            "point --checkpoint elsewhere")
    mine = json.loads(json.dumps(fingerprint))
    theirs = meta.get("fingerprint") or {}
    diff = [k for k in mine if mine[k] != theirs.get(k)]
    if diff:
        raise AblationError(f"the checkpoint {path} belongs to a different run (differs in: "
                            + ", ".join(diff) + "); delete it or point --checkpoint elsewhere")
    # The walker holds the run's initial state: its structure and shapes are what fits.
    leaves, structure = flatten_state(walker.state)
    fits = (arrays["values"].shape == sums.values.shape
            and arrays["counts"].shape == sums.counts.shape
            and all(arrays.get(f"state{i}", np.zeros(0)).shape == tuple(leaf.shape)
                    for i, leaf in enumerate(leaves))
            and f"state{len(leaves)}" not in arrays)
    if not fits:
        _set_aside(path, "holds arrays that do not fit this run")
        return None
    state = [torch.as_tensor(arrays[f"state{i}"], device=leaf.device, dtype=leaf.dtype)
             for i, leaf in enumerate(leaves)]
    walker.state = unflatten_state(state, structure)
    walker.pos = int(meta["pos"])
    sums.values[...] = arrays["values"]
    sums.counts[...] = arrays["counts"]
    bs = sums.block_size or 1
    for start, v, n in zip(arrays["block_ids"], arrays["block_values"], arrays["block_counts"],
                           strict=True):
        sums.blocks[int(start) // bs] = (v.copy(), n.copy())
    return walker.pos


def _set_aside(path: Path, why: str) -> None:
    damaged = Path(str(path) + ".damaged")
    os.replace(path, damaged)
    print(f"WARNING: the running state {path} {why}; it was renamed to {damaged.name} and "
          "the run starts afresh", file=sys.stderr)
