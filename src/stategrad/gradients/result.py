"""The state gradient result: sums and counts per (delay, class), self-describing, mergeable.

File format (HDF5, ``format = "stategrad-result"``, ``version = 1``)::

    /sums           float64 (D, C, H, E)   sum of G(t, d) over the t of class c
    /counts         int64   (D, C)          how many t were summed
    /delays         int64   (D,)
    /classes        str     (C,)            class names; index 0 is "all"
    /vocab          str     (V,)            the model's vocabulary, id order
    /blocks/sums    float32 (B, D, C, H, E) optional: the same per block of text
    /blocks/counts  int64   (B, D, C)
    /blocks/starts  int64   (B,)            first start position of each block
    attrs: format, version, metadata (JSON: semantics, state, layer, model identity,
           text identity, class definitions, sampling, coverage (the start positions of
           each text it holds, see :func:`coverage_record`), how it was run)

The file's size depends on D, C, H, E (and the number of blocks), never on the
length of the text.  Sums and counts of disjoint parts of a text add up to the
result of the whole, which is what :meth:`GradientResult.merge` does; it refuses parts
whose coverage overlaps.
"""

from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

RESULT_FORMAT = "stategrad-result"
RESULT_VERSION = 1

# Metadata that must agree for two results to be merged.
_MERGE_KEYS = ("semantics", "state", "layer", "model_identity", "dtype_family")


class ResultError(ValueError):
    """A result file or operation on results that cannot be done as asked."""


class EmptyClassError(ResultError):
    """A (delay, class) cell with no occurrences: its mean does not exist."""


@dataclass
class GradientResult:
    sums: np.ndarray  # (D, C, H, E) float64
    counts: np.ndarray  # (D, C) int64
    classes: list[str]
    vocab: list[str]
    metadata: dict[str, Any] = field(default_factory=dict)
    block_sums: np.ndarray | None = None  # (B, D, C, H, E)
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
            blocks = dict(
                block_sums=np.concatenate([self.block_sums, other.block_sums])[order],
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
        """Write atomically: a temp file renamed into place, so a full disk or a kill
        never leaves a truncated result under the final name."""
        import h5py

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        str_dt = h5py.string_dtype()
        try:
            with h5py.File(tmp, "w") as f:
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
                    g.create_dataset("sums", data=self.block_sums.astype(np.float32),
                                     compression="gzip", compression_opts=4,
                                     chunks=(1,) + self.block_sums.shape[1:])
                    g.create_dataset("counts", data=self.block_counts)
                    g.create_dataset("starts", data=self.block_starts)
            os.replace(tmp, path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise ResultError(f"could not write result {path}: {exc}") from exc
        return path


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
            kwargs = dict(
                block_sums=f["blocks/sums"][...],
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
