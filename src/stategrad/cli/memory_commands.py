"""``stategrad memory``: memory per class and delay, by identity memory (the default with a
model) or by the papers' measure (the sum of all singular values and the 10% span).

Why identity memory leads: on the demo's planted language the papers' curves and spans
order the trigger classes the wrong way round (docs/synthetic-validation.md), identity
memory orders them as planted.  It needs the model's word embeddings, so without
``--model`` the command falls back to the papers' measure and says so.
"""

from __future__ import annotations

import click

from ._inputs import (
    analysis_errors,
    load_model,
    load_result,
    split_list,
    write_tables,
)
from .analysis_commands import (
    _check_result_model,
    _checked,
    _normalizer_for,
    _spec_words,
)
from .compare_commands import WHITEN_HELP, memory_compare, simultaneous_option, whitening_for
from .options import (
    interval_options,
    model_options,
    normalize_options,
    show_classes_option,
    table_options,
)

MEASURES = ("identity", "papers", "memory")  # "memory": the papers' measure's older name

MEASURE_HELP = (
    "identity (the default with --model or --model-factory): the sum of singular values "
    "in the directions in which a class's words differ, the measure that recovers planted "
    "memory (docs/synthetic-validation.md); needs the model.  papers (the default without a "
    "model; 'memory' is an older name of it): the papers' memory curve (sum of all singular "
    "values) and 10%-of-delay-0 span.")

#: The header printed when the papers' measure is used because no model was given.
PAPERS_DEFAULT_NOTE = ("the papers' measure (--measure papers): the default without --model; "
                       "give --model for identity memory, which recovers planted memory "
                       "(docs/synthetic-validation.md)")


def resolve_measure(measure: str | None, model_path: str | None, papers_only: list[str]) -> str:
    """``identity`` or ``papers``: what was asked, else identity with a model and the
    papers' measure without.  ``papers_only``: the options given that exist only for the
    papers' measure (they cannot be combined with identity memory)."""
    if measure == "memory":
        measure = "papers"
    if measure is None:
        measure = "identity" if model_path and not papers_only else "papers"
    if measure == "identity" and papers_only:
        raise click.UsageError(f"{' and '.join(papers_only)} work on the papers' measure: "
                               "add --measure papers")
    return measure


@click.command("memory")
@click.argument("result_path", metavar="RESULT", type=click.Path(exists=True, dir_okay=False))
@normalize_options()
@show_classes_option()
@click.option("--measure", type=click.Choice(MEASURES), default=None, help=MEASURE_HELP)
@model_options("The model whose embeddings the classes' words have: with it, identity "
               "memory is the default measure.")
@click.option("--pos-map", "pos_map_path", type=click.Path(exists=True, dir_okay=False),
              help="With identity memory: word -> tags map, for classes defined by tags.")
@click.option("--fraction", type=click.FloatRange(0, 1, min_open=True, max_open=True),
              default=0.1, show_default=True,
              help="Papers' measure: the memory span is the first delay whose sum falls "
                   "below FRACTION x the sum at 0.")
@table_options("Write the rows (class, delay, count, and the measure's values) as CSV.",
               "Write the rows (and the papers' spans or identity's noise_from) as JSON.")
@interval_options
@simultaneous_option
@click.option("--floor/--no-floor", "floor", default=None,
              help="The noise floor of every class and delay, of either measure (default: "
                   "with --ci).")
@click.option("--n-flips", type=click.IntRange(min=20), default=200, show_default=True,
              help="Random sign draws of the noise floor.")
@click.option("--compare", "compare_pair", nargs=2, metavar="A B", default=None,
              help="Papers' measure: paired difference of class A minus class B on the same "
                   "blocks, instead of the curves.")
@click.option("--whiten-state", type=click.Path(exists=True, dir_okay=False),
              help="Papers' measure: " + WHITEN_HELP)
def memory(result_path, normalize, force, classes, measure, model_path, vocab_path, trusted,
           nonlinearity, code_path, pos_map_path, fraction, csv_path, json_path, ci, level,
           n_boot, ci_seed, simultaneous, floor, n_flips, compare_pair, whiten_state):
    """Memory per class and delay.  With --model (or --model-factory): identity memory,
    how much of what tells a class's words apart the state still carries, with --ci its
    bands and with --floor (default with --ci) its noise floor and the delay from which
    each class stays within it.  Without a model, or with --measure papers: the papers'
    memory curves (sum of singular values against delay) and memory spans, with --ci
    their bands, bias-corrected sums (sum_bc), the span's percentile interval over block
    bootstrap resamples, and the noise floor (a span whose curve never clears it is "not
    distinguishable from noise")."""
    if simultaneous and ci is None and compare_pair is None:
        raise click.UsageError("--simultaneous needs --ci (or --compare): it is a kind of band")
    papers_only = [name for name, given in (("--compare", compare_pair is not None),
                                            ("--whiten-state", whiten_state is not None),
                                            ("--simultaneous", simultaneous)) if given]
    defaulted = measure is None
    measure = resolve_measure(measure, model_path, papers_only)
    if measure == "identity":
        _identity_memory(result_path, normalize, force, classes, csv_path, json_path, ci,
                         level, n_boot, ci_seed, floor, n_flips,
                         (model_path, vocab_path, trusted, nonlinearity, code_path), pos_map_path)
        return
    if defaulted and not model_path:
        click.echo(PAPERS_DEFAULT_NOTE)
    _papers_memory(result_path, normalize, force, classes, fraction, csv_path, json_path, ci,
                   level, n_boot, ci_seed, simultaneous, floor, n_flips, compare_pair,
                   whiten_state)


def _papers_memory(result_path, normalize, force, classes, fraction, csv_path, json_path, ci,
                   level, n_boot, ci_seed, simultaneous, floor, n_flips, compare_pair,
                   whiten_state):
    """``memory --measure papers``: the papers' curves and spans, or ``--compare``."""
    from .. import analysis

    with analysis_errors(result_path=result_path):
        result = load_result(result_path, blocks=ci is not None or bool(floor) or
                             compare_pair is not None)
        stats, L = _normalizer_for(result, result_path, normalize, force)
        W = whitening_for(result, result_path, whiten_state, force)
        if compare_pair is not None:
            table = memory_compare(result, result_path, compare_pair, _checked(stats, L), W, ci,
                                   level, n_boot, ci_seed, simultaneous)
            click.echo(table.format())
            write_tables(table, csv_path, json_path)
            return
        report = analysis.memory_curves(analysis.whiten_result(result, W),
                                        normalize=_checked(stats, L),
                                        classes=split_list(classes), fraction=fraction,
                                        interval=ci, level=level, n_boot=n_boot, seed=ci_seed,
                                        simultaneous=simultaneous, floor=floor, n_flips=n_flips)
    click.echo(report.format())
    write_tables(report, csv_path, json_path)


def _identity_memory(result_path, normalize, force, classes, csv_path, json_path, ci, level,
                     n_boot, ci_seed, floor, n_flips, model_args, pos_map_path):
    """``memory --measure identity``: the identity table of the result's classes."""
    from .. import analysis
    from ..data import read_pos_map

    if not model_args[0]:
        raise click.UsageError("--measure identity needs --model or --model-factory (the "
                               "classes' word embeddings)")
    with analysis_errors(result_path=result_path):
        result = load_result(result_path, blocks=ci is not None or bool(floor))
        stats, L = _normalizer_for(result, result_path, normalize, force)
        model = load_model(*model_args)
        _check_result_model(result, model)
        definitions = result.metadata.get("class_definitions") or {}
        pos_map = read_pos_map(pos_map_path) if pos_map_path else None
        names = split_list(classes) or [c for c in result.classes if c != "all"]
        class_words = {}
        for name in names:
            result.class_index(name)  # an unknown class: the result's error, naming it
            found, _ = analysis.word_ids(model.vocab, _spec_words(name, definitions, pos_map))
            class_words[name] = found
        table = analysis.identity_table(result, analysis.embedding_matrix(model), class_words,
                                        _checked(stats, L), interval=ci, level=level,
                                        n_boot=n_boot, seed=ci_seed, floor=floor,
                                        n_flips=n_flips)
    click.echo(table.format())
    write_tables(table, csv_path, json_path)



COMMANDS = [memory]
