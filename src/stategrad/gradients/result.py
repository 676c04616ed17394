"""The state gradient result: sums and counts per (delay, class), self-describing, mergeable.

File format (HDF5, ``format = "stategrad-result"``, ``version = 1``)::

    /sums           float64 (D, C, H, E)   sum of G(t, d) over the t of class c
    /counts         int64   (D, C)          how many t were summed
    /delays         int64   (D,)
    /classes        str     (C,)            class names; index 0 is "all"
    /vocab          str     (V,)            the model's vocabulary, id order
    /blocks/sums    float32 (B, D, C, H, E) optional: the same per block of text, in
                                            chunks of one block x one delay, so that one
                                            delay of every block is one cheap read
    /blocks/counts  int64   (B, D, C)
    /blocks/starts  int64   (B,)            first start position of each block
    attrs: format, version, metadata (JSON: semantics, state, layer, model identity,
           text identity, class definitions, sampling, coverage (the start positions of
           each text it holds, see :func:`coverage_record`), how it was run)

The file's size depends on D, C, H, E (and the number of blocks), never on the
length of the text.  Sums and counts of disjoint parts of a text add up to the
result of the whole, which is what :meth:`GradientResult.merge` does; it refuses parts
whose coverage overlaps.

Block sums are (number of blocks) times the size of the sums, so they are never
held in memory all at once: :func:`load_result` gives a :class:`BlockSums` that
reads one delay at a time, the engine keeps closed blocks on disk
(:class:`BlockSpill`), and :meth:`GradientResult.save` writes them delay by delay.
Files written before the chunking was per delay (one chunk per block) still load;
their blocks are then read into memory, as they always were.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import synced_temp
from .blocks import BlockSums, _delay_of, _FileBlocks, _StackedBlocks
from .coverage import merged_coverage
from .errors import EmptyClassError, ResultError, _reason

RESULT_FORMAT = "stategrad-result"
RESULT_VERSION = 1

# Metadata that must agree for two results to be merged.
_MERGE_KEYS = ("semantics", "state", "layer", "model_identity", "dtype_family")


@dataclass
class GradientResult:
    sums: np.ndarray  # (D, C, H, E) float64
    counts: np.ndarray  # (D, C) int64
    classes: list[str]
    vocab: list[str]
    metadata: dict[str, Any] = field(default_factory=dict)
    block_sums: np.ndarray | BlockSums | None = None  # (B, D, C, H, E)
    block_counts: np.ndarray | None = None  # (B, D, C)
    block_starts: np.ndarray | None = None  # (B,)

    def __post_init__(self) -> None:
        self.sums = np.asarray(self.sums, dtype=np.float64)
        self.counts = np.asarray(self.counts, dtype=np.int64)
        if self.sums.ndim != 4 or self.counts.shape != self.sums.shape[:2]:
            raise ResultError(
                f"sums must be (D, C, H, E) and counts (D, C); got {self.sums.shape} and {self.counts.shape}"
            )
        if len(self.classes) != self.sums.shape[1]:
            raise ResultError(f"{len(self.classes)} class names for {self.sums.shape[1]} classes")
        if (self.block_sums is None) != (self.block_counts is None):
            raise ResultError("block sums and block counts come together")

    # --- shape ---------------------------------------------------------------------------
    @property
    def delays(self) -> np.ndarray:
        return np.arange(self.sums.shape[0])

    @property
    def max_delay(self) -> int:
        return self.sums.shape[0]

    @property
    def hidden_size(self) -> int:
        return self.sums.shape[2]

    @property
    def embedding_size(self) -> int:
        return self.sums.shape[3]

    @property
    def has_blocks(self) -> bool:
        return self.block_sums is not None

    @property
    def n_blocks(self) -> int:
        return 0 if self.block_sums is None else int(self.block_sums.shape[0])

    def block_delay(self, d: int, c: int | str | None = None) -> np.ndarray:
        """Every block's sums at delay d, (B, C, H, E): only this delay is read; with a
        class ``c`` only that class's, (B, H, E)."""
        if self.block_sums is None:
            raise ResultError("this result has no per-block sums")
        ci = None if c is None else self.class_index(c)
        return _delay_of(self.block_sums, self._delay_index(d), ci)

    def class_index(self, c: int | str) -> int:
        if isinstance(c, (int, np.integer)):
            if not 0 <= int(c) < len(self.classes):
                raise ResultError(f"class index {c} out of range (0..{len(self.classes) - 1})")
            return int(c)
        try:
            return self.classes.index(c)
        except ValueError:
            raise ResultError(f"no class {c!r}; the result has {self.classes}") from None

    def _delay_index(self, d: int) -> int:
        if not 0 <= int(d) < self.max_delay:
            raise ResultError(f"delay {d} out of range: the result has delays 0..{self.max_delay - 1}")
        return int(d)

    # --- access --------------------------------------------------------------------------
    def count(self, d: int, c: int | str = "all") -> int:
        return int(self.counts[self._delay_index(d), self.class_index(c)])

    def sum(self, d: int, c: int | str = "all") -> np.ndarray:
        return self.sums[self._delay_index(d), self.class_index(c)]

    def mean(self, d: int, c: int | str = "all") -> np.ndarray:
        """The average state gradient ``Gbar_d`` of class c: an H x E array."""
        di, ci = self._delay_index(d), self.class_index(c)
        n = self.counts[di, ci]
        if n == 0:
            raise EmptyClassError(
                f"class {self.classes[ci]!r} has no occurrences at delay {di}: no mean exists"
            )
        return self.sums[di, ci] / n

    def means(self, c: int | str = "all") -> np.ndarray:
        """All delays of class c as (D, H, E); delays without occurrences are NaN, and
        :meth:`empty_delays` says which."""
        ci = self.class_index(c)
        n = self.counts[:, ci].astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.sums[:, ci] / n[:, None, None]

    def empty_delays(self, c: int | str = "all") -> list[int]:
        return [int(d) for d in np.flatnonzero(self.counts[:, self.class_index(c)] == 0)]

    # --- combination ---------------------------------------------------------------------
    def compatible(self, other: GradientResult) -> list[str]:
        problems = []
        if self.sums.shape != other.sums.shape:
            problems.append(f"shapes differ: {self.sums.shape} vs {other.sums.shape}")
        if self.classes != other.classes:
            problems.append("class lists differ")
        if self.vocab != other.vocab:
            problems.append("vocabularies differ")
        for key in _MERGE_KEYS:
            a, b = self.metadata.get(key), other.metadata.get(key)
            if a != b:
                problems.append(f"{key} differs: {a!r} vs {b!r}")
        if self.metadata.get("class_definitions") != other.metadata.get("class_definitions"):
            problems.append("class definitions differ")
        if _class_kind(self.metadata) != _class_kind(other.metadata):
            problems.append(f"classes of different kinds: {_class_kind(self.metadata)} vs "
                            f"{_class_kind(other.metadata)}")
        if self.has_blocks != other.has_blocks:
            problems.append("one result has blocks, the other not")
        return problems

    def merge(self, other: GradientResult, *, allow_unknown_coverage: bool = False) -> GradientResult:
        """The result of both texts (or both disjoint parts of one text), as a new
        result: ``self`` and ``other`` are left unchanged (``res = res.merge(other)``).

        Refuses results that cover a start position of the same text twice (it would be
        counted twice), and results without a coverage record (written by an older
        stategrad) unless ``allow_unknown_coverage``: the merged result then records
        that its coverage is unknown."""
        problems = self.compatible(other)
        if problems:
            raise ResultError("cannot merge results: " + "; ".join(problems))
        coverage = merged_coverage(self.metadata, other.metadata, allow_unknown_coverage)
        meta = copy.deepcopy(self.metadata)
        meta.pop("slice", None)  # one slice no longer describes it; the coverage does
        meta.pop("coverage_unknown", None)
        if coverage is None:
            meta.pop("coverage", None)
            meta["coverage_unknown"] = True
        else:
            meta["coverage"] = coverage
        if isinstance(meta.get("sampling"), dict):
            meta["sampling"]["starts_used"] = int(self.counts[0, 0] + other.counts[0, 0])
        parts = list(meta.get("parts", [meta.get("text", {})])) + list(
            other.metadata.get("parts", [other.metadata.get("text", {})])
        )
        meta["parts"] = parts
        meta["text"] = {"merged": True, "tokens": sum(int(p.get("tokens", 0)) for p in parts)}
        blocks = {}
        if self.has_blocks:
            order = np.argsort(np.concatenate([self.block_starts, other.block_starts]), kind="stable")
            if isinstance(self.block_sums, np.ndarray) and isinstance(other.block_sums, np.ndarray):
                block_sums = np.concatenate([self.block_sums, other.block_sums])[order]
            else:  # on disk: stays there until written
                block_sums = _StackedBlocks([self.block_sums, other.block_sums], order)
            blocks = dict(
                block_sums=block_sums,
                block_counts=np.concatenate([self.block_counts, other.block_counts])[order],
                block_starts=np.concatenate([self.block_starts, other.block_starts])[order],
            )
        return GradientResult(
            sums=self.sums + other.sums,
            counts=self.counts + other.counts,
            classes=list(self.classes),
            vocab=list(self.vocab),
            metadata=meta,
            **blocks,
        )

    # --- files ---------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """Write atomically: a temp file beside ``path`` renamed into place, so a full
        disk, a read-only folder or a kill never leaves a truncated result (or a temp
        file) behind and an earlier file at ``path`` stays as it was."""
        path = Path(path)
        try:
            write_h5_atomic(path, self._write)
        except OSError as exc:
            raise ResultError(f"could not write result {path}: {_reason(exc)}") from exc
        return path

    def _write(self, f, check: Callable[[], None]) -> None:
        import h5py

        str_dt = h5py.string_dtype()
        f.attrs["format"] = RESULT_FORMAT
        f.attrs["version"] = RESULT_VERSION
        f.attrs["metadata"] = json.dumps(self.metadata, sort_keys=True, default=json_default)
        f.create_dataset("sums", data=self.sums, compression="gzip", compression_opts=4)
        f.create_dataset("counts", data=self.counts)
        f.create_dataset("delays", data=self.delays)
        f.create_dataset("classes", data=np.array(self.classes, dtype=object), dtype=str_dt)
        f.create_dataset("vocab", data=np.array(self.vocab, dtype=object), dtype=str_dt)
        if self.has_blocks:
            g = f.create_group("blocks")
            shape = tuple(self.block_sums.shape)
            # One chunk per (block, delay): a delay of every block is read without
            # decompressing the other delays (the interval code goes delay by delay).
            ds = g.create_dataset("sums", shape=shape, dtype=np.float32, compression="gzip",
                                  compression_opts=4, chunks=(1, 1) + shape[2:])
            if isinstance(self.block_sums, BlockSums):
                self.block_sums.write_into(ds, check)
            else:
                for d in range(shape[1]):
                    ds[:, d] = np.asarray(self.block_sums[:, d], dtype=np.float32)
                    check()
            g.create_dataset("counts", data=self.block_counts)
            g.create_dataset("starts", data=self.block_starts)




def _class_kind(metadata: dict[str, Any]) -> tuple[str, Any]:
    """Word-type or token classes, and the frequency bands of their strata: results
    written before class_info was recorded have word-type classes without strata."""
    info = metadata.get("class_info") or {}
    return info.get("unit", "word type"), (info.get("frequency") or {}).get("bands")


class _GuardedFile:
    """A binary file for h5py that never passes a failed write on to HDF5.

    HDF5 that meets a write error (a full disk) cannot close its file either, and its
    objects then fail as they are freed: the interpreter crashes at exit.  Here a failed
    write is recorded and reported as done; HDF5 finishes and closes normally, and the
    caller raises the recorded error and deletes the (unusable) file.
    """

    def __init__(self, raw) -> None:
        self.raw = raw
        self.error: OSError | None = None

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        if self.error is None:
            try:
                done = 0
                while done < len(view):  # an unbuffered write may be partial
                    done += self.raw.write(view[done:])
            except OSError as exc:
                self.error = exc
        return len(view)

    def check(self) -> None:
        if self.error is not None:
            raise self.error

    def truncate(self, size: int | None = None) -> int:
        if self.error is None:
            try:
                return self.raw.truncate(size)
            except OSError as exc:
                self.error = exc
        return size if size is not None else self.raw.tell()

    def flush(self) -> None:
        pass  # unbuffered

    def read(self, n: int = -1) -> bytes:
        return self.raw.read(n)

    def readinto(self, buf) -> int:
        return self.raw.readinto(buf)

    def seek(self, pos: int, whence: int = 0) -> int:
        return self.raw.seek(pos, whence)

    def tell(self) -> int:
        return self.raw.tell()


def write_h5_atomic(path: Path, write: Callable[[Any, Callable[[], None]], None]) -> None:
    """Create an HDF5 file at ``path`` with ``write(h5py.File, check)``, atomically.

    ``check()`` raises the first failed write (e.g. a full disk), so that a long write
    can stop early; it is also checked once ``write`` returns.

    The file is written as a temp file in the same folder, closed, synced and renamed
    over ``path``; on any error the temp file is removed, an earlier file at ``path`` is
    left as it was, and an OSError says why (the caller names the file).
    """
    import h5py

    with synced_temp(path) as fd, open(fd, "r+b", buffering=0) as raw:
        guarded = _GuardedFile(raw)
        # The with closes every HDF5 object before the file is judged or removed.
        with h5py.File(guarded, "w") as f:
            write(f, guarded.check)
            guarded.check()
        guarded.check()  # closing writes too
        os.fsync(raw.fileno())


def json_default(obj: Any) -> Any:
    """``json.dumps(default=...)`` for NumPy scalars and arrays and paths."""
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def load_result(path: str | os.PathLike, *, blocks: bool = True) -> GradientResult:
    """Open a result file written by :meth:`GradientResult.save`."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise ResultError(f"result file not found: {path}")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise ResultError(f"{path} is not a readable HDF5 result file: {exc}") from exc
    with f:
        if f.attrs.get("format") != RESULT_FORMAT:
            raise ResultError(f"{path} is not a stategrad result file")
        version = int(f.attrs.get("version", -1))
        if version != RESULT_VERSION:
            raise ResultError(f"{path} has result version {version}; this stategrad reads {RESULT_VERSION}")
        kwargs: dict[str, Any] = {}
        if blocks and "blocks" in f:
            ds = f["blocks/sums"]
            per_delay = ds.chunks is not None and ds.chunks[:2] == (1, 1)
            kwargs = dict(
                # Files from before per-delay chunks: a delay read would decompress whole
                # blocks, once per delay, so they are read into memory as before.
                block_sums=_FileBlocks(path, ds.shape) if per_delay else ds[...],
                block_counts=f["blocks/counts"][...],
                block_starts=f["blocks/starts"][...],
            )
        return GradientResult(
            sums=f["sums"][...],
            counts=f["counts"][...],
            classes=[s.decode() if isinstance(s, bytes) else s for s in f["classes"][...]],
            vocab=[s.decode() if isinstance(s, bytes) else s for s in f["vocab"][...]],
            metadata=json.loads(f.attrs["metadata"]),
            **kwargs,
        )
