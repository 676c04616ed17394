"""Analysis subcommands: embedding statistics and export, singular values, relative
memory and the POS probe (memory curves: :mod:`.memory_commands`).

Each command parses its options, calls :mod:`stategrad.analysis` and prints or writes
what it returns.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import click
import numpy as np

from ._inputs import (
    analysis_errors,
    check_vocabulary,
    checked_normalizer,
    load_model,
    load_result,
    note,
    read_model_text,
    reading,
    split_list,
    write_tables,
    writing,
)
from .options import (
    interval_options,
    model_options,
    normalize_options,
    progress_option,
    show_classes_option,
    table_options,
    tokenization_option,
    vocab_force_option,
)


def _float_list(text: str, what: str) -> list[float]:
    try:
        return [float(x) for x in text.replace(",", " ").split()]
    except ValueError:
        raise click.BadParameter(f"{what} must be numbers separated by commas, got {text!r}") from None


def _read_vector(path: str, result) -> np.ndarray:
    """A difference vector from a .npy file, checked against the result's embedding size."""
    with reading(path, "--vector"):
        v = np.asarray(np.load(path, allow_pickle=False), dtype=np.float64).ravel()
    if v.shape != (result.embedding_size,):
        raise click.BadParameter(f"{path} holds {v.size} numbers; the result's embeddings have "
                                 f"{result.embedding_size}", param_hint="--vector")
    return v


def _check_result_model(result, model) -> None:
    expected = result.metadata.get("model_identity")
    if expected and expected != model.identity():
        note("warning: the model is not the one the result was computed with "
              f"(result: {str(expected)[:12]}..., model: {model.identity()[:12]}...)")


def _normalizer_for(result, result_path: str, normalize: str | None, force: bool,
                    need_stats: bool = False):
    return checked_normalizer(normalize, {result_path: result.metadata.get("model_identity")},
                              result.embedding_size, force, need_stats)


def _checked(stats, L):
    """What the analysis functions get: the statistics where there are some (so the tables
    can name their weighting), else the checked bare L."""
    return stats if stats is not None else L


# --- embedding statistics --------------------------------------------------------------
@click.command("embedding-stats")
@model_options("Trained model (checkpoint) whose input embeddings to use.")
@click.option("--text", type=click.Path(exists=True, dir_okay=False),
              help="Reference text (usually the training text), for --weighting token.")
@click.option("--weighting", type=click.Choice(["token", "type"]),
              help="token (default with --text; recommended): each word as often as it "
                   "occurs in --text.  type: every row of the model's embedding table once, no "
                   "text; what the original's save_embedding file held, so it reproduces "
                   "the papers' normalisation.  With --embeddings: what its rows are.")
@click.option("--embeddings", "embeddings_path", type=click.Path(exists=True),
              help="Instead of --model/--text: an array of embeddings (.npy/.npz), each row "
                   "counted once: the original's save_embedding file (the V x E table: "
                   "--weighting type) or one row per token (--weighting token).")
@click.option("--out", type=click.Path(dir_okay=False),
              help="Statistics file to write (.npz: mean, covariance, L, Z, checks, metadata "
                   "with the weighting and the model's identity).")
@click.option("--legacy-prefix", help="Also write the original's PREFIX_mean.npy, "
              "PREFIX_covar.npy, PREFIX_D_norm_grad.npy (L) and PREFIX_Z_norm_emb.npy (Z).")
@click.option("--ridge", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Add RIDGE * I to a singular or nearly singular covariance.")
@tokenization_option
@vocab_force_option
def embedding_stats(model_path, vocab_path, trusted, nonlinearity, code_path, text, weighting, embeddings_path, out,
                    legacy_prefix, ridge, tokenization, force):
    """Normalisation to equal variance: mean, covariance, Cholesky factor L and
    whitening matrix Z = L^-1 of a model's embeddings, token weighted over a text or
    type weighted over the embedding table, with the original's sanity checks."""
    from .. import analysis, legacy

    if not out and not legacy_prefix:
        raise click.UsageError("give --out (and/or --legacy-prefix): where to write")
    if embeddings_path and (model_path or text):
        raise click.UsageError("--embeddings replaces --model/--text; give one or the other")
    if not embeddings_path and not model_path:
        raise click.UsageError("give --model (with --text, or --weighting type) or --embeddings")
    if model_path and weighting == "type" and text:
        raise click.UsageError("--weighting type uses the embedding table, not a text: "
                               "drop --text (or use --weighting token)")
    if model_path and weighting != "type" and not text:
        raise click.UsageError("give --text (token weighting) or --weighting type "
                               "(the embedding table, as the original)")
    with analysis_errors():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", analysis.ConditioningWarning)
            if embeddings_path:
                with reading(embeddings_path, "--embeddings"):
                    X = analysis.read_token_embeddings(embeddings_path)
                weighting = _array_weighting(X, embeddings_path, weighting)
                stats = analysis.embedding_stats_from_array(
                    X, ridge=ridge, metadata={"embeddings": str(embeddings_path),
                                              "weighting": weighting})
            else:
                model = load_model(model_path, vocab_path, trusted, nonlinearity, code_path)
                if text and model.foreign:  # type weighting does not depend on the order
                    check_vocabulary(model, read_model_text(model, text, tokenization=tokenization),
                                     force=force, vocab_path=vocab_path, text=text)
                read = {"tokenization": tokenization} if tokenization else {}
                stats = analysis.embedding_stats_for_model(
                    model, text, weighting=weighting or "token", ridge=ridge, **read)
        for w in caught:
            note(f"warning: {w.message}")
    if stats.weighting == "type":
        click.echo(f"{stats.n_types} rows of the embedding table, embedding size "
                   f"{stats.embedding_size}")
    else:
        click.echo(f"{stats.n_tokens} tokens, {stats.n_types} distinct words, "
                   f"embedding size {stats.embedding_size}")
    click.echo(analysis.weighting_text(stats))
    click.echo(stats.checks.format())
    with analysis_errors():
        if out:
            with writing(out, "--out"):
                note(f"wrote {stats.save(out)}")
        if legacy_prefix:
            with writing(legacy_prefix, "--legacy-prefix"):
                for p in legacy.save_legacy_stats(stats, legacy_prefix):
                    note(f"wrote {p}")

# --- embedding export --------------------------------------------------------------------
@click.command("export-embeddings")
@model_options(required=True)
@click.option("--text", type=click.Path(exists=True, dir_okay=False),
              help="Also write the embedding of every token of this text.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Folder for words.npy/words.dict (and tokens.npy/tokens.dict).")
@tokenization_option
@vocab_force_option
def export_embeddings(model_path, vocab_path, trusted, nonlinearity, code_path, text, out_dir,
                      tokenization, force):
    """Write a model's embeddings: words.npy (V x E, row = word id) with
    words.dict (word<TAB>id), and with --text the original's save_embedding
    output as one file, tokens.npy (N x E, one row per token) with tokens.dict
    (word<TAB>row of its first occurrence)."""
    from .. import analysis

    with analysis_errors():
        model = load_model(model_path, vocab_path, trusted, nonlinearity, code_path)
        tokens = read_model_text(model, text, tokenization=tokenization) if text else None
        check_vocabulary(model, tokens, force=force, vocab_path=vocab_path, text=text)
        out = Path(out_dir)
        for p in analysis.export_word_embeddings(model, out / "words.npy"):
            note(f"wrote {p}")
        if tokens is not None:
            for p in analysis.export_token_embeddings(model, tokens, out / "tokens.npy"):
                note(f"wrote {p}")

# --- singular values -----------------------------------------------------------------


@click.command("svd")
@click.argument("result_path", metavar="RESULT", type=click.Path(exists=True, dir_okay=False))
@normalize_options()
@show_classes_option()
@click.option("--top", type=click.IntRange(min=1), default=5, show_default=True,
              help="Singular values to list.")
@table_options()
def svd(result_path, normalize, force, classes, top, csv_path, json_path):
    """Top singular values and their sum per delay and class (the original's
    calculate_svs), of the average gradients G or, with --normalize, of G L."""
    from .. import analysis

    with analysis_errors():
        result = load_result(result_path)
        stats, L = _normalizer_for(result, result_path, normalize, force)
        table = analysis.singular_value_table(result, normalize=_checked(stats, L),
                                              classes=split_list(classes), top=top)
    click.echo(table.format())
    write_tables(table, csv_path, json_path)

# --- relative memory ---------------------------------------------------------------------
@click.command("relative-memory")
@click.argument("result_path", metavar="RESULT", type=click.Path(exists=True, dir_okay=False))
@normalize_options("Embedding statistics (.npz from embedding-stats, or the original's "
                   "PREFIX_D_norm_grad.npy with its sibling files).", required=True,
                   vocab_check=True)
@model_options("The model, for the embeddings the difference vector is taken from.")
@click.option("--diff", nargs=2, metavar="A B",
              help="Two word sets; v = mean embedding of A minus that of B.  Each is a "
                   "class of the result, TAG[,TAG...] (with --pos-map), tags:FILE (a class "
                   "file, with --pos-map) or words:FILE (words, one per line).")
@click.option("--vector", "vector_path", type=click.Path(exists=True, dir_okay=False),
              help="Instead of --diff: a difference vector saved as .npy (E,).")
@click.option("--pos-map", "pos_map_path", type=click.Path(exists=True, dir_okay=False),
              help="Word -> possible tags map, for word sets given by tags.")
@click.option("--weight-text", type=click.Path(exists=True, dir_okay=False),
              help="Weight each word's embedding by its count in this text (default: each "
                   "word once).")
@tokenization_option
@click.option("--keep-shared", is_flag=True,
              help="Keep words that are in both sets of --diff in both means (the "
                   "original's way); by default they are left out of both.")
@click.option("--class", "class_name", default="all", show_default=True,
              help="Class of the result whose average gradients to use.")
@click.option("--top-k", type=click.IntRange(min=1), default=5, show_default=True,
              help="Right singular vectors spanning the subspace of the cosine.  The "
                   "original's cos_subspace_diff_vector.py takes vh[:thr+1]: --top-k K "
                   "equals its thr = K-1.")
@click.option("--save-vector", type=click.Path(dir_okay=False),
              help="Write the difference vector as .npy.")
# The default is analysis.locate.BEND_START, not imported here: importing the analysis
# package at start-up would load scipy for every command.
@click.option("--bend-start", type=click.IntRange(min=2), default=3,
              show_default=True,
              help="First delay searched for the bend of absolute that locates where the "
                   "property stops being kept: a planted distance K is only found when "
                   "K >= S.  The bends at delays 1-2 are usually the word's direct effect "
                   "decaying; use 2 for a property expected at delay 2.")
@table_options()
@interval_options
def relative_memory(result_path, normalize, force, model_path, vocab_path, trusted, nonlinearity, code_path, diff, vector_path,
                    pos_map_path, weight_text, tokenization, keep_shared, class_name, top_k,
                    save_vector, bend_start, csv_path, json_path, ci, level, n_boot, ci_seed):
    """Relative memory |G L n| / s_1 and subspace cosine |V_k n| per delay of a
    property n = Z v / |Z v|, v the difference of two mean embeddings (e.g.
    plural minus singular nouns).  The column share is the sum of the top-k singular
    values over the sum of all: how much of the state's memory the cosine's subspace
    stands for (it does not depend on n).  On a result with blocks each row also gets the
    noise floor of absolute; the last line says where absolute bends down most (the
    JSON's located_delay, searched from located_from = --bend-start)."""
    from .. import analysis

    if (diff is None) == (vector_path is None):
        raise click.UsageError("give --diff A B (with --model) or --vector FILE")
    with analysis_errors(result_path=result_path):
        # Blocks whenever the file has them (the noise floor needs them, not only --ci):
        # they are read one delay at a time when used, so loading them costs little.
        result = load_result(result_path, blocks=True)
        with reading(normalize, "--normalize"):
            stats, _ = _normalizer_for(result, result_path, normalize, force, need_stats=True)
        if vector_path:
            v: Any = analysis.DifferenceVector(_read_vector(vector_path, result),
                                               Path(vector_path).stem, "given", (0, 0))
        else:
            if not model_path:
                raise click.UsageError("--diff needs --model (the embeddings to average)")
            model = load_model(model_path, vocab_path, trusted, nonlinearity, code_path)
            _check_result_model(result, model)
            weights = None
            if weight_text:
                weights = read_model_text(model, weight_text, option="--weight-text",
                                          tokenization=tokenization)
                check_vocabulary(model, weights, force=force, vocab_path=vocab_path,
                                 text=weight_text)
            elif model.identity() != result.metadata.get("model_identity"):
                # the same model (vocabulary included) was checked when the result was made
                check_vocabulary(model, None, force=force, vocab_path=vocab_path)
            v = _difference_from_specs(result, model, diff, pos_map_path, weights,
                                       "keep" if keep_shared else "drop")
            click.echo(f"difference vector {v.label}: {v.n_words[0]} vs {v.n_words[1]} words"
                       + (f", {v.n_tokens[0]} vs {v.n_tokens[1]} tokens" if v.n_tokens else ""))
            if v.n_shared:
                note(f"{v.n_shared} words are in both sets: "
                      + ("kept in both means" if keep_shared else
                         "left out of both means (--keep-shared keeps them)"))
        if save_vector:
            note(f"wrote {v.save(save_vector)}")
        table = analysis.relative_memory(result, v, stats, c=class_name, top_k=top_k,
                                         interval=ci, level=level, n_boot=n_boot,
                                         seed=ci_seed, bend_start=bend_start)
    click.echo(table.format())
    write_tables(table, csv_path, json_path)

# --- POS probe ---------------------------------------------------------------------------
@click.command("probe")
@model_options(required=True)
@click.option("--pos-map", "pos_map_path", type=click.Path(exists=True, dir_okay=False),
              help="Word -> possible tags: one example per (word, tag) pair.")
@click.option("--tagged", "tagged_path", type=click.Path(exists=True, dir_okay=False),
              help="Instead of --pos-map: running tagged text (CoNLL, word/TAG, Brown), one "
                   "example per token.")
@click.option("--normalize-text", is_flag=True,
              help="With --tagged: lower case, numbers to N, no punctuation (Mikolov's PTB).")
@click.option("--tags", help="Only these tags, comma separated (after --tag-map).")
@click.option("--tag-map", "tag_map_path", type=click.Path(exists=True, dir_okay=False),
              help="Fine -> coarse tag map (e.g. ../shared/data/tagsets/en-ptb.map).")
@click.option("--C", "c_grid", default="0.1,1,10", show_default=True,
              help="Grid of inverse regularisation strengths for cross-validation.")
@click.option("--cv", type=click.IntRange(min=2), default=3, show_default=True, help="Cross-validation folds.")
@click.option("--test-fraction", type=click.FloatRange(0, 1, min_open=True, max_open=True),
              default=0.2, show_default=True,
              help="Fraction of the words held out for the accuracy.")
@click.option("--min-examples", type=int, default=5, show_default=True,
              help="Leave out tags with fewer examples.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the (first) split of the words into training and held out.")
@click.option("--splits", type=click.IntRange(min=1), default=1, show_default=True,
              help="Repeat on this many random word splits and report the spread of the "
                   "accuracy (a few frequent held-out words can move it a lot).")
@click.option("--jobs", type=click.IntRange(min=1), default=None,
              help="Processes for the splits (default: one per CPU); the results do not "
                   "depend on it.")
@progress_option("A progress bar over the splits on standard error.")
@click.option("--class-means", type=click.Path(dir_okay=False),
              help="Write the per-tag mean embeddings (.npz, key = tag).")
@click.option("--confusion", type=click.Path(dir_okay=False),
              help="Write the held-out confusion matrix as CSV.")
@vocab_force_option
def probe(model_path, vocab_path, trusted, nonlinearity, code_path, pos_map_path, tagged_path,
          normalize_text, tags, tag_map_path, c_grid, cv, test_fraction, min_examples, seed,
          splits, jobs, progress, class_means, confusion, force):
    """POS probe: logistic regression from input embeddings to POS tags, accuracy on
    held-out words, confusion matrix and per-tag mean embeddings."""
    from ..analysis import pos_probe, read_tag_map
    from ..data import TaggedError, read_pos_map

    if (pos_map_path is None) == (tagged_path is None):
        raise click.UsageError("give --pos-map (word types) or --tagged (running text)")
    with analysis_errors(TaggedError):
        model = load_model(model_path, vocab_path, trusted, nonlinearity, code_path)
        check_vocabulary(model, _tagged_ids(tagged_path, normalize_text, model)
                         if tagged_path and model.foreign else None,
                         force=force, vocab_path=vocab_path, text=tagged_path)
        tag_map = read_tag_map(tag_map_path) if tag_map_path else None
        kwargs = dict(tags=split_list(tags), tag_map=tag_map, Cs=_float_list(c_grid, "--C"),
                      cv=cv, test_fraction=test_fraction, min_examples=min_examples,
                      seed=seed, splits=splits, n_jobs=jobs, progress=progress)
        if pos_map_path:
            result = pos_probe(model, pos_map=read_pos_map(pos_map_path), **kwargs)
        else:
            result = pos_probe(
                model, tagged_tokens=_tagged_tokens(tagged_path, normalize_text), **kwargs)
    click.echo(result.format())
    if class_means:
        note(f"wrote {result.save_class_means(class_means)}")
    if confusion:
        note(f"wrote {result.save_confusion_csv(confusion)}")

COMMANDS = [embedding_stats, export_embeddings, svd, relative_memory, probe]


# --- helpers for embedding-stats, relative-memory and probe ---------------------------------------


def _array_weighting(X: np.ndarray, path: str, weighting: str | None) -> str:
    """What the rows of an embeddings array stand for.  Repeated rows can only be tokens
    of a text; an array without repeats is an embedding table or a text of distinct
    words, which only the user can tell."""
    from ..analysis import AnalysisError

    repeats = X.ndim == 2 and len(X) > 1 and len(np.unique(X, axis=0)) < len(X)
    if weighting == "type" and repeats:
        raise AnalysisError(f"{path} has repeated rows, so its rows are tokens of a text, not "
                            "an embedding table: use --weighting token")
    if weighting:
        return weighting
    if repeats:
        return "token"
    raise click.UsageError(
        f"cannot tell whether the rows of {path} are an embedding table or tokens of a text: "
        "give --weighting type (the table, as the original's save_embedding wrote it) or "
        "--weighting token")



def _tagged_tokens(path: str, normalize: bool):
    from ..data import iter_tagged_sentences, normalize_sentence

    for sentence in iter_tagged_sentences(path):
        if normalize:
            sentence = normalize_sentence(sentence)
        yield from sentence


def _tagged_ids(path: str, normalize: bool, model, limit: int = 5000) -> np.ndarray:
    """The first words of a tagged text as the model's ids, <eos> after each sentence:
    what the vocabulary check runs the model over."""
    from ..data import EOS, UNK, iter_tagged_sentences, normalize_sentence

    words: list[str] = []
    for sentence in iter_tagged_sentences(path):
        if normalize:
            sentence = normalize_sentence(sentence)
        words += [word for word, _ in sentence] + [EOS]
        if len(words) >= limit:
            break
    if UNK not in model.vocab:  # nothing to read an unknown word as: leave it out
        words = [w for w in words if w in model.vocab]
    return model.vocab.encode(words)


def _spec_words(spec: str, definitions: dict, pos_map) -> list[str]:
    """The words of a word set: words:FILE, tags:FILE, a class of the result (its words
    or tags) or TAG[,TAG...] (tags need the POS map)."""
    from .. import analysis
    from ..data import read_class_file

    kind, sep, rest = spec.partition(":")
    if sep and kind == "words":
        return read_class_file(rest)
    if sep and kind == "tags":
        tags = read_class_file(rest)
    else:
        definition = definitions.get(spec)
        if isinstance(definition, list):
            return [str(w) for w in definition]
        if isinstance(definition, dict) and "words" in definition:
            return [str(w) for w in definition["words"]]
        tags = (definition.get("tags") if isinstance(definition, dict) else None) or \
            split_list(spec) or []
    if pos_map is None:
        raise analysis.AnalysisError(
            f"word set {spec!r} is given by tags {tags}: add --pos-map to find its words")
    wanted = set(tags)
    words = [w for w, wt in pos_map.items() if wanted.intersection(wt)]
    if not words:
        raise analysis.AnalysisError(f"no word of the POS map has a tag in {sorted(wanted)}")
    return words


def _difference_from_specs(result, model, specs, pos_map_path, weight_tokens, shared="drop"):
    from .. import analysis
    from ..data import read_pos_map

    pos_map = read_pos_map(pos_map_path) if pos_map_path else None
    definitions = result.metadata.get("class_definitions") or {}
    W = analysis.embedding_matrix(model)
    ids = []
    for spec in specs:
        found, missing = analysis.word_ids(model.vocab, _spec_words(spec, definitions, pos_map))
        if len(found) == 0:
            raise analysis.AnalysisError(f"none of the words of {spec!r} is in the model's vocabulary")
        if missing:
            note(f"{spec}: {len(missing)} of its words are not in the vocabulary (ignored)")
        ids.append(found)
    counts = None
    if weight_tokens is not None:
        counts = np.bincount(weight_tokens, minlength=len(model.vocab))
    return analysis.difference_vector(W, ids[0], ids[1], token_counts=counts,
                                      label=f"{specs[0]} - {specs[1]}", shared=shared)
