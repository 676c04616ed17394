"""The markup of the HTML report: one self-contained page (figures embedded as base64,
inline CSS, no script) with the runs' metadata, the figures with their numbers, and the
method."""

from __future__ import annotations

import base64
import html
import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..gradients import GradientResult


@dataclass
class PageFigure:
    """A figure as the page shows it: the image, its files and the numbers behind it."""

    key: str
    title: str
    caption: str
    svg: bytes
    files: list[Path]
    table_head: list[str]
    table_rows: list[list[str]]
    mime: str = "image/svg+xml"


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;
 max-width:1000px;margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.25em;border-bottom:1px solid #ddd;
 padding-bottom:.2em;margin-top:2em}h3{font-size:1.05em}
.meta{color:#555;font-size:.9em}
figure{margin:1em 0;padding:0}figure img{width:100%;max-width:640px;height:auto;
 display:block;background:#fff}
figcaption{font-size:.92em;color:#333;max-width:640px}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}
th,td{border:1px solid #ddd;padding:2px 6px;text-align:right;white-space:nowrap}
th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}
table.kv td,table.counts td:last-child{text-align:left;white-space:normal;
 overflow-wrap:anywhere}
table.kv td:first-child{white-space:nowrap}
table.counts td:last-child{min-width:18em}table.counts th:last-child{text-align:left}
dl.defs{margin:0}dl.defs dt{display:inline;font-style:italic}dl.defs dt:after{content:": "}
dl.defs dd{display:inline;margin:0}dl.defs dd:after{content:"";display:block}
.scroll{overflow:auto;max-height:420px;max-width:100%}
details{margin:.4em 0 1.2em}summary{cursor:pointer;color:#0072B2}
.note{background:#fff8e1;border-left:4px solid #E69F00;padding:.4em .8em}
pre{background:#f7f7f7;padding:.6em;overflow:auto;font-size:.8em}
nav ul{columns:2;font-size:.92em}
"""


def _head_html(text: str) -> str:
    """A column name, escaped, with a singular value's index as a subscript (s_1 -> s<sub>1</sub>)."""
    return re.sub(r"\bs_(\d+)\b", r"s<sub>\1</sub>", html.escape(text))


class Markup(str):
    """A table cell that is HTML already (not escaped again)."""


def table_html(head: Sequence[str] | None, rows: Sequence[Sequence[str]], cls: str = "",
               scroll: bool = True) -> str:
    """A table; ``scroll`` puts it in a scroll box (for the long tables of numbers), else
    it is shown whole, its text cells wrapping."""
    h = "".join(f"<th>{_head_html(str(x))}</th>" for x in head or ())
    thead = f"<thead><tr>{h}</tr></thead>" if head else ""
    body = "".join("<tr>" + "".join(
        f"<td>{x if isinstance(x, Markup) else html.escape(str(x))}</td>" for x in row) + "</tr>"
        for row in rows)
    attr = f' class="{cls}"' if cls else ""
    table = f"<table{attr}>{thead}<tbody>{body}</tbody></table>"
    return f'<div class="scroll">{table}</div>' if scroll else table


def _short(value: Any, n: int = 12) -> str:
    s = str(value)
    return s[:n] + "…" if len(s) > n + 1 else s


def _metadata_rows(r: GradientResult, label: str, source: str | None) -> list[list[str]]:
    m = r.metadata
    text = m.get("text") if isinstance(m.get("text"), dict) else {}
    sampling = m.get("sampling") if isinstance(m.get("sampling"), dict) else {}
    model = m.get("model")
    rows = [
        ["label", label],
        ["file", source or ""],
        ["model", (model.get("path") or model.get("source") or "") if isinstance(model, dict)
         else str(model or m.get("model_path") or "")],
        ["model identity (SHA-256)", _short(m.get("model_identity", ""), 16)],
        ["cell", str(m.get("cell", ""))],
        ["state", str(m.get("state", ""))],
        ["layer", str(m.get("layer", ""))],
        ["semantics", str(m.get("semantics", "")) + (
            f" (segments of {m['segment_length']} tokens)" if m.get("segment_length") else "")],
        ["text", str(text.get("path") or text.get("name") or ("merged" if text.get("merged") else ""))],
        ["text tokens", str(text.get("tokens", ""))],
        ["text identity (SHA-256)", _short(text.get("sha256", ""), 16)],
        ["delays", f"0..{r.max_delay - 1}"],
        ["hidden x embedding size", f"{r.hidden_size} x {r.embedding_size}"],
        ["start positions used", str(sampling.get("starts_used", r.counts[0, 0]))],
        ["blocks", f"{r.block_sums.shape[0]} (block size {m.get('block_size', '?')})"
         if r.has_blocks else "none (no confidence bands)"],
        ["dtype / device", f"{m.get('dtype', '')} / {m.get('device', '')}"],
        ["created", str(m.get("created", ""))],
        ["stategrad version", str(m.get("stategrad_version", ""))],
    ]
    return [row for row in rows if row[1] not in ("", " / ")]


#: How the keys of a class definition read in the page.
_DEFINITION_KEYS = {"tags": "tags", "words": "words", "source": "from", "builtin": "built-in",
                    "tag_map": "tag map"}


def _listing(values, n: int = 12) -> str:
    values = list(values)
    return ", ".join(map(str, values[:n])) + (f", … ({len(values)} in all)" if len(values) > n else "")


def definition_html(d: Any) -> str:
    """A class definition as the page shows it: a word or tag list, or a short list of
    "key: value" lines for a mapping (never a Python repr)."""
    if d is None or d == "":
        return ""
    if isinstance(d, dict):
        items = "".join(
            f"<dt>{html.escape(_DEFINITION_KEYS.get(str(k), str(k).replace('_', ' ')))}</dt>"
            f"<dd>{html.escape(_listing(v) if isinstance(v, (list, tuple, set)) else str(v))}</dd>"
            for k, v in d.items())
        return f'<dl class="defs">{items}</dl>'
    if isinstance(d, (list, tuple, set)):
        return html.escape(_listing(sorted(d) if isinstance(d, set) else d))
    return html.escape(str(d))


def _count_rows(r: GradientResult) -> list[list[str]]:
    defs = r.metadata.get("class_definitions") or {}
    rows = []
    for c, name in enumerate(r.classes):
        blocks = str(int((r.block_counts[:, 0, c] > 0).sum())) if r.has_blocks else ""
        d = defs.get(name, "") if isinstance(defs, dict) else ""
        rows.append([name, str(int(r.counts[0, c])), str(int(r.counts[-1, c])), blocks,
                     Markup(definition_html(d))])
    return rows


def _img(image: bytes, alt: str, mime: str = "image/svg+xml") -> str:
    data = base64.b64encode(image).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:{mime};base64,{data}">'


def page_html(title, results, labels, sources, classes, figures, notes, L, norm_source, ci, level) -> str:
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="meta">stategrad {html.escape(__version__)} · '
        f"{html.escape(time.strftime('%Y-%m-%d %H:%M'))} · "
        f"{len(results)} result{'s' if len(results) > 1 else ''}: "
        f"{html.escape(', '.join(labels))}</p>",
    ]
    for note in notes:
        parts.append(f'<p class="note">{html.escape(note)}</p>')
    parts.append("<nav><ul>" + '<li><a href="#runs">Runs</a></li>' + "".join(
        f'<li><a href="#{f.key}">{html.escape(f.title)}</a></li>' for f in figures)
        + '<li><a href="#method">Method</a></li></ul></nav>')

    parts.append('<h2 id="runs">Runs</h2>')
    for i, (r, lab) in enumerate(zip(results, labels, strict=True)):
        src = sources[i] if sources else None
        parts.append(f"<h3>{html.escape(lab)}</h3>")
        parts.append(table_html(None, _metadata_rows(r, lab, src), "kv", scroll=False))
        parts.append("<p>Occurrences per class (start positions t with a word of the class):</p>")
        parts.append(table_html(["class", "at delay 0", f"at delay {r.max_delay - 1}",
                                 "blocks with occurrences", "definition"], _count_rows(r),
                                "counts", scroll=False))
        parts.append("<details><summary>Full metadata (JSON)</summary><pre>"
                     + html.escape(json.dumps(r.metadata, indent=1, sort_keys=True, default=str))
                     + "</pre></details>")
    if L is not None:
        cond = float(np.linalg.cond(L))
        parts.append(
            "<p>Normalised figures use <code>Gbar_d L</code>, L the Cholesky factor of the "
            f"embedding covariance{' from ' + html.escape(norm_source) if norm_source else ''} "
            f"(condition number of L: {cond:.3g}).</p>")
    parts.append(f"<p>Classes shown: {html.escape(', '.join(classes))}.</p>")

    for f in figures:
        links = " · ".join(f'<a href="figures/{html.escape(p.name)}">{html.escape(p.suffix[1:].upper())}</a>'
                           for p in f.files)
        parts.append(f'<h2 id="{f.key}">{html.escape(f.title)}</h2>')
        parts.append(f"<figure>{_img(f.svg, f.title, f.mime)}<figcaption>"
                     f"{html.escape(f.caption)} Files: {links}.</figcaption></figure>")
        if f.table_head or f.table_rows:
            parts.append("<details><summary>Numbers behind this figure</summary>"
                         + table_html(f.table_head, f.table_rows) + "</details>")

    parts.append('<h2 id="method">Method</h2>')
    parts.append(
        "<p>A state gradient <code>G(t, d) = ds<sub>t+d</sub>/dx<sub>t</sub></code> is the H x E "
        "matrix of how the state d steps after position t moves with the input embedding at t. "
        "<code>Gbar_d</code> is its mean over the start positions t (of a class). The memory "
        "curve is the sum of the singular values of <code>Gbar_d</code> (normalised: of "
        "<code>Gbar_d L</code>, which makes every embedding direction equally variable) against "
        "the delay d.</p>")
    parts.append(f"<p>{html.escape(_ci_paragraph(ci, level))}</p>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _ci_paragraph(ci: str, level: float) -> str:
    pct = f"{100 * level:g}%"
    if ci == "jackknife":
        return (f"Confidence bands ({pct}): the text was cut into contiguous blocks and the sums "
                "and counts of each block kept. For every delay and class, the statistic (e.g. the "
                "sum of singular values) is recomputed from the mean with one block left out, "
                "(S - S_b) / (n - n_b), for each block b with occurrences; the jackknife variance "
                "is (B - 1) / B times the sum of squared deviations of these B values from their "
                "mean, and the band is the estimate plus or minus the Student t quantile with B - 1 "
                "degrees of freedom (2.26 for 95% with 10 blocks) times the standard error. "
                "Few occurrences spread over few blocks give wide bands. The hatched area under "
                "a memory curve is its noise floor: what a class with the same blocks and counts "
                "but no memory would reach (random signs on the block sums); a curve inside it "
                "is not distinguishable from noise.")
    if ci == "bootstrap":
        return (f"Confidence bands ({pct}): percentile intervals of the statistic over resamples "
                "of the text's blocks drawn with replacement (block bootstrap); each resample's "
                "mean is the sum of its blocks' sums over the sum of their counts.")
    return "No confidence bands were computed."
