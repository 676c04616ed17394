"""The options several commands share, each bundle defined once.

A bundle is a decorator that adds a group of options to a command, so every command
spells, types and documents them alike.  Where commands differ on purpose (the model
is required by one and optional for another; a report draws bands by default, the
tables only on request) the bundle takes that as an argument; the help texts that
only say what an option is stay the same everywhere.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import click

from ..data import BUILTIN_CLASS_SETS, FORMATS, TOKENIZATIONS
from ._inputs import check_encoding

Decorator = Callable[[Callable], Callable]


def _stack(*options: Decorator) -> Decorator:
    """Apply ``options`` so they appear in ``--help`` in the order given."""
    def decorate(func: Callable) -> Callable:
        for option in reversed(options):
            func = option(func)
        return func
    return decorate


# --- model loading: --model/--vocab/--trusted/--nonlinearity/--model-factory --------------

MODEL_FACTORY = "stategrad.model_factory"  # where --model-factory is kept (click's ctx.meta)


def _keep_factory(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    ctx.meta[MODEL_FACTORY] = value


def _model_or_factory(required: bool):
    """Callback of --model: with --model-factory, the factory spec stands for the model
    (so that every command reads and records it like a path; ``load_model`` builds it)."""
    def check(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
        factory = ctx.meta.get(MODEL_FACTORY)
        if factory is not None and value is not None:
            raise click.UsageError("give --model or --model-factory, not both")
        if factory is not None:
            return factory
        if required and value is None:
            raise click.MissingParameter(ctx=ctx, param=param)
        return value
    return check


def model_options(model_help: str | None = None, *, required: bool = False,
                  must_exist: bool = False) -> Decorator:
    """--model (what it is for: ``model_help``), --vocab, --trusted, --nonlinearity and
    --code-path, as ``load_model`` takes them, and --model-factory instead of --model.
    ``must_exist`` lets click refuse a missing file before anything runs."""
    path = click.Path(exists=must_exist, dir_okay=False)
    return _stack(
        click.option("--model", "model_path", type=path, help=model_help,
                     callback=_model_or_factory(required)),
        click.option("--model-factory", metavar="FILE.py:FUNCTION", is_eager=True,
                     expose_value=False, callback=_keep_factory,
                     help="Instead of --model: FUNCTION() of this Python file (your code, run "
                          "as trusted) returns (model, vocabulary); the model implements "
                          "stategrad's recurrent protocol or has an 'rnn'/'rnns' of "
                          "nn.LSTM/GRU/RNN (see README, 'Any recurrent model')."),
        click.option("--vocab", "vocab_path", type=path,
                     help="Vocabulary of a model trained elsewhere: 'word<TAB>id' lines or one "
                          "word per line."),
        click.option("--trusted", is_flag=True,
                     help="Allow a pickled module file (unpickling runs code from it)."),
        click.option("--nonlinearity", type=click.Choice(["tanh", "relu"]), default=None,
                     help="The nonlinearity of an nn.RNN state dict (required for one: its "
                          "weights do not say)."),
        click.option("--code-path", type=click.Path(exists=True, file_okay=False),
                     help="Folder of the Python module that defines a pickled module's class "
                          "(word_language_model's model.py), when it is not importable."),
    )


# --- texts read for a model: --tokenization, and --force past the vocabulary check ----------

TOKENIZATION_HELP = ("How the text becomes tokens.  original: one sentence per line, <eos> "
                     "after each, <UNK> read as <unk>, and in a path containing 'wikitext' "
                     "' . ' also ends a sentence.  plain: <eos> after each line, every word "
                     "as written ('.' kept), as PyTorch's word_language_model reads it.  "
                     "Default: what a stategrad model was trained with; plain for a model "
                     "from elsewhere.")


def tokenization_option(f: Callable) -> Callable:
    """--tokenization of every command that reads a text for a model (None: the model's
    own rule, ``LanguageModel.tokenization``; see ``_inputs.read_model_text``)."""
    return click.option("--tokenization", type=click.Choice(TOKENIZATIONS), default=None,
                        help=TOKENIZATION_HELP)(f)


VOCAB_FORCE_HELP = ("Go on (with a warning) when a model from elsewhere predicts the text "
                    "worse than a unigram model, i.e. its --vocab order probably does not "
                    "match.")


def vocab_force_option(f: Callable) -> Callable:
    """--force of the commands whose only check to override is the vocabulary order."""
    return click.option("--force", is_flag=True, help=VOCAB_FORCE_HELP)(f)


# --- normalisation: --normalize/--force --------------------------------------------------

NORMALIZE_HELP = ("Embedding statistics (.npz from embedding-stats, or the original's "
                  "_D_norm_grad.npy): analyse G L instead of G.")


FORCE_HELP = ("Use --normalize statistics made from another model than the one analysed "
              "(wrong numbers; warns).")


def force_option(f: Callable, help: str = FORCE_HELP) -> Callable:
    """--force for every command that takes --normalize."""
    return click.option("--force", is_flag=True, help=help)(f)


def normalize_options(help: str = NORMALIZE_HELP, *, required: bool = False,
                      must_exist: bool = True, vocab_check: bool = False) -> Decorator:
    """--normalize (what the command does with it: ``help``) and --force; with
    ``vocab_check`` --force also goes past the vocabulary check of a text read for a model."""
    path = click.Path(exists=True) if must_exist else click.Path(dir_okay=False)
    force_help = FORCE_HELP + (" Also: " + VOCAB_FORCE_HELP if vocab_check else "")
    return _stack(click.option("--normalize", "normalize", required=required, type=path,
                               default=None, help=help),
                  lambda f: force_option(f, force_help))


# --- confidence intervals: --ci/--level/--n-boot/--seed ----------------------------------


def interval_options(f: Callable) -> Callable:
    """--ci and its settings, for the tables that can draw confidence bands on request."""
    return _stack(
        click.option("--ci", type=click.Choice(["jackknife", "bootstrap"]),
                     help="Confidence intervals from the result's blocks (a result computed "
                          "with --block-size): delete-one-block jackknife or block bootstrap."),
        click.option("--level", type=click.FloatRange(0, 1, min_open=True, max_open=True),
                     default=0.95, show_default=True, help="Confidence level of the intervals."),
        click.option("--n-boot", type=click.IntRange(min=1), default=200, show_default=True,
                     help="Bootstrap resamples."),
        click.option("--seed", "ci_seed", type=int, default=0, show_default=True,
                     help="Seed of the bootstrap's resamples."),
    )(f)


def band_options(f: Callable) -> Callable:
    """The report's bands: drawn by default (jackknife), 'none' turns them off."""
    return _stack(
        click.option("--ci", type=click.Choice(["jackknife", "bootstrap", "none"]),
                     default="jackknife", show_default=True, help="Confidence band estimator."),
        click.option("--level", default=0.95, show_default=True,
                     type=click.FloatRange(0, 1, min_open=True, max_open=True),
                     help="Confidence level of the bands."),
        click.option("--n-boot", default=200, show_default=True, type=click.IntRange(2),
                     help="Bootstrap resamples (with --ci bootstrap)."),
        click.option("--seed", default=0, show_default=True, help="Seed of the bootstrap."),
    )(f)


# --- word classes --------------------------------------------------------------------------


def class_options(func: Callable) -> Callable:
    """Add ``--classes/--pos-map/--tag-map/--class-words/--class-map``, ``--tagged`` and
    its settings, and ``--frequency-bands/--frequency-text``: the classes a command
    defines (see ``class_inputs.ClassOptions``)."""
    return _stack(
        click.option(
            "--classes", "classes", multiple=True, metavar="SPEC",
            help=(
                "Word classes defined by POS tags (needs --pos-map): a built-in set "
                f"({', '.join(BUILTIN_CLASS_SETS)}; 'ptb:nouns+verbs' keeps some of its classes) "
                "or a class file with one tag per line, named after the file (nouns.txt -> "
                "nouns). Repeat the option or separate with commas. A word counts for every "
                "class one of its possible tags is in; with --tagged a token counts for the "
                "classes of its own gold tag (no --pos-map)."
            ),
        ),
        click.option(
            "--pos-map", type=click.Path(exists=True, dir_okay=False),
            help=(
                "Word -> possible tags map ('word TAG TAG ...' per line, the original's format; "
                "`stategrad prepare-tagged` writes one)."
            ),
        ),
        click.option(
            "--tag-map", type=click.Path(exists=True, dir_okay=False),
            help=(
                "Fine -> universal tag map for the universal class sets: 'FINE<TAB>UNIVERSAL' "
                "per line (e.g. ../shared/data/tagsets/en-brown.map). Needed for Brown tags; "
                "PTB tags have a built-in table."
            ),
        ),
        click.option(
            "--class-words", multiple=True, type=click.Path(exists=True, dir_okay=False),
            help="A class given as a word list, one word per line, named after the file. Repeatable.",
        ),
        click.option(
            "--class-map", type=click.Path(exists=True, dir_okay=False),
            help="Classes given as 'word<TAB>class' lines (a word may have several classes).",
        ),
        click.option(
            "--tagged", type=click.Path(exists=True, dir_okay=False),
            help="Token classes: analyse the words of this tagged corpus (instead of --text; "
                 "normalised as prepare-tagged --normalize writes them, <eos> after each "
                 "sentence) and put each token in the class of its own gold tag: one class "
                 "per tag, or --classes ptb / universal / tag class files over the gold tags.",
        ),
        click.option("--tagged-format", type=click.Choice(FORMATS),
                     help="Format of --tagged (default: detected)."),
        click.option("--tagged-as-is", is_flag=True,
                     help="Read --tagged without the PTB normalisation (case, numbers and "
                          "punctuation kept)."),
        click.option(
            "--frequency-bands", metavar="R1,R2,...",
            help="Split every class but 'all' into frequency strata by the word's rank in "
                 "--frequency-text (1 = most frequent; equal counts in code point order): "
                 "100,1000 gives C@1-100, C@101-1000, C@1001+ and C@unranked.",
        ),
        click.option("--frequency-text", type=click.Path(exists=True, dir_okay=False),
                     help="The text whose word frequencies rank words for --frequency-bands "
                          "(the model's training text)."),
    )(func)


def show_classes_option(help: str = "Classes to show, comma separated (default: every class "
                                    "of the result).") -> Decorator:
    """--classes of the commands that show classes a result already has."""
    return click.option("--classes", default=None, help=help)


# --- output tables: --csv/--json -----------------------------------------------------------


def table_options(csv_help: str = "Write the table as CSV.",
                  json_help: str = "Write it as JSON.") -> Decorator:
    """--csv and --json of the commands that print a table."""
    return _stack(click.option("--csv", "csv_path", type=click.Path(dir_okay=False), help=csv_help),
                  click.option("--json", "json_path", type=click.Path(dir_okay=False),
                               help=json_help))


# --- text encoding -------------------------------------------------------------------------

def encoding_option(help: str | None = None) -> Decorator:
    """--encoding of the texts a command reads; an unknown codec is a usage error."""
    return click.option("--encoding", default="utf-8", show_default=True, help=help,
                        callback=check_encoding)


# --- running: --device/--threads/--progress ------------------------------------------------


def _check_device(ctx, param, value: str) -> str:
    # torch.device accepts many names the engine cannot run on, and rejects others with a traceback.
    if re.fullmatch(r"cpu|cuda(:\d+)?", value) is None:
        raise click.BadParameter(f"{value!r} is not one of cpu, cuda, cuda:N")
    return value


def device_option(*, configured: bool = False) -> Decorator:
    """--device: a device name (default cpu), or with ``configured`` an override of the
    configuration's training.device (which also knows 'auto')."""
    if configured:
        return click.option("--device", default=None, metavar="cpu|cuda|cuda:N|auto",
                            help="Overrides training.device of the configuration.")
    return click.option("--device", default="cpu", show_default=True, callback=_check_device,
                        help="cpu, cuda or cuda:N.")


def threads_option(help: str = "CPU threads for PyTorch (torch.set_num_threads).") -> Decorator:
    return click.option("--threads", type=click.IntRange(min=1), default=None, help=help)


def progress_option(help: str = "A progress bar; without it, a line on standard error every "
                                "60 s.") -> Decorator:
    return click.option("--progress/--no-progress", default=True, show_default=True, help=help)
