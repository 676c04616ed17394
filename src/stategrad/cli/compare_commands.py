"""Paired comparisons on the same blocks (``compare``, and ``memory --compare``'s
helper) and the state statistics for state-side whitening (``state-stats``).

Heavy imports (numpy, the analysis subpackage) happen inside the commands, so that
``stategrad --help`` stays fast."""

from __future__ import annotations

import click

from ._inputs import analysis_errors, load_model, load_result, note, reading, write_tables, writing
from .options import model_options, table_options

WHITEN_HELP = ("State statistics (.npz from state-stats) of the result's model and state: "
               "compare W_s G L with W_s = Cov(s)^-1/2, free of the state's scale.")


def simultaneous_option(f):
    return click.option("--simultaneous", is_flag=True,
                        help="Bands that hold for all delays at once (jackknife: Bonferroni "
                             "over delays; bootstrap: max-|t| over delays).")(f)


def whitening_for(result, result_path: str, path: str | None, force: bool):
    """W_s from ``--whiten-state``, checked against the result (None without it)."""
    if path is None:
        return None
    from .. import analysis

    with reading(path, "--whiten-state"):
        stats = analysis.load_state_stats(path)
    for line in analysis.check_state_stats(stats, result, result_path, path, force=force):
        note(("WARNING: " if line.startswith("--force") else "warning: ") + line)
    return stats.whitening


def _normalizer(result, result_path: str, normalize: str | None, force: bool):
    from ._inputs import checked_normalizer

    stats, L = checked_normalizer(normalize, {result_path: result.metadata.get("model_identity")},
                                  result.embedding_size, force)
    return stats if stats is not None else L


def memory_compare(result, result_path: str, pair: tuple[str, str], normalize, W, ci: str | None,
                   level: float, n_boot: int, seed: int, simultaneous: bool):
    """``memory --compare A B``: class A minus class B of one result on its blocks."""
    from .. import analysis

    a, b = (analysis.Side(result, c, normalize, W, c) for c in pair)
    return analysis.paired_difference(a, b, method=ci or "jackknife", level=level,
                                      n_boot=n_boot, seed=seed, simultaneous=simultaneous)


@click.command("compare")
@click.argument("result_a", metavar="RESULT_A", type=click.Path(exists=True, dir_okay=False))
@click.argument("result_b", metavar="RESULT_B", type=click.Path(exists=True, dir_okay=False))
@click.option("--class", "class_a", default="all", show_default=True,
              help="The class of RESULT_A (and of RESULT_B unless --class-b).")
@click.option("--class-b", default=None, help="The class of RESULT_B (default: --class).")
@click.option("--normalize", type=click.Path(exists=True, dir_okay=False),
              help="Embedding statistics of RESULT_A's model (G L).")
@click.option("--normalize-b", type=click.Path(exists=True, dir_okay=False),
              help="Embedding statistics of RESULT_B's model (default: --normalize).")
@click.option("--whiten-state", type=click.Path(exists=True, dir_okay=False), help=WHITEN_HELP)
@click.option("--whiten-state-b", type=click.Path(exists=True, dir_okay=False),
              help="State statistics of RESULT_B's state (needed with --whiten-state).")
@click.option("--force", is_flag=True, help="Use statistics of another model, with a warning.")
@click.option("--ci", type=click.Choice(["jackknife", "bootstrap"]), default="jackknife",
              show_default=True, help="Interval of the difference over the shared blocks.")
@click.option("--level", type=click.FloatRange(0, 1, min_open=True, max_open=True),
              default=0.95, show_default=True, help="Confidence level.")
@click.option("--n-boot", type=click.IntRange(min=2), default=200, show_default=True,
              help="Bootstrap resamples.")
@click.option("--seed", "ci_seed", type=int, default=0, show_default=True,
              help="Seed of the bootstrap's resamples.")
@simultaneous_option
@table_options("Write the rows (delay, a, b, difference, difference_lower, ...) as CSV.",
               "Write the rows as JSON.")
def compare(result_a, result_b, class_a, class_b, normalize, normalize_b, whiten_state,
            whiten_state_b, force, ci, level, n_boot, ci_seed, simultaneous, csv_path, json_path):
    """Paired difference of the memory curve (sum of singular values) of RESULT_A minus
    RESULT_B, per delay, with an interval over the *same* blocks of the same text: cell
    against hidden state, model against model, or (the same file twice) class against
    class.  Results whose blocks differ are refused."""
    from .. import analysis

    if (whiten_state is None) != (whiten_state_b is None) and result_a != result_b:
        raise click.UsageError("give --whiten-state and --whiten-state-b together: both sides "
                               "must be in the same units")
    with analysis_errors():
        ra = load_result(result_a, blocks=True)
        rb = ra if result_b == result_a else load_result(result_b, blocks=True)
        La = _normalizer(ra, result_a, normalize, force)
        Lb = _normalizer(rb, result_b, normalize_b or normalize, force)
        Wa = whitening_for(ra, result_a, whiten_state, force)
        Wb = whitening_for(rb, result_b, whiten_state_b or whiten_state, force)
        cb = class_b or class_a
        la, lb = (result_a, result_b) if result_a != result_b else (class_a, cb)
        table = analysis.paired_difference(
            analysis.Side(ra, class_a, La, Wa, la), analysis.Side(rb, cb, Lb, Wb, lb),
            method=ci, level=level, n_boot=n_boot, seed=ci_seed, simultaneous=simultaneous)
    click.echo(table.format())
    write_tables(table, csv_path, json_path)


@click.command("state-stats")
@model_options("Trained model (checkpoint) whose states to follow.", required=True)
@click.option("--text", required=True, type=click.Path(exists=True, dir_okay=False),
              help="The text to run the model over (usually the gradients' text).")
@click.option("--state", type=click.Choice(["cell", "hidden"]), default="cell",
              show_default=True, help="Which state.")
@click.option("--layer", type=int, default=-1, show_default=True,
              help="Which layer (-1: the last), as the gradients' --layer.")
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="Where to write the statistics (.npz).")
def state_stats(model_path, vocab_path, trusted, nonlinearity, code_path, text, state, layer, out):
    """Mean and covariance of a model's state over a text, for --whiten-state: the
    state side of G is then whitened by W_s = Cov(s)^-1/2, so that comparisons across
    states and models do not depend on the state's scale."""
    from .. import analysis

    with analysis_errors():
        model = load_model(model_path, vocab_path, trusted, nonlinearity, code_path)
        stats = analysis.state_stats_for_model(model, text, state=state, layer=layer)
        _ = stats.whitening  # a singular covariance is an error now, not at use
    click.echo(f"{stats.n_tokens} tokens, {state} state of layer {stats.layer}, size "
               f"{stats.covariance.shape[0]}")
    with writing(out, "--out"), analysis_errors():
        note(f"wrote {stats.save(out)}")


COMMANDS = [compare, state_stats]
