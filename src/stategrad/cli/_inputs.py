"""Reading and writing the files a command is given (every failure names the file), and
the few helpers the commands share to report errors and print tables."""

from __future__ import annotations

import codecs
import contextlib
import os
import pickle
import zipfile
from collections.abc import Iterator
from typing import Any

import click

# What loaders raise on a file that is not what they expect: h5py raises KeyError for a
# missing dataset, numpy ValueError or zipfile.BadZipFile for a damaged array file, torch
# RuntimeError or pickle.UnpicklingError for a damaged checkpoint, and a short or empty
# file can surface as EOFError or IndexError. Only calls that read one given file are
# wrapped, so these mean "this file is wrong", not a bug elsewhere.
_LOADING_ERRORS = (OSError, ValueError, KeyError, IndexError, EOFError, RuntimeError,
                   UnicodeError, zipfile.BadZipFile, pickle.UnpicklingError)


@contextlib.contextmanager
def reading(path, what: str = "") -> Iterator[None]:
    """Turn a failure while reading ``path`` into one ``Error:`` line that names it."""
    try:
        yield
    except click.ClickException:
        raise
    except _LOADING_ERRORS as exc:
        message = " ".join(str(exc).split()) or type(exc).__name__
        if isinstance(exc, UnicodeDecodeError):
            message = f"not valid {exc.encoding} text ({exc.reason} at byte {exc.start})"
        raise click.ClickException(_labelled(message, path, what)) from exc


@contextlib.contextmanager
def writing(path, what: str = "") -> Iterator[None]:
    """Name ``path`` in an OSError while writing it: one from write() or close() (a full
    disk) carries no file name. Other errors pass unchanged, since a writer that also
    reads inputs raises those about its inputs."""
    try:
        yield
    except OSError as exc:
        if exc.filename is not None:
            raise click.ClickException(f"{exc.filename}: {exc.strerror or exc}") from exc
        raise click.ClickException(_labelled(exc.strerror or str(exc), path, what)) from exc


def _labelled(message: str, path, what: str) -> str:
    if str(path) in message:
        return message
    label = f"{what} {path}" if what else str(path)
    return f"{label}: {message}"


def is_other_rank() -> bool:
    """True in the processes of a torchrun launch other than rank 0.  Read from the
    environment torchrun sets, so that it costs no torch import."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1")) > 1 and int(os.environ.get("RANK", "0")) != 0
    except ValueError:
        return False


def warn(message: str) -> None:
    """A warning line on standard error, printed once: under torchrun every rank reads the
    same inputs and would print the same line, so only rank 0 prints it."""
    if not is_other_rank():
        click.echo(message, err=True)


def check_encoding(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """Callback of --encoding: an unknown codec is a usage error naming the option,
    found before any file is opened."""
    try:
        codecs.lookup(value)
    except LookupError:
        raise click.BadParameter(f"unknown text encoding {value!r}") from None
    return value


def load_model(path: str, vocab: str | None, trusted: bool, nonlinearity: str | None = None,
               code_path: str | None = None):
    """The model of --model/--vocab/--trusted/--nonlinearity/--code-path, or the one
    --model-factory builds; a file that is not one names --model."""
    from ..lm import load_model as load

    ctx = click.get_current_context(silent=True)
    factory = ctx.meta.get("stategrad.model_factory") if ctx is not None else None
    if factory is not None:
        from ..lm import load_factory

        if vocab is not None:
            raise click.UsageError("--vocab does not go with --model-factory: the factory "
                                   "returns the vocabulary")
        return load_factory(factory)

    with reading(path, "--model"):
        return load(path, vocab, trusted=trusted, nonlinearity=nonlinearity, code_path=code_path)


def read_model_text(lm, path, *, option: str = "--text", tokenization: str | None = None,
                    no_eos: bool = False, encoding: str = "utf-8"):
    """The tokens of the text ``path`` (given as ``option``) for the model ``lm``, read
    by --tokenization or else by the model's own rule (``lm.tokenization``: what a
    stategrad checkpoint was trained with, plain for a model from elsewhere)."""
    from ..data import read_tokens

    with reading(path, option):
        return read_tokens(path, lm.vocab, no_eos=no_eos, encoding=encoding,
                           tokenization=tokenization or lm.tokenization)


#: Below this many tokens the text's own unigram model fits it too well to judge a model
#: by (10 tokens of a sentence: a unigram perplexity of at most 10), so there is no check.
MIN_CHECK_TOKENS = 200


def check_vocabulary(lm, tokens, *, force: bool, vocab_path: str | None = None,
                     text: str | None = None) -> None:
    """The vocabulary-order check of every command that takes a model from elsewhere: run
    once per command, on the first tokens of the text it reads (``tokens``; None when it
    reads none).  A model that predicts the text worse than a unigram model is refused
    (its --vocab order probably does not match) unless ``force``, then warned about; a
    text too short to tell, or none, gets a warning that nothing was checked.  Models
    trained here carry their vocabulary and are not checked."""
    if not lm.foreign:
        return
    from ..lm import ModelError, check_vocabulary_order

    label = f"--vocab {vocab_path}" if vocab_path else f"--model {lm.source}"
    if tokens is None or len(tokens) < MIN_CHECK_TOKENS:
        where = f"{text} has only {len(tokens)} tokens" if tokens is not None else "no text"
        warn(f"warning: {label}: the vocabulary order of a model from elsewhere is not "
             f"checked ({where}; it needs {MIN_CHECK_TOKENS}): make sure it is the one "
             "the model was trained with")
        return
    try:
        mismatch = check_vocabulary_order(lm, tokens, force=force)
    except ModelError as exc:
        raise click.ClickException(f"{label}: {exc}") from exc
    if mismatch:
        warn(f"WARNING: {label}: {mismatch} (going on: --force)")


def checked_normalizer(path: str | None, identities: dict[str, str | None], embedding_size: int,
                       force: bool, need_stats: bool = False):
    """The --normalize file (statistics, or None for a bare L; and L), refused when it was
    made from another model than the one(s) in ``identities`` unless ``force``.  Warnings
    go to stderr.  (None, None) without --normalize."""
    if path is None:
        return None, None
    from ..analysis import checked_normalizer as check

    stats, L, notes = check(path, identities, embedding_size, force=force, need_stats=need_stats)
    for line in notes:
        warn(("WARNING: " if line.startswith("--force") else "warning: ") + line)
    return stats, L


@contextlib.contextmanager
def failing(*classes: type[Exception], path: str | None = None) -> Iterator[None]:
    """Turn an error of ``classes`` (raised on purpose, with a message for the user) into
    one ``Error:`` line, prefixed by ``path`` when given."""
    try:
        yield
    except classes as exc:
        raise click.ClickException(f"{path}: {exc}" if path else str(exc)) from exc


@contextlib.contextmanager
def analysis_errors(*also: type[Exception], result_path: str | None = None) -> Iterator[None]:
    """An analysis command's expected failures (the analysis, corpus, model and result
    errors, and ``also``) as one ``Error:`` line.  An UncertaintyError (e.g. a result
    without blocks given --ci) says what is wrong but not which file: with
    ``result_path`` it is prefixed by it."""
    from ..analysis import AnalysisError, UncertaintyError
    from ..data import CorpusError
    from ..gradients import ResultError
    from ..lm import ModelError

    with failing(AnalysisError, CorpusError, ModelError, ResultError, *also), \
            failing(UncertaintyError, path=result_path):
        yield


def note(message: str) -> None:
    click.echo(message, err=True)


def load_result(path: str, blocks: bool = False):
    from ..analysis import check_finite
    from ..gradients import load_result as load

    with reading(path):
        result = load(path, blocks=blocks)
    check_finite(result, path)
    return result


def split_list(text: str | None) -> list[str] | None:
    if text is None:
        return None
    items = [x for x in text.replace(",", " ").split() if x]
    return items or None


def write_tables(table: Any, csv_path: str | None, json_path: str | None) -> None:
    if csv_path:
        with writing(csv_path, "--csv"):
            note(f"wrote {table.to_csv(csv_path)}")
    if json_path:
        with writing(json_path, "--json"):
            note(f"wrote {table.to_json(json_path)}")
