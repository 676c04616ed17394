"""Per-block sums (confidence intervals) that never sit in memory all at once: read
one delay at a time from a result file, stacked from several, or spilled to disk while
the engine runs."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from .errors import ResultError, _reason


class BlockSums:
    """Per-block sums ``(B, D, C, H, E)`` (float32) that are read one delay at a time.

    :meth:`delay` gives ``(B, C, H, E)``; indexing ``[blocks, d, ...]`` with one delay d
    reads just that delay.  Anything else (``np.asarray``, other indexing, ndarray
    methods such as ``sum``) materialises the whole array: convenient for small
    results and tests, never done by the interval code or by :meth:`GradientResult.save`.
    """

    dtype = np.dtype(np.float32)
    ndim = 5

    def __init__(self, shape: Sequence[int]) -> None:
        self.shape = tuple(int(n) for n in shape)

    def __len__(self) -> int:
        return self.shape[0]

    def delay(self, d: int) -> np.ndarray:
        """Every block's sums at delay ``d``: (B, C, H, E) float32."""
        raise NotImplementedError

    def delay_class(self, d: int, c: int) -> np.ndarray:
        """Every block's sums of class ``c`` at delay ``d``: (B, H, E) float32 (from the
        whole delay, unless the storage can read one class alone)."""
        return self.delay(d)[:, c]

    def write_into(self, dataset, check: Callable[[], None] = lambda: None) -> None:
        """Copy into an HDF5 dataset of the same shape, one delay at a time; ``check``
        runs after each write (it raises to stop early)."""
        for d in range(self.shape[1]):
            dataset[:, d] = self.delay(d)
            check()

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = np.empty(self.shape, dtype=np.float32)
        for d in range(self.shape[1]):
            out[:, d] = self.delay(d)
        return out if dtype is None else out.astype(dtype, copy=False)

    def __getitem__(self, key):
        key = key if isinstance(key, tuple) else (key,)
        plain = all(k is not Ellipsis and k is not None for k in key)
        if plain and len(key) >= 2 and isinstance(key[1], (int, np.integer)):
            d = int(key[1]) + (self.shape[1] if key[1] < 0 else 0)
            if not 0 <= d < self.shape[1]:
                raise IndexError(f"delay {key[1]} out of range for {self.shape[1]} delays")
            return self.delay(d)[(key[0],) + key[2:]]
        return np.asarray(self)[key]

    def astype(self, dtype, copy: bool = True) -> np.ndarray:
        return np.asarray(self).astype(dtype)

    def __getattr__(self, name: str):
        # Other ndarray methods (sum, mean, ...) act on the materialised array.
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(np.asarray(self), name)


def _delay_of(blocks: np.ndarray | BlockSums, d: int, c: int | None = None) -> np.ndarray:
    """(B, C, H, E) sums of delay ``d`` from blocks in memory (their dtype) or on disk;
    with ``c`` only that class's, (B, H, E)."""
    if isinstance(blocks, BlockSums):
        return blocks.delay(d) if c is None else blocks.delay_class(d, c)
    return np.asarray(blocks[:, d] if c is None else blocks[:, d, c])


class _FileBlocks(BlockSums):
    """The blocks of a result file, read per delay.  The file is opened for each read
    (no HDF5 handle is left open) and must not have changed since it was loaded."""

    def __init__(self, path: Path, shape: Sequence[int]) -> None:
        super().__init__(shape)
        self.path = Path(path).resolve()
        self._stamp = _file_stamp(self.path)

    def delay(self, d: int) -> np.ndarray:
        return self._read((slice(None), d))

    def delay_class(self, d: int, c: int) -> np.ndarray:
        # The chunk (one block, one delay) is still decompressed whole, but only the
        # class's (H, E) of each block is kept: B x H x E in memory, not B x C x H x E.
        return self._read((slice(None), d, c))

    def _read(self, key: tuple) -> np.ndarray:
        import h5py

        if _file_stamp(self.path) != self._stamp:
            raise ResultError(f"{self.path} changed after it was loaded; load it again")
        try:
            with h5py.File(self.path, "r") as f:
                return f["blocks/sums"][key]
        except OSError as exc:
            raise ResultError(f"could not read the blocks of {self.path}: {_reason(exc)}") from exc


def _file_stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


class _StackedBlocks(BlockSums):
    """Blocks of several results side by side (in ``order``), read per delay: a merge
    of results with blocks never holds more than one delay of them."""

    def __init__(self, parts: Sequence[np.ndarray | BlockSums], order: np.ndarray) -> None:
        shape = parts[0].shape
        super().__init__((sum(p.shape[0] for p in parts),) + tuple(shape[1:]))
        self.parts = list(parts)
        self.order = np.asarray(order)

    def delay(self, d: int) -> np.ndarray:
        stacked = np.concatenate([_delay_of(p, d) for p in self.parts])[self.order]
        return stacked.astype(np.float32, copy=False)


class BlockSpill:
    """Closed blocks of a running computation, kept on disk instead of in memory.

    Each block is one ``.npy`` file of float32 in the engine's layout (D, C, E, H), in a
    private temporary folder (under ``TMPDIR``) that goes when the spill and every
    result reading from it are gone.
    """

    def __init__(self, D: int, C: int, H: int, E: int) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="stategrad-blocks-")
        self.dims = (D, C, H, E)

    @property
    def folder(self) -> Path:
        return Path(self._dir.name)

    def _file(self, b: int) -> Path:
        return self.folder / f"block-{b}.npy"

    def add(self, b: int, sums: np.ndarray) -> _SpilledBlock:
        """Keep block ``b`` (any array of D*C*E*H values in the engine's order); returns
        a stand-in that gives the array back (``np.asarray``) in the shape it came in."""
        D, C, H, E = self.dims
        sums = np.asarray(sums)
        np.save(self._file(b), sums.astype(np.float32, copy=False).reshape(D, C, E, H))
        return _SpilledBlock(self, b, sums.shape)

    def read(self, b: int, d: int | None = None) -> np.ndarray:
        """Block ``b`` (D, C, E, H), or only its delay ``d`` (C, E, H), from disk."""
        # A memory map only for the copy: no more than what is asked for ever becomes resident.
        m = np.load(self._file(b), mmap_mode="r")
        try:
            return np.array(m if d is None else m[d])
        finally:
            del m

    def blocks(self, ids: Sequence[int]) -> BlockSums:
        """The blocks ``ids`` (in that order) as (B, D, C, H, E)."""
        return _SpilledBlocks(self, list(ids))


class _SpilledBlock:
    def __init__(self, spill: BlockSpill, b: int, shape: tuple[int, ...]) -> None:
        self.spill, self.b, self.shape = spill, b, shape

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = self.spill.read(self.b).reshape(self.shape)
        return out if dtype is None else out.astype(dtype, copy=False)


class _SpilledBlocks(BlockSums):
    def __init__(self, spill: BlockSpill, ids: list[int]) -> None:
        D, C, H, E = spill.dims
        super().__init__((len(ids), D, C, H, E))
        self.spill, self.ids = spill, ids

    def delay(self, d: int) -> np.ndarray:
        out = np.empty((len(self.ids),) + self.shape[2:], dtype=np.float32)
        for i, b in enumerate(self.ids):
            out[i] = self.spill.read(b, d).transpose(0, 2, 1)
        return out

    def write_into(self, dataset, check: Callable[[], None] = lambda: None) -> None:
        # Block by block: each block file is read once, one delay at a time.
        for i, b in enumerate(self.ids):
            for d in range(self.shape[1]):
                dataset[i, d] = self.spill.read(b, d).transpose(0, 2, 1)
                check()
