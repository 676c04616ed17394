"""The running-state file of a pass (``--checkpoint``): what a killed run resumes from.

The file holds plain tensors and a JSON string, read with ``torch.load(weights_only=True)``
so that no file at that path can run code.  Closed blocks of a confidence-interval run
never change, so each is written once, to ``<file>.blocks/block-<b>.npz``, and the file
only lists them: it does not grow with the text.

Another run's state is refused (it may be the user's work, pointed at by mistake); a
damaged one is set aside as ``*.damaged`` so that the run can start afresh instead of
failing on every rerun."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..lm import torch_save_atomic
from .accumulate import Accumulator
from .options import EngineError
from .pass_state import _Pass, spill_block

RUNNING_STATE_FORMAT = "stategrad-engine-state"
RUNNING_STATE_VERSION = 2


class _DamagedState(Exception):
    """A running-state file (or one of its block files) that cannot be used."""


def _unreadable(exc: BaseException) -> str:
    """Why ``torch.load(weights_only=True)`` refused a running-state file, in our words
    (torch's own advice is to load it unsafely)."""
    if isinstance(exc, pickle.UnpicklingError):
        return ("holds objects other than plain tensors (not loaded: unpickling could run "
                "code), so it is damaged or from an older stategrad")
    if isinstance(exc, EOFError):
        return "is empty or truncated"
    return f"is damaged or truncated ({type(exc).__name__})"


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return (lines[0] if lines else type(exc).__name__)[:200]


def blocks_dir(path: str | os.PathLike) -> Path:
    return Path(str(path) + ".blocks")


def remove_running_state(path: str | os.PathLike) -> None:
    """Delete a running-state file and its block files: only once the result is stored.
    The file goes first, so that a kill in between leaves block files that no running
    state lists (and the next run clears them)."""
    Path(path).unlink(missing_ok=True)
    shutil.rmtree(blocks_dir(path), ignore_errors=True)
    # A write killed half-way leaves its temp file (see torch_save_atomic).
    Path(str(path) + ".tmp").unlink(missing_ok=True)


class RunningStateFile:
    """The running state of one pass at ``path``.

    ``fingerprint`` says which run it belongs to (compared as stored, through JSON);
    ``shape`` is (D, C, E, H), ``buffers`` the width of each saved tangent buffer by its
    (layer, part) key, ``states`` the shapes of the recurrent state's (h, c) pairs (c
    None where there is none): all used to check that a loaded state fits this run.
    """

    def __init__(self, path: str | os.PathLike, fingerprint: dict[str, Any],
                 shape: tuple[int, int, int, int], buffers: dict[tuple[int, str], int],
                 states: list[tuple[tuple[int, ...], tuple[int, ...] | None]]):
        self.path = Path(path)
        self.blocks = blocks_dir(path)
        self.fingerprint = fingerprint
        self.shape = shape
        self.buffers = buffers
        self.states = states
        self.on_disk: set[int] = set()  # block files known to hold this run's sums

    # -- reading -----------------------------------------------------------------------------
    def load(self, start: int, end: int, max_rows: int) -> dict[str, Any] | None:
        """The running state to resume from, or None to start afresh."""
        path = self.path
        if not path.is_file():
            # Block files that no running state lists (a run killed before its first
            # checkpoint, perhaps with other options) must never be taken for this run's.
            shutil.rmtree(self.blocks, ignore_errors=True)
            return None
        try:
            # weights_only: a pickle that would run code is refused like any damaged file.
            ck = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # truncated, random bytes, pickled objects, older formats
            self.set_aside(_unreadable(exc))
            return None
        if not isinstance(ck, dict) or ck.get("format") != RUNNING_STATE_FORMAT:
            raise EngineError(f"{path} is a readable file but not a stategrad running state; "
                              "move it away or point --checkpoint elsewhere")
        try:
            if ck.get("version") != RUNNING_STATE_VERSION:
                raise _DamagedState(f"has version {ck.get('version')!r}, this stategrad "
                                    f"writes {RUNNING_STATE_VERSION}")
            try:
                meta = json.loads(ck["meta"])
                if not isinstance(meta, dict):
                    raise TypeError("metadata is not a mapping")
            except (KeyError, TypeError, ValueError) as exc:
                raise _DamagedState(f"has unreadable metadata ({_first_line(exc)})") from exc
            self._check_fingerprint(meta)
            return self._unpack(ck, meta, start, end, max_rows)
        except _DamagedState as exc:
            self.set_aside(str(exc))
            return None

    def _check_fingerprint(self, meta: dict[str, Any]) -> None:
        # Compared as stored: through JSON (tuples become lists).
        mine = json.loads(json.dumps(self.fingerprint))
        theirs = meta.get("fingerprint", {})
        theirs = theirs if isinstance(theirs, dict) else {}
        diff = [k for k in mine if mine[k] != theirs.get(k)]
        if diff:
            raise EngineError(
                f"the checkpoint {self.path} belongs to a different run (differs in: "
                + ", ".join(diff) + "); delete it or point --checkpoint elsewhere"
            )

    def _unpack(self, ck: dict, meta: dict, start: int, end: int, max_rows: int) -> dict:
        """The saved arrays, checked against this run's shapes; _DamagedState if they are not."""
        D, C, E, H = self.shape
        try:
            k = int(meta["k"])
            starts = ck["starts"].numpy()
            bufs = dict(zip([tuple(key) for key in meta["bufs"]], ck["bufs"], strict=True))
            accs = {int(b): (s, n.numpy()) for b, s, n in
                    zip(meta["accs"], ck["acc_sums"], ck["acc_counts"], strict=True)}
            state = {
                "k": k, "hs": list(ck["hs"]), "cs": list(ck["cs"]), "starts": starts,
                "bufs": bufs, "total": ck["total"], "total_counts": ck["total_counts"].numpy(),
                "accs": accs,
            }
            closed = [int(b) for b in meta["closed_blocks"]]
            fits = (
                start <= k < end
                and len(state["hs"]) == len(state["cs"]) == len(self.states)
                and all(h.shape == hs and (c is None if cs is None else c.shape == cs)
                        for h, c, (hs, cs) in zip(state["hs"], state["cs"], self.states,
                                                  strict=True))
                and starts.ndim == 1 and starts.dtype == np.int64 and len(starts) <= max_rows
                and sorted(bufs) == sorted(self.buffers)
                and all(v.shape == (len(starts), E, self.buffers[key]) for key, v in bufs.items())
                and state["total"].shape == (D, C, E * H) and state["total"].dtype == torch.float64
                and state["total_counts"].shape == (D, C)
                and all(s.shape == (D, C, E * H) and n.shape == (D, C) for s, n in accs.values())
            )
        except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as exc:
            raise _DamagedState(f"lacks part of a running state ({_first_line(exc)})") from exc
        if not fits:
            raise _DamagedState("holds arrays that do not fit this run")
        for b in closed:  # every block file is checked here, one at a time (memory)
            self.load_block(b)
        state["closed_blocks"] = closed
        return state

    def load_block(self, b: int) -> tuple[np.ndarray, np.ndarray]:
        """Sums and counts of closed block ``b``; _DamagedState if missing or unfit."""
        D, C, E, H = self.shape
        try:
            with np.load(self.blocks / f"block-{b}.npz", allow_pickle=False) as data:
                sums, counts = data["sums"], data["counts"]
        except Exception as exc:  # missing, truncated, not an npz: many exception types
            raise _DamagedState(f"lists block {b}, which is missing or unreadable in "
                                f"{self.blocks.name} ({_first_line(exc)})") from exc
        if sums.shape != (D, C, E * H) or counts.shape != (D, C):
            raise _DamagedState(f"lists block {b}, whose arrays do not fit this run")
        return sums, counts

    def set_aside(self, reason: str) -> None:
        """Rename a damaged running state (and its block files) to ``*.damaged``, kept
        for inspection."""
        path = self.path
        aside = Path(str(path) + ".damaged")
        blocks_aside = Path(str(self.blocks) + ".damaged")
        try:
            os.replace(path, aside)
            if self.blocks.exists():
                shutil.rmtree(blocks_aside, ignore_errors=True)
                os.replace(self.blocks, blocks_aside)
        except OSError as exc:
            raise EngineError(f"running-state file {path} {reason}, and could not be set aside "
                              f"({exc}); move it away to start afresh") from exc
        print(f"warning: running-state file {path} {reason}; set aside as {aside.name}, "
              "starting afresh", file=sys.stderr, flush=True)

    # -- writing -----------------------------------------------------------------------------
    def _save_blocks(self, closed_blocks: dict[int, tuple[Any, np.ndarray]]) -> list[int]:
        self.blocks.mkdir(parents=True, exist_ok=True)
        for b, (sums, counts) in closed_blocks.items():
            if b in self.on_disk:
                continue
            target = self.blocks / f"block-{b}.npz"
            tmp = self.blocks / f"block-{b}.tmp.npz"
            try:
                np.savez(tmp, sums=sums, counts=counts)
                os.replace(tmp, target)
            except OSError as exc:
                tmp.unlink(missing_ok=True)
                raise OSError(f"block file {target.name}: {exc.strerror or exc}") from exc
            self.on_disk.add(b)
        return sorted(closed_blocks)

    def save(self, k: int, hs, cs, starts: np.ndarray, bufs: dict[tuple[int, str], torch.Tensor],
             total: torch.Tensor, total_counts: np.ndarray, accs: dict,
             closed_blocks: dict[int, tuple[Any, np.ndarray]]) -> None:
        """Write the running state before step ``k``: ``bufs`` holds each state buffer's
        live rows, ``accs`` the open accumulators (``.sums``, ``.counts``)."""
        keys = sorted(bufs)
        acc_ids = sorted(accs)
        try:
            meta = {
                "fingerprint": self.fingerprint,
                "k": int(k),
                "bufs": [list(key) for key in keys],
                "accs": acc_ids,
                "closed_blocks": self._save_blocks(closed_blocks),
            }
            ck = {
                "format": RUNNING_STATE_FORMAT,
                "version": RUNNING_STATE_VERSION,
                "meta": json.dumps(meta),
                "hs": [h.cpu() for h in hs],
                "cs": [c.cpu() if c is not None else None for c in cs],
                "starts": torch.from_numpy(np.array(starts, dtype=np.int64)),
                "bufs": [bufs[key] for key in keys],
                "total": total.cpu(),
                "total_counts": torch.from_numpy(np.array(total_counts, dtype=np.int64)),
                "acc_sums": [accs[b].sums.cpu() for b in acc_ids],
                "acc_counts": [torch.from_numpy(np.array(accs[b].counts, dtype=np.int64))
                               for b in acc_ids],
            }
            torch_save_atomic(ck, self.path)
        except OSError as exc:
            raise EngineError(f"could not write the running state {self.path}: {exc}") from exc


def save_pass(p: _Pass, file: RunningStateFile) -> None:
    """Write the pass's running state (between windows: the analysed state in slot 0)."""
    n = len(p.starts)
    bufs = {key: buf[0 if key == p.chosen else p.cur[key], :n].cpu().clone()
            for key, buf in p.bufs.items()}
    file.save(p.k, p.hs, p.cs, p.starts, bufs, p.total, p.total_counts, p.accs, p.closed_blocks)
    # Ping-pong buffers were saved from their current slot; restore puts them in slot 0.
    for key in p.cur:
        if key != p.chosen and p.cur[key] != 0:
            p.bufs[key][0, :n].copy_(p.bufs[key][p.cur[key], :n])
            p.cur[key] = 0


def restore_pass(p: _Pass, file: RunningStateFile, max_rows: int) -> None:
    """Continue ``p`` from the running state in ``file``, if there is one of this run."""
    ck = file.load(p.start, p.end, max_rows)
    if ck is None:
        return
    D, C, E, H = file.shape
    buf = p.bufs[p.chosen]
    dev, dt = buf.device, buf.dtype
    p.k = ck["k"]
    p.hs = [h.to(dev, dt) for h in ck["hs"]]
    p.cs = [c.to(dev, dt) if c is not None else None for c in ck["cs"]]
    p.starts = ck["starts"]
    for key, value in ck["bufs"].items():
        p.bufs[key][0, : value.shape[0]] = value.to(dev, dt)
    p.total = ck["total"].to(dev)
    p.total_counts = ck["total_counts"]
    for b, (s, n) in ck["accs"].items():
        acc = Accumulator(D, C, H, E, dev, dt)
        acc.sums.copy_(s)
        acc.counts = n
        p.accs[b] = acc
    for b in ck["closed_blocks"]:  # one at a time into the spill (checked in load)
        sums, counts = file.load_block(b)
        p.closed_blocks[b] = (spill_block(p.spill, b, sums), counts)
    file.on_disk = set(p.closed_blocks)
    p.resumed = True
