"""Formatting shared by the analysis tables: numbers in fixed-width columns, notes on
empty (delay, class) cells and on the normalisation used, and atomic CSV / JSON files."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import write_text_atomic
from ..gradients import json_default


def fmt(x: float | None, width: int = 11) -> str:
    """A number in a column of ``width`` (5 significant digits); ``-`` for no value."""
    if x is None:
        return "-".rjust(width)
    return f"{x:{width}.5g}"


def normalization_line(info: dict[str, Any] | None) -> list[str]:
    """The line under a table saying which statistics normalised it (none without)."""
    if not info:
        return []
    src = f" ({info['source']})" if info.get("source") else ""
    return [f"normalisation{src}: {info['text']}"]


def empty_notes(empty: Sequence[tuple[str, int]]) -> list[str]:
    by_class: dict[str, list[int]] = {}
    for name, d in empty:
        by_class.setdefault(name, []).append(d)
    return [f"note: class {name!r} has no occurrences at delay(s) {_ranges(ds)}: no average there"
            for name, ds in by_class.items()]


def _ranges(values: Sequence[int]) -> str:
    parts = []
    start = prev = None
    for v in list(values) + [None]:
        if v is not None and prev is not None and v == prev + 1:
            prev = v
            continue
        if start is not None:
            parts.append(str(start) if start == prev else f"{start}-{prev}")
        start = prev = v
    return ", ".join(parts)


def write_csv(path, columns, rows) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in columns})
    return write_text_atomic(path, buffer.getvalue(), newline="")


def write_json(path, payload) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_text_atomic(path, json.dumps(payload, indent=1, default=json_default) + "\n")


def none_if_nan(values: np.ndarray) -> list[float | None]:
    return [float(x) if np.isfinite(x) else None for x in values]
