"""Formatting shared by the analysis tables: numbers in fixed-width columns, notes on
empty (delay, class) cells and on the normalisation used, and atomic CSV / JSON files."""

from __future__ import annotations

import csv
import io
import json
import shutil
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


def cell(x: float | None) -> str:
    """A number for a table cell (5 significant digits); ``-`` for no value."""
    return "-" if x is None else f"{x:.5g}"


def band_cell(lo: float | None, hi: float | None) -> str:
    """An interval for a table cell; empty where it is undefined."""
    return "" if lo is None or hi is None else f"[{lo:.3g}, {hi:.3g}]"


def text_table(columns: Sequence[str], rows: Sequence[Sequence[str]], *, fixed: int = 1,
               width: int | None = None, separate_rows: bool = False) -> str:
    """A terminal table (rich) of string cells, cells may hold several lines.

    Any number of columns: when they do not fit in ``width`` (default: the terminal's, 100
    when there is none) the table is wrapped into several tables, each repeating the first
    ``fixed`` columns (e.g. the delay), so no column is squeezed or cut."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    width = width or shutil.get_terminal_size((100, 24)).columns
    columns = [str(c) for c in columns]

    def extent(j: int) -> int:
        texts = [columns[j]] + [line for r in rows for line in str(r[j]).splitlines()]
        return max(len(t) for t in texts) + 3  # text, padding and separator

    groups: list[list[int]] = []
    used = sum(extent(j) for j in range(fixed))
    for j in range(fixed, len(columns)):
        if not groups or used + extent(j) > width:
            groups.append([])
            used = sum(extent(i) for i in range(fixed))
        groups[-1].append(j)
        used += extent(j)
    out = []
    for group in groups or [[]]:
        keep = list(range(fixed)) + group
        table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False,
                      show_lines=separate_rows)
        for j in keep:
            left = j == 0 and not _numeric(rows, j)
            table.add_column(columns[j], justify="left" if left else "right", no_wrap=True,
                             min_width=extent(j) - 3)
        for r in rows:
            table.add_row(*(str(r[j]) for j in keep))
        buffer = io.StringIO()
        Console(file=buffer, width=max(width, sum(extent(j) for j in keep) + 2),
                color_system=None, force_terminal=False, highlight=False,
                emoji=False, markup=False).print(table)
        out.append("\n".join(line.rstrip() for line in buffer.getvalue().splitlines()
                             if line.strip() or separate_rows).strip("\n"))
    return "\n\n".join(out)


def _numeric(rows: Sequence[Sequence[str]], j: int) -> bool:
    try:
        for r in rows:
            float(str(r[j]))
    except ValueError:
        return False
    return True


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
