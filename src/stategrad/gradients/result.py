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
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import current_umask, remove_stale_temps

RESULT_FORMAT = "stategrad-result"
RESULT_VERSION = 1

# Metadata that must agree for two results to be merged.
_MERGE_KEYS = ("semantics", "state", "layer", "model_identity", "dtype_family")


class ResultError(ValueError):
    """A result file or operation on results that cannot be done as asked."""


class EmptyClassError(ResultError):
    """A (delay, class) cell with no occurrences: its mean does not exist."""


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


def _delay_of(blocks: np.ndarray | BlockSums, d: int) -> np.ndarray:
    """(B, C, H, E) sums of delay ``d`` from blocks in memory (their dtype) or on disk."""
    if isinstance(blocks, BlockSums):
        return blocks.delay(d)
    return np.asarray(blocks[:, d])


class _FileBlocks(BlockSums):
    """The blocks of a result file, read per delay.  The file is opened for each read
    (no HDF5 handle is left open) and must not have changed since it was loaded."""

    def __init__(self, path: Path, shape: Sequence[int]) -> None:
        super().__init__(shape)
        self.path = Path(path).resolve()
        self._stamp = _file_stamp(self.path)

    def delay(self, d: int) -> np.ndarray:
        import h5py

        if _file_stamp(self.path) != self._stamp:
            raise ResultError(f"{self.path} changed after it was loaded; load it again")
        try:
            with h5py.File(self.path, "r") as f:
                return f["blocks/sums"][:, d]
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

    def block_delay(self, d: int) -> np.ndarray:
        """Every block's sums at delay d, (B, C, H, E): only this delay is read."""
        if self.block_sums is None:
            raise ResultError("this result has no per-block sums")
        return _delay_of(self.block_sums, self._delay_index(d))

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
        if self.has_blocks != other.has_blocks:
            problems.append("one result has blocks, the other not")
        return problems

    def merge(self, other: GradientResult, *, allow_unknown_coverage: bool = False) -> GradientResult:
        """The result of both texts (or both disjoint parts of one text).

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


def _reason(exc: OSError) -> str:
    """One line: the operating system's reason, without HDF5's multi-line detail."""
    if exc.strerror:
        return exc.strerror
    return " ".join(str(exc).split())


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

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(name)
    try:
        with open(fd, "r+b", buffering=0) as raw:
            guarded = _GuardedFile(raw)
            # The with closes every HDF5 object before the file is judged or removed.
            with h5py.File(guarded, "w") as f:
                write(f, guarded.check)
                guarded.check()
            guarded.check()  # closing writes too
            os.fsync(raw.fileno())
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    remove_stale_temps(path)


# --- coverage: which start positions of which text a result holds ----------------------------
#
# metadata["coverage"] is a list of {"text": SHA-256 of the token ids, "tokens": N,
# "sampling": the rule, "ranges": [[start, stop], ...]} (half-open ranges of start positions,
# sorted and disjoint).  Two results overlap when they have ranges of the same text that
# intersect, whatever their sampling: a sampled and an unsampled run of one range share
# positions, and telling exactly which would need the masks.


def sampling_rule(every: int | None, fraction: float | None, seed: int | None) -> dict[str, Any]:
    """The engine's sampling options as a rule: every start, every K-th, or a seeded fraction."""
    if every is not None and every > 1:
        return {"rule": "every", "every": int(every)}
    if fraction is not None and fraction < 1:
        return {"rule": "fraction", "fraction": float(fraction), "seed": seed}
    return {"rule": "all"}


def coverage_record(text_sha256: str, tokens: int, start: int, stop: int,
                    sampling: dict[str, Any]) -> list[dict[str, Any]]:
    """The coverage of one run over start positions ``[start, stop)`` of one text."""
    ranges = [[int(start), int(stop)]] if stop > start else []
    return [{"text": text_sha256, "tokens": int(tokens), "sampling": dict(sampling),
             "ranges": ranges}]


def coverage_overlaps(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> list[str]:
    """The ranges of start positions that ``a`` and ``b`` both cover, described."""
    found = []
    for ea in a:
        for eb in b:
            if ea["text"] != eb["text"]:
                continue
            for ra in ea["ranges"]:
                for rb in eb["ranges"]:
                    lo, hi = max(ra[0], rb[0]), min(ra[1], rb[1])
                    if lo < hi:
                        found.append(f"[{ra[0]}, {ra[1]}) and [{rb[0]}, {rb[1]}) share start "
                                     f"positions [{lo}, {hi}) of text {ea['text'][:12]}...")
    return found


def union_coverage(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Both coverages in one record: ranges of one text and sampling rule joined."""
    out: list[dict[str, Any]] = copy.deepcopy(a)
    for eb in b:
        same = next((e for e in out if e["text"] == eb["text"] and e["sampling"] == eb["sampling"]),
                    None)
        if same is None:
            out.append(copy.deepcopy(eb))
            continue
        joined: list[list[int]] = []
        for lo, hi in sorted(same["ranges"] + eb["ranges"]):
            if joined and lo <= joined[-1][1]:
                joined[-1][1] = max(joined[-1][1], hi)
            else:
                joined.append([lo, hi])
        same["ranges"] = joined
    return out


def merged_coverage(a: dict[str, Any], b: dict[str, Any],
                    allow_unknown: bool = False) -> list[dict[str, Any]] | None:
    """The coverage of the merge of results with metadata ``a`` and ``b`` (None: unknown).
    Raises :class:`ResultError` on an overlap, or on a missing record unless allowed."""
    ca, cb = a.get("coverage"), b.get("coverage")
    if ca is None or cb is None:
        if not allow_unknown:
            raise ResultError(
                "cannot merge: a result has no coverage record (written before stategrad "
                "recorded which start positions a result covers), so an overlap cannot be "
                "ruled out; --allow-unknown-coverage merges it anyway")
        return None
    overlaps = coverage_overlaps(ca, cb)
    if overlaps:
        raise ResultError("cannot merge overlapping results (their sums would count these "
                          "start positions twice): " + "; ".join(overlaps))
    return union_coverage(ca, cb)


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
