"""The ablation result: sums and counts per (distance or context length, class),
self-describing, mergeable.

File format (HDF5, ``format = "stategrad-ablation"``, ``version = 1``)::

    /sums/loss            float64 (K, C)      sum of the ablated loss
    /sums/loss_increase   float64 (K, C)      sum of ablated minus unablated loss
    /sums/kl              float64 (K, C)      sum of KL(p_orig || p_ablated)
    /counts               int64   (K, C)      how many predictions were summed
    /axis                 int64   (K,)        distances 1..D, or context lengths 0..C
                                              (attribute ``name``: distance | context)
    /classes              str     (C,)        class names; index 0 is "all"
    /vocab                str     (V,)
    /blocks/sums          float64 (B, 3, K, C) optional: the sums per block of positions,
    /blocks/counts        int64   (B, K, C)    in the order loss, loss_increase, kl
    /blocks/starts        int64   (B,)
    attrs: format, version, metadata (JSON: mode, replacement, model and text identity,
           class definitions, sampling, coverage, how it was run)

Sums of disjoint parts of a text add up to the whole (:meth:`AblationResult.merge`,
which refuses parts whose coverage overlaps, as gradient results do).
"""

from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..gradients import coverage_overlaps, json_default, union_coverage, write_h5_atomic
from .accumulate import QUANTITIES
from .errors import AblationError

ABLATION_FORMAT = "stategrad-ablation"
ABLATION_VERSION = 1

# Metadata that must agree for two results to be merged.
_MERGE_KEYS = ("mode", "replace", "seed", "model_identity", "dtype")


@dataclass
class AblationResult:
    values: np.ndarray  # (3, K, C) float64 sums of QUANTITIES
    counts: np.ndarray  # (K, C) int64
    axis: np.ndarray  # (K,)
    axis_name: str  # "distance" or "context"
    classes: list[str]
    vocab: list[str]
    metadata: dict[str, Any] = field(default_factory=dict)
    block_values: np.ndarray | None = None  # (B, 3, K, C)
    block_counts: np.ndarray | None = None  # (B, K, C)
    block_starts: np.ndarray | None = None  # (B,)

    def __post_init__(self) -> None:
        self.values = np.asarray(self.values, dtype=np.float64)
        self.counts = np.asarray(self.counts, dtype=np.int64)
        self.axis = np.asarray(self.axis, dtype=np.int64)
        K = len(self.axis)
        if self.values.shape != (3, K, len(self.classes)) or self.counts.shape != self.values.shape[1:]:
            raise AblationError(f"sums must be (3, {K}, {len(self.classes)}) and counts "
                                f"({K}, {len(self.classes)}); got {self.values.shape}, "
                                f"{self.counts.shape}")
        if (self.block_values is None) != (self.block_counts is None):
            raise AblationError("block sums and block counts come together")

    @property
    def has_blocks(self) -> bool:
        return self.block_values is not None and len(self.block_values) > 0

    @property
    def mode(self) -> str:
        return self.metadata.get("mode", "ablation")

    def class_index(self, c: int | str) -> int:
        if isinstance(c, (int, np.integer)):
            if not 0 <= int(c) < len(self.classes):
                raise AblationError(f"class index {c} out of range (0..{len(self.classes) - 1})")
            return int(c)
        try:
            return self.classes.index(c)
        except ValueError:
            raise AblationError(f"no class {c!r}; the result has {self.classes}") from None

    def sums(self, quantity: str) -> np.ndarray:
        """(K, C) sums of ``loss``, ``loss_increase`` or ``kl``."""
        if quantity not in QUANTITIES:
            raise AblationError(f"unknown quantity {quantity!r}; one of {QUANTITIES}")
        return self.values[QUANTITIES.index(quantity)]

    def mean(self, quantity: str, c: int | str | None = None) -> np.ndarray:
        """Means per axis value (K,) of class c, or (K, C) of all; NaN where nothing was counted."""
        with np.errstate(invalid="ignore", divide="ignore"):
            m = self.sums(quantity) / self.counts
        m[self.counts == 0] = np.nan
        return m if c is None else m[:, self.class_index(c)]

    # --- combination ---------------------------------------------------------------------
    def compatible(self, other: AblationResult) -> list[str]:
        problems = []
        if self.values.shape != other.values.shape or not np.array_equal(self.axis, other.axis):
            problems.append(f"shapes differ: {self.values.shape} vs {other.values.shape}")
        if self.axis_name != other.axis_name:
            problems.append(f"axes differ: {self.axis_name} vs {other.axis_name}")
        if self.classes != other.classes:
            problems.append("class lists differ")
        if self.vocab != other.vocab:
            problems.append("vocabularies differ")
        for key in _MERGE_KEYS + ("class_definitions", "block_size"):
            if self.metadata.get(key) != other.metadata.get(key):
                problems.append(f"{key} differs")
        if (self.block_values is None) != (other.block_values is None):
            problems.append("one result has blocks, the other not")
        return problems

    def merge(self, other: AblationResult) -> AblationResult:
        """Both parts in one new result; refuses results covering a position twice."""
        problems = self.compatible(other)
        if problems:
            raise AblationError("cannot merge ablation results: " + "; ".join(problems))
        ca, cb = self.metadata.get("coverage"), other.metadata.get("coverage")
        if ca is None or cb is None:
            raise AblationError("cannot merge: a result has no coverage record")
        overlaps = coverage_overlaps(ca, cb)
        if overlaps:
            raise AblationError("cannot merge overlapping results (their sums would count "
                                "these positions twice): " + "; ".join(overlaps))
        meta = copy.deepcopy(self.metadata)
        meta.pop("slice", None)
        meta["coverage"] = union_coverage(ca, cb)
        parts = list(meta.get("parts", [meta.get("text", {})])) + list(
            other.metadata.get("parts", [other.metadata.get("text", {})]))
        meta["parts"] = parts
        meta["text"] = {"merged": True, "tokens": sum(int(p.get("tokens", 0)) for p in parts)}
        blocks: dict[str, Any] = {}
        if self.block_values is not None:
            starts = np.concatenate([self.block_starts, other.block_starts])
            order = np.argsort(starts, kind="stable")
            blocks = dict(
                block_values=np.concatenate([self.block_values, other.block_values])[order],
                block_counts=np.concatenate([self.block_counts, other.block_counts])[order],
                block_starts=starts[order])
        return AblationResult(self.values + other.values, self.counts + other.counts,
                              self.axis.copy(), self.axis_name, list(self.classes),
                              list(self.vocab), meta, **blocks)

    # --- files ---------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """Write atomically (a temp file renamed into place; an earlier file stays on error)."""
        path = Path(path)
        try:
            write_h5_atomic(path, self._write)
        except OSError as exc:
            raise AblationError(f"could not write ablation result {path}: "
                                f"{exc.strerror or exc}") from exc
        return path

    def _write(self, f, check) -> None:
        import h5py

        str_dt = h5py.string_dtype()
        f.attrs["format"] = ABLATION_FORMAT
        f.attrs["version"] = ABLATION_VERSION
        f.attrs["metadata"] = json.dumps(self.metadata, sort_keys=True, default=json_default)
        for q, name in enumerate(QUANTITIES):
            f.create_dataset(f"sums/{name}", data=self.values[q])
        f.create_dataset("counts", data=self.counts)
        f.create_dataset("axis", data=self.axis).attrs["name"] = self.axis_name
        f.create_dataset("classes", data=np.array(self.classes, dtype=object), dtype=str_dt)
        f.create_dataset("vocab", data=np.array(self.vocab, dtype=object), dtype=str_dt)
        if self.block_values is not None:
            f.create_dataset("blocks/sums", data=self.block_values, compression="gzip")
            f.create_dataset("blocks/counts", data=self.block_counts, compression="gzip")
            f.create_dataset("blocks/starts", data=self.block_starts)
        check()


def is_ablation_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` is an HDF5 file in the ablation format (False if unreadable)."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            return f.attrs.get("format") == ABLATION_FORMAT
    except OSError:
        return False


def load_ablation(path: str | os.PathLike) -> AblationResult:
    """Open a file written by :meth:`AblationResult.save`."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise AblationError(f"ablation result not found: {path}")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise AblationError(f"{path} is not a readable HDF5 file: {exc}") from exc
    try:
        with f:
            if f.attrs.get("format") != ABLATION_FORMAT:
                raise AblationError(f"{path} is not a stategrad ablation result")
            version = int(f.attrs.get("version", -1))
            if version != ABLATION_VERSION:
                raise AblationError(f"{path} has ablation version {version}; this stategrad "
                                    f"reads {ABLATION_VERSION}")
            blocks = {}
            if "blocks" in f:
                blocks = dict(block_values=f["blocks/sums"][...],
                              block_counts=f["blocks/counts"][...],
                              block_starts=f["blocks/starts"][...])
            return AblationResult(
                values=np.stack([f[f"sums/{q}"][...] for q in QUANTITIES]),
                counts=f["counts"][...], axis=f["axis"][...],
                axis_name=str(f["axis"].attrs["name"]),
                classes=[s.decode() if isinstance(s, bytes) else s for s in f["classes"][...]],
                vocab=[s.decode() if isinstance(s, bytes) else s for s in f["vocab"][...]],
                metadata=json.loads(f.attrs["metadata"]), **blocks)
    except (KeyError, ValueError) as exc:
        if isinstance(exc, AblationError):
            raise
        raise AblationError(f"{path} is damaged: {exc}") from exc


def resolution_note(result: AblationResult) -> str | None:
    """A warning where a float32 run cannot resolve its small KL values, else None.

    A KL divergence is never negative: a negative mean says that the float32 sums cannot
    tell values of that size from roundoff (the vocabulary-wide sums behind each KL lose
    about that much), so the run's values of that magnitude are not memory."""
    if "float32" not in str(result.metadata.get("dtype", "")):
        return None
    counts = result.counts
    with np.errstate(invalid="ignore", divide="ignore"):
        kl = np.where(counts > 0, result.values[QUANTITIES.index("kl")] / counts, np.nan)
    negative = kl < 0
    if not negative.any():
        return None
    floor = float(-np.nanmin(kl))
    return (f"{int(negative.sum())} mean KL value(s) are negative (down to {-floor:.2g}): "
            f"float32 cannot resolve KL below about {floor:.1g} for this model, and values of "
            "that size are roundoff; rerun with --dtype float64 to measure them")
