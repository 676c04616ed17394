"""``stategrad report`` and ``stategrad sentence``: figures and the HTML report."""

from __future__ import annotations

import itertools
from pathlib import Path

import click
import numpy as np

from ._inputs import (
    check_vocabulary,
    checked_normalizer,
    failing,
    load_model,
    note,
    read_model_text,
    reading,
)
from .options import (
    band_options,
    model_options,
    normalize_options,
    show_classes_option,
    tokenization_option,
)


def _int_list(text: str | None, what: str) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(x) for x in text.replace(",", " ").split()]
    except ValueError:
        raise click.BadParameter(f"{what} must be integers separated by commas, got {text!r}") from None


def _normalisation_text(path: str | None) -> str | None:
    """The statistics file and its weighting, for the report's metadata."""
    if path is None:
        return None
    from ..analysis import normalization_info

    return f"{path} ({normalization_info(path)['text']})"


def _load_vector(spec: str) -> tuple[str, np.ndarray]:
    name, sep, path = spec.partition("=")
    if not sep or not name or not path:
        raise click.BadParameter(f"--difference takes NAME=FILE (a .npy or text vector), got {spec!r}")
    p = Path(path)
    if not p.is_file():
        raise click.BadParameter(f"difference vector file not found: {p}")
    try:
        v = np.load(p) if p.suffix == ".npy" else np.loadtxt(p)
    except (ValueError, OSError) as exc:
        raise click.BadParameter(f"cannot read a vector from {p}: {exc}") from exc
    v = np.asarray(v, dtype=np.float64)
    if v.ndim != 1 and not (v.ndim == 2 and 1 in v.shape):
        raise click.BadParameter(f"{p} holds an array of shape {v.shape}; a difference vector is 1-D")
    return name, v.ravel()


def _sentence_words(sentence: tuple[str, ...], text: str | None, start: int, length: int,
                    tokenization: str = "original") -> list[str]:
    if text is not None:
        if sentence:
            raise click.UsageError("give either a sentence or --text, not both")
        from ..data import iter_words

        words = list(itertools.islice(iter_words(text, tokenization=tokenization), start,
                                      start + length))
        if not words:
            raise click.UsageError(f"{text} has no words from position {start} on")
        return words
    if not sentence:
        raise click.UsageError('give a sentence ("the cat sat ...") or --text FILE')
    return " ".join(sentence).split()


_ERRORS = (ValueError, OSError)


def _extra_figure(spec: str):
    from ..report import ExtraFigure

    image, _, rest = spec.partition("::")
    title, _, caption = rest.partition("::")
    path = Path(image)
    table = path.with_suffix(".csv")
    return ExtraFigure(path, title or path.stem.replace("_", " "), caption,
                       table if table.is_file() else None)


@click.command("report")
@click.argument("results", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Directory for report.html and figures/.")
@normalize_options("Embedding statistics (stategrad stats file, or the original's "
                   "_D_norm_grad.npy): adds figures of the normalised Gbar_d L.",
                   must_exist=False)
@show_classes_option("Comma-separated classes to show (default: every class all results share).")
@click.option("--label", "labels", multiple=True,
              help="Legend label of each result, in order (default: from its metadata).")
@click.option("--log-scale", is_flag=True, help="Logarithmic y axis for memory curves (default: log where the values "
              "span more than two decades).")
@click.option("--top-k", default=5, show_default=True, type=click.IntRange(1),
              help="How many of the largest singular values to plot against delay.")
@click.option("--spectrum-delays", default=None,
              help="Delays whose full spectrum is plotted, e.g. 0,1,5,20 (default: spread "
                   "over the range).")
@band_options
@click.option("--difference", "differences", multiple=True, metavar="NAME=FILE",
              help="A difference vector in embedding space (.npy or text), e.g. "
                   "plural=nns_minus_nn.npy: adds relative memory and subspace cosine.")
@click.option("--difference-class", default="all", show_default=True,
              help="Class of the results whose gradients the --difference curves use (e.g. "
                   "the class of the words that carry the property).")
@click.option("--identity/--no-identity", default=None,
              help="Lead with the identity memory of the classes shown, the class measure "
                   "that recovers planted memory (docs/synthetic-validation.md); the papers' "
                   "memory curves follow, labelled as theirs.  Default: on when --model (or "
                   "--model-factory) is given, for the classes defined by their words; "
                   "--identity without a model is an error.")
@click.option("--pos-map", "pos_map_path", type=click.Path(exists=True, dir_okay=False),
              help="Word -> tags map, so that identity memory finds the words of classes "
                   "defined by tags (e.g. --classes ptb).")
@click.option("--subspace-k", default=5, show_default=True, type=click.IntRange(1),
              help="Size of the singular subspace for the subspace cosine (K equals "
                   "thr = K-1 of the original's cos_subspace_diff_vector.py).")
@click.option("--sentence", "sentences", multiple=True,
              help="A sentence to show in the sentence view (needs --model); repeatable.")
@model_options("Model checkpoint for --sentence.")
@click.option("--state", default=None,
              help="State for --sentence: cell, hidden, or a --model-factory model's state "
                   "name (default: the first result's).")
@click.option("--measure", type=click.Choice(["fro", "sv1"]), default="fro", show_default=True,
              help="Size of each G(t, d) in the sentence view: Frobenius norm or top singular value.")
@click.option("--figure", "extra_figures", multiple=True, metavar="IMAGE[::TITLE[::CAPTION]]",
              help="Add a figure made elsewhere (PNG/SVG/JPEG) after the report's own, "
                   "with its title and caption; a CSV of the same name beside the image "
                   "is shown as its numbers.  Repeatable.")
@click.option("--title", default="State gradient report", show_default=True)
@click.option("--compare", "compare_pair", nargs=2, metavar="A B", default=None,
              help="Add the paired difference of class A's memory curve minus class B's, "
                   "with its interval over the same blocks.")
@click.option("--ablation", "ablation_path", type=click.Path(exists=True, dir_okay=False),
              help="An ablation result (stategrad ablation) of the same model: its curves beside "
                   "the memory curves, their correlation, and with --sentence the ablation map "
                   "beside the gradient map.")
def report(results, out_dir, normalize, force, classes, labels, log_scale, top_k, spectrum_delays,
           ci, level, n_boot, seed, differences, difference_class, identity, pos_map_path,
           subspace_k,
           sentences, model_path, vocab_path, trusted, nonlinearity, code_path, state, measure,
           extra_figures, title, compare_pair, ablation_path):
    """Write an HTML report (one self-contained file) and PNG/SVG figures of RESULTS.

    Several results are overlaid on the same axes (e.g. LSTM vs GRU, cell vs hidden
    state); bands show confidence intervals from the results' blocks.
    """
    from ..analysis import check_finite
    from ..gradients import load_result
    from ..report import build_report, sentence_map

    if labels and len(labels) != len(results):
        raise click.BadParameter(f"{len(labels)} labels for {len(results)} results",
                                 param_hint="--label")
    if (sentences or identity) and model_path is None:
        raise click.UsageError("--sentence and --identity need --model CHECKPOINT")
    # Identity memory leads whenever the model (the classes' word embeddings) is there.
    strict_identity = bool(identity)
    identity = model_path is not None if identity is None else identity
    with failing(*_ERRORS):
        loaded = []
        for p in results:
            with reading(p):
                loaded.append(load_result(p))
        for p, r in zip(results, loaded, strict=True):
            check_finite(r, p)
        model = (load_model(model_path, vocab_path, trusted, nonlinearity, code_path)
                 if sentences or identity else None)
        if model is not None:  # typed sentences: too short to check a vocabulary order on
            check_vocabulary(model, None, force=force, vocab_path=vocab_path)
        identities = {p: r.metadata.get("model_identity") for p, r in zip(results, loaded, strict=True)}
        if model is not None:
            identities[model_path] = model.identity()
        _, L = checked_normalizer(normalize, identities, loaded[0].embedding_size, force)
        vectors = dict(_load_vector(s) for s in differences)
        ablation, ablate = _load_ablation(ablation_path, identities)
        maps = []
        if sentences:
            st = state or str(loaded[0].metadata.get("state") or "cell")
            meta_layer = loaded[0].metadata.get("layer")
            layer = -1 if meta_layer is None else int(meta_layer)
            for s in sentences:
                maps.append(sentence_map(model, s, state=st, layer=layer, normalize=L, measure=measure,
                                         ablate=ablate))
        path = build_report(
            loaded, out_dir, labels=list(labels) or None, sources=list(results), normalize=L,
            normalisation_source=_normalisation_text(normalize),
            classes=[c.strip() for c in classes.split(",")] if classes else None,
            top_k=top_k, spectrum_delays=_int_list(spectrum_delays, "--spectrum-delays"),
            log_scale=log_scale or None, ci=ci, level=level, n_boot=n_boot, seed=seed,
            difference_vectors=vectors or None, difference_class=difference_class,
            identity=_identity_input(loaded[0], model, classes, strict_identity, pos_map_path)
            if identity else None,
            subspace_k=subspace_k, sentences=maps,
            extra_figures=[_extra_figure(spec) for spec in extra_figures], title=title,
            compare=tuple(compare_pair) if compare_pair else None,
            ablation=ablation,
        )
    click.echo(f"wrote {path} and figures in {Path(out_dir) / 'figures'}")

def _identity_input(result, model, classes: str | None, strict: bool = True,
                    pos_map_path: str | None = None):
    """(embeddings, class -> word ids) of the classes shown, for the identity figure.
    ``strict`` (--identity asked for): a class without words is an error; otherwise (the
    default with a model) it is left out with a note, and None when no class is left."""
    from ..analysis import AnalysisError, embedding_matrix, word_ids
    from ..data import read_pos_map
    from .analysis_commands import _spec_words

    definitions = result.metadata.get("class_definitions") or {}
    pos_map = read_pos_map(pos_map_path) if pos_map_path else None
    names = [c.strip() for c in classes.split(",")] if classes else \
        [c for c in result.classes if c != "all"]
    words = {}
    for name in names:
        result.class_index(name)
        try:
            found = word_ids(model.vocab, _spec_words(name, definitions, pos_map))[0]
            if len(found) < 2:
                raise AnalysisError(f"class {name!r} has {len(found)} word(s) in the model's "
                                    "vocabulary: identity memory needs two or more")
        except AnalysisError as exc:
            if strict:
                raise
            note(f"identity memory leaves out class {name!r}: {exc}")
            continue
        words[name] = found
    if not words:
        if strict:
            raise AnalysisError("no class shown has words to take identity memory of")
        return None
    return embedding_matrix(model), words


def _load_ablation(path, identities: dict):
    """The --ablation result (None without one) and the replacement the sentence view uses
    (the result's; None for a context-length result).  One of another model is refused."""
    if path is None:
        return None, None
    from ..ablation import load_ablation

    with reading(path):
        result = load_ablation(path)
    ident = result.metadata.get("model_identity")
    others = {p for p, i in identities.items() if i is not None and i != ident}
    if others:
        raise click.ClickException(f"--ablation {path} was computed with another model than "
                                   f"{', '.join(sorted(others))}")
    replace = result.metadata.get("replace")
    return result, replace if result.mode == "ablation" else None


@click.command("sentence")
@click.argument("sentence", nargs=-1)
@model_options("Model checkpoint (or state dict with --vocab).", required=True)
@click.option("--text", type=click.Path(dir_okay=False), default=None,
              help="Take the words from this text file instead (with --start/--length).")
@tokenization_option
@click.option("--start", default=0, show_default=True, type=click.IntRange(0),
              help="First word of the span of --text (0-based, <eos> counts as a word).")
@click.option("--length", default=20, show_default=True, type=click.IntRange(1, 400),
              help="Number of words of the span of --text.")
@click.option("--state", default="cell", show_default=True,
              help="cell, hidden, or a --model-factory model's state name.")
@click.option("--layer", default=-1, show_default=True, help="Layer (0-based; -1: the top one).")
@normalize_options("Embedding statistics: show G L instead of G.", must_exist=False,
                   vocab_check=True)
@click.option("--measure", type=click.Choice(["fro", "sv1"]), default="fro", show_default=True,
              help="Size of each G(t, d): Frobenius norm or top singular value.")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False),
              help="Figure file (.png, .svg or .pdf).")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False), default=None,
              help="Also write the matrix of numbers as CSV.")
def sentence(sentence, model_path, vocab_path, trusted, nonlinearity, code_path, text, tokenization,
             start, length, state, layer, normalize, force, measure, out, csv_path):
    """Heat map of how strongly each earlier word of SENTENCE still moves the state at
    each later word: the size of every G(t, k - t), computed exactly on the spot.

    Example: stategrad sentence --model lm.pt "the cat sat on the mat" --out cat.png
    """
    from ..report import plot_sentence_map, sentence_map, write_figure

    words = _sentence_words(sentence, None, start, length) if text is None else None
    with failing(*_ERRORS):
        model = load_model(model_path, vocab_path, trusted, nonlinearity, code_path)
        if text is not None:
            rule = tokenization or model.tokenization
            with reading(text, "--text"):
                words = _sentence_words(sentence, text, start, length, rule)
        # the span is too short to check a vocabulary order on: the text it comes from is not
        check_vocabulary(model, read_model_text(model, text, tokenization=tokenization)
                         if text is not None and model.foreign else None,
                         force=force, vocab_path=vocab_path, text=text)
        _, L = checked_normalizer(normalize, {model_path: model.identity()},
                                  model.embedding_size, force)
        smap = sentence_map(model, words, state=state, layer=layer, normalize=L,
                            measure=measure)
        path = write_figure(plot_sentence_map(smap), out)
        if csv_path:
            import csv

            Path(csv_path).parent.mkdir(parents=True, exist_ok=True)
            with open(csv_path, "w", newline="", encoding="utf-8") as f:
                w = csv.writer(f)
                w.writerow(["earlier \\ later"] + smap.words)
                for t, word in enumerate(smap.words):
                    w.writerow([word] + ["" if not np.isfinite(v) else f"{v:.6g}"
                                         for v in smap.matrix[t]])
    if smap.unknown:
        click.echo(f"not in the vocabulary (read as <unk>): {' '.join(smap.unknown)}", err=True)
    click.echo(f"wrote {path}")


COMMANDS = [report, sentence]
