"""Figures made elsewhere (another tool, a notebook) that the HTML report carries: checked
before anything is drawn, then copied into ``figures/`` beside the report's own, with an
SVG of every raster image so that ``figures/`` holds one of each."""

from __future__ import annotations

import base64
import csv
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .page import PageFigure
from .style import ReportError

#: Image types an extra figure may have, by suffix.
IMAGE_TYPES = {".png": "image/png", ".svg": "image/svg+xml", ".jpg": "image/jpeg",
               ".jpeg": "image/jpeg", ".gif": "image/gif"}


@dataclass
class ExtraFigure:
    """A figure made elsewhere (another tool, a notebook) to carry in the report, after the
    report's own figures: the image file, its title and caption, and optionally the CSV
    of the numbers behind it (shown under the figure like the report's own tables)."""

    image: Path
    title: str
    caption: str = ""
    table: Path | None = None
    #: Shown first, before the report's own figures (what the reader should see first).
    lead: bool = False


def check_extra(extra: ExtraFigure) -> ExtraFigure:
    """Checked before any figure is drawn, so a wrong path fails at once."""
    image = Path(extra.image)
    if not image.is_file():
        raise ReportError(f"extra figure not found: {image}")
    if image.suffix.lower() not in IMAGE_TYPES:
        raise ReportError(f"extra figure {image}: unknown image type {image.suffix!r}; "
                          f"use one of {', '.join(sorted(IMAGE_TYPES))}")
    table = Path(extra.table) if extra.table is not None else None
    if table is not None and not table.is_file():
        raise ReportError(f"table of extra figure {image.name} not found: {table}")
    return ExtraFigure(image, extra.title, extra.caption, table, extra.lead)


def _extra_figure(extra: ExtraFigure, key: str, fig_dir: Path) -> PageFigure:
    data = extra.image.read_bytes()
    copied = fig_dir / f"{key}{extra.image.suffix.lower()}"
    shutil.copyfile(extra.image, copied)
    files = [copied]
    if copied.suffix != ".svg":
        files.append(_svg_wrapping(data, IMAGE_TYPES[copied.suffix], fig_dir / f"{key}.svg", extra.image))
    head: list[str] = []
    rows: list[list[str]] = []
    if extra.table is not None:
        with open(extra.table, newline="", encoding="utf-8") as handle:
            lines = list(csv.reader(handle))
        head, rows = (lines[0], lines[1:]) if lines else ([], [])
        files.append(fig_dir / f"{key}.csv")
        shutil.copyfile(extra.table, files[-1])
    return PageFigure(key, extra.title, extra.caption, data, files, head, rows,
                      IMAGE_TYPES[extra.image.suffix.lower()])


def _svg_wrapping(data: bytes, mime: str, path: Path, source: Path) -> Path:
    """An SVG of a carried raster image: the same pixels embedded at their own size (a
    figure made elsewhere has no vector form to recover), so that ``figures/`` holds an
    SVG of every figure, as for the report's own."""
    import io
    import xml.sax.saxutils as sax

    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            width, height = im.size
    except Exception as exc:  # noqa: BLE001  (any unreadable image: one clear message)
        raise ReportError(f"extra figure {source}: cannot read the image ({exc})") from exc
    href = f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
    path.write_text(
        '<?xml version="1.0" encoding="utf-8"?>\n'
        f'<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}">\n'
        f"<title>{sax.escape(source.name)}</title>\n"
        f'<image width="{width}" height="{height}" href="{href}" xlink:href="{href}"/>\n</svg>\n',
        encoding="utf-8")
    return path


def add_extras(items: list[PageFigure], extras: Sequence[ExtraFigure], fig_dir: Path, *,
               lead: bool) -> None:
    """Append the extra figures that lead the report (``lead``) or follow its own figures,
    each keyed by its place among all of them (``extra_<i>``)."""
    for i, extra in enumerate(extras):
        if extra.lead == lead:
            items.append(_extra_figure(extra, f"extra_{i + 1}", fig_dir))
