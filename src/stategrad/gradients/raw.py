"""Individual state gradient matrices for a chosen subset of (position, delay) pairs.

Averages never need single matrices, but some users want to look at them.  The
engine hands every finished matrix to a callback; :class:`RawPairWriter` keeps
the chosen ones and appends them in batches to a chunked, compressed HDF5 file,
so memory stays bounded whatever the number of pairs::

    /matrices   float32 (N, H, E)   G(t, d), one chunk per matrix, gzip
    /positions  int64   (N,)        t
    /delays     int64   (N,)        d
    attrs: format = "stategrad-raw", metadata (JSON)
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

RAW_FORMAT = "stategrad-raw"


class RawError(ValueError):
    """A raw-output request or file that cannot be used."""


def parse_index_spec(spec: str, upper: int) -> np.ndarray:
    """``"a:b"``, ``"a:b:step"``, ``"7"`` or comma-separated mixtures -> sorted unique ints
    below ``upper``.  ``"all"`` or ``":"`` means every index."""
    spec = spec.strip()
    if spec in ("all", ":"):
        return np.arange(upper)
    values: list[np.ndarray] = []
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            if ":" in part:
                fields = [int(f) if f.strip() else None for f in part.split(":")]
                if len(fields) > 3:
                    raise ValueError
                sl = slice(*fields)
                values.append(np.arange(upper)[sl])
            else:
                values.append(np.array([int(part)]))
        except ValueError:
            raise RawError(
                f"cannot read index selection {part!r}: use N, A:B, A:B:STEP or a comma list"
            ) from None
    if not values:
        raise RawError(f"empty index selection {spec!r}")
    out = np.unique(np.concatenate(values))
    bad = out[(out < 0) | (out >= upper)]
    if len(bad):
        raise RawError(f"indices {bad[:5].tolist()} lie outside 0..{upper - 1}")
    return out


class RawPairWriter:
    """Engine callback writing G(t, d) for t in ``positions`` and d in ``delays``."""

    def __init__(self, path: str | os.PathLike, positions: np.ndarray, delays: np.ndarray,
                 hidden_size: int, embedding_size: int, metadata: dict[str, Any] | None = None,
                 batch: int = 256):
        import h5py

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = self.path.with_name(self.path.name + ".tmp")
        self.positions = np.zeros(int(positions.max()) + 1 if len(positions) else 0, dtype=bool)
        self.positions[positions] = True
        self.delays = np.zeros(int(delays.max()) + 1 if len(delays) else 0, dtype=bool)
        self.delays[delays] = True
        self.H, self.E = hidden_size, embedding_size
        self._file = h5py.File(self._tmp, "w")
        self._file.attrs["format"] = RAW_FORMAT
        self._file.attrs["metadata"] = json.dumps(metadata or {}, default=str)
        self._mat = self._file.create_dataset(
            "matrices", shape=(0, self.H, self.E), maxshape=(None, self.H, self.E),
            dtype="float32", chunks=(1, self.H, self.E), compression="gzip", compression_opts=4)
        self._pos = self._file.create_dataset("positions", shape=(0,), maxshape=(None,), dtype="int64")
        self._del = self._file.create_dataset("delays", shape=(0,), maxshape=(None,), dtype="int64")
        self._batch = batch
        self._buf_m: list[np.ndarray] = []
        self._buf_t: list[np.ndarray] = []
        self._buf_d: list[np.ndarray] = []
        self.count = 0

    def __call__(self, k: int, starts: np.ndarray, tangents: torch.Tensor) -> None:
        d = k - starts
        keep = (starts < len(self.positions)) & (d < len(self.delays))
        if not keep.any():
            return
        idx = np.flatnonzero(keep)
        idx = idx[self.positions[starts[idx]] & self.delays[d[idx]]]
        if not len(idx):
            return
        mats = tangents[torch.as_tensor(idx)].transpose(1, 2).to(torch.float32).cpu().numpy()
        self._buf_m.append(mats)
        self._buf_t.append(starts[idx])
        self._buf_d.append(d[idx])
        if sum(len(b) for b in self._buf_t) >= self._batch:
            self._flush()

    def _flush(self) -> None:
        if not self._buf_t:
            return
        mats = np.concatenate(self._buf_m)
        n0, n = self._mat.shape[0], len(mats)
        for ds, data in ((self._mat, mats), (self._pos, np.concatenate(self._buf_t)),
                         (self._del, np.concatenate(self._buf_d))):
            ds.resize(n0 + n, axis=0)
            ds[n0:] = data
        self.count += n
        self._buf_m, self._buf_t, self._buf_d = [], [], []

    def close(self) -> Path:
        """Finish the file and move it to its final name."""
        try:
            self._flush()
            self._file.close()
            os.replace(self._tmp, self.path)
        except OSError as exc:
            raise RawError(f"could not write raw gradients to {self.path}: {exc}") from exc
        return self.path

    def abort(self) -> None:
        try:
            self._file.close()
        finally:
            self._tmp.unlink(missing_ok=True)


def iter_raw_pairs(path: str | os.PathLike, chunk: int = 256) -> Iterator[tuple[int, int, np.ndarray]]:
    """Yield ``(t, d, G)`` from a raw file, reading ``chunk`` matrices at a time."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise RawError(f"raw gradient file not found: {path}")
    with h5py.File(path, "r") as f:
        if f.attrs.get("format") != RAW_FORMAT:
            raise RawError(f"{path} is not a stategrad raw gradient file")
        n = f["matrices"].shape[0]
        for lo in range(0, n, chunk):
            mats = f["matrices"][lo : lo + chunk]
            ts = f["positions"][lo : lo + chunk]
            ds = f["delays"][lo : lo + chunk]
            for t, d, G in zip(ts, ds, mats, strict=True):
                yield int(t), int(d), G
