"""The HTML report of one or several results, and the sentence view.

:func:`build_report` writes ``report.html`` -- one self-contained file: figures
embedded as base64 SVG, inline CSS, no script, nothing fetched from the network
-- and every figure as PNG and SVG (plus the numbers behind it as CSV) under
``figures/``.

:func:`sentence_map` computes, for a sentence or a span of text, how strongly each
earlier word still moves the state at each later word (the Frobenius norm or top
singular value of every ``G(t, k - t)``, raw or normalised ``G L``).
"""

from __future__ import annotations

import base64
import csv
import html
import json
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..analysis import describe
from ..gradients import GradientResult
from . import plots as P

MEASURES = ("fro", "sv1")


class ReportError(ValueError):
    """A report or sentence view that cannot be made as asked."""


# --- sentence view ----------------------------------------------------------------------------

@dataclass
class SentenceMap:
    """``matrix[t, k]``: size of ``G(t, k - t) = d s_k / d x_t`` (NaN where k < t)."""

    words: list[str]
    token_ids: np.ndarray
    matrix: np.ndarray
    measure: str
    normalised: bool
    state: str
    layer: int
    unknown: list[str] = field(default_factory=list)

    @property
    def measure_label(self) -> str:
        what = "Frobenius norm" if self.measure == "fro" else "top singular value"
        g = "G L" if self.normalised else "G"
        return f"{what} of {g}(t, k - t)"


def tokenize(text: str | Sequence[str]) -> list[str]:
    """Words of a typed sentence: split on white space (the corpora are pre-tokenised)."""
    words = text.split() if isinstance(text, str) else [str(w) for w in text]
    if not words:
        raise ReportError("the sentence is empty: give at least one word")
    return words


def sentence_map(
    model: Any,
    text: str | Sequence[str],
    *,
    state: str = "cell",
    layer: int = -1,
    L: np.ndarray | None = None,
    measure: str = "fro",
) -> SentenceMap:
    """Per word pair, how much the state at the later word moves with the earlier word's
    embedding.  ``model`` is a :class:`stategrad.lm.LanguageModel`; words outside its
    vocabulary become ``<unk>`` (and are listed in ``unknown``)."""
    from ..gradients import sentence_gradients

    if measure not in MEASURES:
        raise ReportError(f"unknown measure {measure!r}; choose one of {MEASURES}")
    words = tokenize(text)
    vocab = model.vocab
    unknown = [w for w in words if w not in vocab]
    ids = vocab.encode(words)
    G = sentence_gradients(model, ids, state=state, layer=layer)  # (T, T, H, E)
    if L is not None:
        if L.shape[0] != G.shape[-1]:
            raise ReportError(
                f"normalisation statistics are for {L.shape[0]}-dimensional embeddings; "
                f"the model's are {G.shape[-1]}-dimensional"
            )
        G = G @ L
    matrix = _matrix_size(G, measure)
    T = len(words)
    matrix[np.tril_indices(T, -1)] = np.nan  # the future never moves the past
    return SentenceMap(words, ids, matrix, measure, L is not None, state, layer, unknown)


def _matrix_size(G: np.ndarray, measure: str) -> np.ndarray:
    if measure == "fro":
        return np.sqrt(np.einsum("tkhe,tkhe->tk", G, G))
    return np.linalg.svd(G, compute_uv=False)[..., 0]


def plot_sentence_map(smap: SentenceMap, title: str | None = None):
    """The heat map of a :class:`SentenceMap` (a matplotlib Figure)."""
    norm = "normalised" if smap.normalised else "raw"
    title = title or f"{smap.state} state, {norm}"
    return P.plot_sentence(smap.matrix, smap.words, colorbar_label=smap.measure_label, title=title)


# --- report -----------------------------------------------------------------------------------

@dataclass
class _Figure:
    key: str
    title: str
    caption: str
    svg: bytes
    files: list[Path]
    table_head: list[str]
    table_rows: list[list[str]]
    mime: str = "image/svg+xml"


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


def _fmt(v: float) -> str:
    return "" if not np.isfinite(v) else f"{v:.4g}"


def _curve_table(curves: Sequence[P.Curve], xname: str, with_band: bool) -> tuple[list[str], list[list[str]]]:
    head = [xname]
    for c in curves:
        head.append(c.label)
        if with_band:
            head += [f"{c.label} lower", f"{c.label} upper"]
    xs = sorted({float(x) for c in curves for x in c.x})
    rows = []
    for x in xs:
        row = [f"{x:g}"]
        for c in curves:
            idx = np.flatnonzero(c.x == x)
            for a in ((c.y, c.lower, c.upper) if with_band else (c.y,)):
                row.append(_fmt(float(a[idx[0]])) if idx.size and a is not None else "")
        rows.append(row)
    return head, rows


def _render(fig, stem: Path) -> tuple[bytes, list[Path]]:
    files = P.save_figure(fig, stem)
    return stem.with_name(stem.name + ".svg").read_bytes(), files


def _write_csv(path: Path, head: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(head)
        w.writerows(rows)
    return path


def build_report(
    results: Sequence[GradientResult],
    out_dir: str | os.PathLike,
    *,
    labels: Sequence[str] | None = None,
    sources: Sequence[str] | None = None,
    L: np.ndarray | None = None,
    normalisation_source: str | None = None,
    classes: Sequence[str] | None = None,
    top_k: int = 5,
    spectrum_delays: Sequence[int] | None = None,
    log_scale: bool = False,
    ci: str = "jackknife",
    level: float = 0.95,
    n_boot: int = 200,
    seed: int = 0,
    difference_vectors: Mapping[str, np.ndarray] | None = None,
    subspace_k: int = 5,
    sentences: Sequence[SentenceMap] = (),
    extra_figures: Sequence[ExtraFigure] = (),
    title: str = "State gradient report",
) -> Path:
    """Write ``out_dir/report.html`` and ``out_dir/figures/*.{png,svg,csv}``; return the
    report's path.

    Several results are overlaid on the same axes (labels from ``labels``, else from
    their metadata).  ``L`` (the Cholesky factor of the embedding covariance) adds the
    normalised figures.  ``difference_vectors`` (name -> embedding-space vector) add the
    relative memory and subspace cosine curves.  ``extra_figures`` are copied into
    ``figures/`` and shown after the report's own."""
    results = list(results)
    if not results:
        raise ReportError("no results to report")
    extras = [_check_extra(x) for x in extra_figures]
    if labels is not None and len(labels) != len(results):
        raise ReportError(f"{len(labels)} labels for {len(results)} results")
    labels = list(labels) if labels is not None else [P.result_label(r, i) for i, r in enumerate(results)]
    labels = _unique(labels)
    E = results[0].embedding_size
    for r, lab in zip(results, labels, strict=True):
        if r.embedding_size != E and (L is not None or difference_vectors):
            raise ReportError(f"result {lab!r} has embedding size {r.embedding_size}, others {E}: "
                              "normalisation and difference vectors need one embedding space")
    if L is not None and L.shape != (E, E):
        raise ReportError(f"normalisation statistics are {L.shape[0]}-dimensional; the results' "
                          f"embeddings are {E}-dimensional (statistics of another model?)")
    classes = _choose_classes(results, labels, classes)
    out = Path(out_dir)
    fig_dir = out / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    ci_used = ci
    if ci != "none" and not all(r.has_blocks for r in results):
        missing = [lab for r, lab in zip(results, labels, strict=True) if not r.has_blocks]
        notes.append(f"No confidence bands for {', '.join(missing)}: the result has no per-block "
                     "sums (compute it with a block size to get them).")
        if len(missing) == len(results):
            ci_used = "none"
    band_text = describe(ci_used, level)
    min_delay = min(r.max_delay for r in results)
    if spectrum_delays is None:
        spectrum_delays = P.default_spectrum_delays(min_delay)
    bad = [d for d in spectrum_delays if not 0 <= d < min_delay]
    if bad:
        raise ReportError(f"spectrum delays {bad} are outside 0..{min_delay - 1}")

    variants: list[tuple[str, np.ndarray | None]] = [("raw", None)]
    if L is not None:
        variants.append(("normalised", L))
    figures: list[_Figure] = []

    def add(key: str, fig_title: str, caption: str, fig, table: tuple[list[str], list[list[str]]]):
        svg, files = _render(fig, fig_dir / key)
        files.append(_write_csv(fig_dir / f"{key}.csv", *table))
        figures.append(_Figure(key, fig_title, caption, svg, files, *table))

    for variant, Lv in variants:
        sfx = " (normalised)" if Lv is not None else ""
        what = "Gbar_d L" if Lv is not None else "Gbar_d"
        entries = [(lab, P.sv_replicates(r, L=Lv, classes=classes, ci=ci, n_boot=n_boot, seed=seed))
                   for r, lab in zip(results, labels, strict=True)]
        curves = P.memory_curves(entries, level=level)
        has_band = ci_used != "none"
        add(f"memory_{variant}", f"Memory curves{sfx}",
            f"Sum of the singular values of {what} against delay, one line per class"
            f"{' and result' if len(results) > 1 else ''}. {band_text}",
            P.plot_curves(curves, ylabel=P.SV_SUM_LABEL, log_scale=log_scale,
                          title=P.NORMALISED_TITLE if Lv is not None else None),
            _curve_table(curves, "delay", has_band))
        all_entries = [(lab, P.sv_replicates(r, L=Lv, classes=["all"], ci=ci, n_boot=n_boot, seed=seed))
                       for r, lab in zip(results, labels, strict=True)]
        curves = P.topk_curves(all_entries, top_k, level=level)
        k_shown = min([top_k] + [min(x.hidden_size, x.embedding_size) for x in results])
        add(f"topk_{variant}", f"Top {k_shown} singular values{sfx}",
            f"The {k_shown} largest singular values of {what} (all words) against delay. {band_text}",
            P.plot_curves(curves, ylabel="singular value" + sfx, log_scale=log_scale),
            _curve_table(curves, "delay", has_band))
        curves = P.spectrum_curves(all_entries, spectrum_delays, level=level)
        add(f"spectra_{variant}", f"Singular value spectra{sfx}",
            f"All singular values of {what} (all words) by rank at delays "
            f"{', '.join(map(str, spectrum_delays))}; log scale. {band_text}",
            P.plot_curves(curves, xlabel="rank", ylabel="singular value" + sfx, log_scale=True),
            _curve_table(curves, "rank", has_band))
        mats = [P.class_memory_matrix(reps) for _, reps in entries]
        head = ["delay"] + [f"{lab}: {c}" if len(results) > 1 else c
                            for lab in labels for c in classes]
        rows = [[str(d)] + [_fmt(m[j, d]) if d < m.shape[1] else "" for m in mats
                            for j in range(len(classes))] for d in range(max(m.shape[1] for m in mats))]
        width = min(m.shape[1] for m in mats)
        add(f"heatmap_{variant}", f"Memory per class{sfx}",
            f"Sum of the singular values of {what} per class (rows) and delay (columns)"
            f"{', one panel per result' if len(results) > 1 else ''}.",
            P.plot_heatmap([m[:, :width] for m in mats], classes,
                           titles=labels if len(results) > 1 else None, log_scale=log_scale,
                           colorbar_label=P.SV_SUM_LABEL + (" (norm.)" if Lv is not None else "")),
            (head, rows))

    if difference_vectors:
        names = list(difference_vectors)
        vecs = np.stack([np.asarray(difference_vectors[n], dtype=np.float64).ravel() for n in names])
        if vecs.shape[1] != E:
            raise ReportError(f"difference vectors have {vecs.shape[1]} components; the embeddings {E}")
        dirs = P.whiten_directions(vecs, L)
        what = "Gbar_d L" if L is not None else "Gbar_d"
        entries = [(lab, P.direction_replicates(r, dirs, L=L, k=subspace_k, ci=ci, n_boot=n_boot, seed=seed))
                   for r, lab in zip(results, labels, strict=True)]
        has_band = ci_used != "none"
        norm_note = ("n = Z v / |Z v| with Z = L^-1" if L is not None
                     else "n = v / |v| (no normalisation given)")
        curves = P.direction_curves(entries, names, kind="relative", level=level)
        add("relative_memory", "Relative memory",
            f"|{what} n| / s_1({what}) against delay for each difference vector v, {norm_note}; "
            f"all words. {band_text}",
            P.plot_curves(curves, ylabel="relative memory"), _curve_table(curves, "delay", has_band))
        curves = P.direction_curves(entries, names, kind="cosine", level=level)
        add("subspace_cosine", "Subspace cosine",
            f"|V_k^T n|: cosine between n and the top {subspace_k} right singular vectors of "
            f"{what} against delay ({norm_note}). {band_text}",
            P.plot_curves(curves, ylabel=f"cosine with top-{subspace_k} subspace"),
            _curve_table(curves, "delay", has_band))

    for i, smap in enumerate(sentences):
        key = f"sentence_{i + 1}"
        T = len(smap.words)
        head = ["earlier word t \\ later word k"] + [f"{k}:{w}" for k, w in enumerate(smap.words)]
        rows = [[f"{t}:{smap.words[t]}"] + [_fmt(smap.matrix[t, k]) for k in range(T)] for t in range(T)]
        unk = f" Not in the vocabulary (read as <unk>): {', '.join(smap.unknown)}." if smap.unknown else ""
        add(key, f"Sentence view {i + 1}",
            f"{smap.measure_label} for every pair of an earlier word t (rows) and a later word k "
            f"(columns): how strongly the input at t still moves the {smap.state} state at k. "
            f"Computed exactly for this sentence from the zero state.{unk}",
            plot_sentence_map(smap), (head, rows))

    for i, extra in enumerate(extras):
        figures.append(_extra_figure(extra, f"extra_{i + 1}", fig_dir))

    page = _html(title, results, labels, sources, classes, figures, notes, L,
                 normalisation_source, ci_used, level)
    path = out / "report.html"
    path.write_text(page, encoding="utf-8")
    return path


def _check_extra(extra: ExtraFigure) -> ExtraFigure:
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
    return ExtraFigure(image, extra.title, extra.caption, table)


def _extra_figure(extra: ExtraFigure, key: str, fig_dir: Path) -> _Figure:
    import csv
    import shutil

    data = extra.image.read_bytes()
    copied = fig_dir / f"{key}{extra.image.suffix.lower()}"
    shutil.copyfile(extra.image, copied)
    files = [copied]
    head: list[str] = []
    rows: list[list[str]] = []
    if extra.table is not None:
        with open(extra.table, newline="", encoding="utf-8") as handle:
            lines = list(csv.reader(handle))
        head, rows = (lines[0], lines[1:]) if lines else ([], [])
        files.append(fig_dir / f"{key}.csv")
        shutil.copyfile(extra.table, files[-1])
    return _Figure(key, extra.title, extra.caption, data, files, head, rows,
                   IMAGE_TYPES[extra.image.suffix.lower()])


def _unique(labels: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for lab in labels:
        n = seen.get(lab, 0)
        seen[lab] = n + 1
        out.append(lab if n == 0 else f"{lab} ({n + 1})")
    return out


def _choose_classes(results: Sequence[GradientResult], labels: Sequence[str],
                    classes: Sequence[str] | None) -> list[str]:
    if classes is None:
        common = [c for c in results[0].classes if all(c in r.classes for r in results[1:])]
        return common
    classes = list(classes)
    for r, lab in zip(results, labels, strict=True):
        missing = [c for c in classes if c not in r.classes]
        if missing:
            raise ReportError(f"result {lab!r} has no class {missing[0]!r}; its classes are {r.classes}")
    return classes


# --- HTML -------------------------------------------------------------------------------------

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
table.kv td{text-align:left}
.scroll{overflow:auto;max-height:420px;max-width:100%}
details{margin:.4em 0 1.2em}summary{cursor:pointer;color:#0072B2}
.note{background:#fff8e1;border-left:4px solid #E69F00;padding:.4em .8em}
pre{background:#f7f7f7;padding:.6em;overflow:auto;font-size:.8em}
nav ul{columns:2;font-size:.92em}
"""


def _table(head: Sequence[str] | None, rows: Sequence[Sequence[str]], cls: str = "") -> str:
    h = "".join(f"<th>{html.escape(str(x))}</th>" for x in head or ())
    thead = f"<thead><tr>{h}</tr></thead>" if head else ""
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(x))}</td>" for x in row) + "</tr>"
                   for row in rows)
    attr = f' class="{cls}"' if cls else ""
    return f'<div class="scroll"><table{attr}>{thead}<tbody>{body}</tbody></table></div>'


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


def _count_rows(r: GradientResult) -> list[list[str]]:
    defs = r.metadata.get("class_definitions") or {}
    rows = []
    for c, name in enumerate(r.classes):
        blocks = str(int((r.block_counts[:, 0, c] > 0).sum())) if r.has_blocks else ""
        d = defs.get(name, "") if isinstance(defs, dict) else ""
        if isinstance(d, (list, tuple)):
            d = ", ".join(map(str, d[:12])) + (f", … ({len(d)} in all)" if len(d) > 12 else "")
        rows.append([name, str(int(r.counts[0, c])), str(int(r.counts[-1, c])), blocks, _short(d, 80)])
    return rows


def _img(image: bytes, alt: str, mime: str = "image/svg+xml") -> str:
    data = base64.b64encode(image).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:{mime};base64,{data}">'


def _html(title, results, labels, sources, classes, figures, notes, L, norm_source, ci, level) -> str:
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
        parts.append(_table(None, _metadata_rows(r, lab, src), "kv"))
        parts.append("<p>Occurrences per class (start positions t with a word of the class):</p>")
        parts.append(_table(["class", "at delay 0", f"at delay {r.max_delay - 1}",
                             "blocks with occurrences", "definition"], _count_rows(r)))
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
                         + _table(f.table_head, f.table_rows) + "</details>")

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
                "mean, and the band is the estimate plus or minus 1.96 (for 95%) standard errors. "
                "Few occurrences spread over few blocks give wide bands.")
    if ci == "bootstrap":
        return (f"Confidence bands ({pct}): percentile intervals of the statistic over resamples "
                "of the text's blocks drawn with replacement (block bootstrap); each resample's "
                "mean is the sum of its blocks' sums over the sum of their counts.")
    return "No confidence bands were computed."
