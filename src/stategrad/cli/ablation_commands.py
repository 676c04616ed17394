"""``stategrad ablation``, ``ablation-merge`` and ``ablation-inspect``: context ablation
(and the context-length curve) from the command line.  Heavy imports stay inside the
commands so that ``stategrad --help`` stays quick."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click

from ._inputs import failing, reading
from .options import (
    class_options,
    device_option,
    encoding_option,
    interval_options,
    model_options,
    progress_option,
    threads_option,
    tokenization_option,
    vocab_force_option,
)

_REPLACE = ("unk", "random", "mean", "drop")


@click.command("ablation")
@model_options("A stategrad checkpoint, or a word_language_model state dict / module (with --vocab).",
               required=True, must_exist=True)
@click.option("--text", "text_path", type=click.Path(exists=True, dir_okay=False),
              help="Text to analyse, one sentence per line (read as for training); or give "
                   "--tagged.")
@click.option("--max-distance", "-D", type=click.IntRange(min=1),
              help="Distances 1 .. D after the ablated word (d = 1: the next word).")
@class_options
@click.option("--replace", type=click.Choice(_REPLACE), default="unk", show_default=True,
              help="What replaces the word at t: <unk>, a random other word of its class "
                   "(--replace-seed), the mean embedding of the vocabulary, or nothing (drop: "
                   "the word is removed and the later words move up one).")
@click.option("--replace-seed", type=int, default=0, show_default=True,
              help="Seed of --replace random (a position's draw is the same in every slice).")
@click.option("--context-length", is_flag=True,
              help="Instead: the loss of each word seen with only its last k words of "
                   "context (k = 0 .. --max-context; the rest cut), per class of that word.")
@click.option("--max-context", type=click.IntRange(min=0),
              help="Largest context length for --context-length.")
@click.option("--context-order", type=click.Choice(["cut", "shuffle"]), default="cut",
              show_default=True,
              help="--context-length: cut the words beyond the last k (a run from the initial "
                   "state k words back), or keep --max-context words and shuffle those beyond "
                   "the last k (seeded by --replace-seed).")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False),
              help="Ablation result file (HDF5) to write.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False),
              help="Also write the rows {class, distance, count, loss_increase, kl} (with --ci "
                   "their _lower/_upper) as JSON.")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False), help="The same rows as CSV.")
@interval_options
@click.option("--block-size", type=click.IntRange(min=1),
              help="Keep sums per block of this many positions, for --ci.")
@click.option("--sample-every", type=click.IntRange(min=1), help="Use every k-th position.")
@click.option("--slice-start", "--start", "start", type=click.IntRange(min=0), default=0,
              show_default=True, help="First position (slices of a text merge into the whole).")
@click.option("--slice-stop", "--stop", "stop", type=click.IntRange(min=0),
              help="One past the last position.")
@click.option("--batch", type=click.IntRange(min=1), default=256, show_default=True,
              help="Start positions run at once.")
@device_option()
@click.option("--dtype", type=click.Choice(["float32", "float64"]), default="float32",
              show_default=True)
@threads_option()
@click.option("--checkpoint", "checkpoint_path", type=click.Path(dir_okay=False),
              help="Running-state file for resuming a killed run (default: OUT.partial).")
@click.option("--checkpoint-every", type=float, default=300.0, show_default=True,
              help="Seconds between running-state checkpoints.")
@click.option("--no-eos", is_flag=True, help="Do not append <eos> to every line.")
@encoding_option()
@progress_option()
@tokenization_option
@vocab_force_option
def ablation_command(model_path, vocab_path, trusted, nonlinearity, code_path, text_path,
                     max_distance, replace, replace_seed, context_length, max_context,
                     context_order, out_path, json_path, csv_path, ci, level, n_boot, ci_seed,
                     block_size, sample_every, start, stop, batch, device, dtype, threads,
                     checkpoint_path, checkpoint_every, no_eos, encoding, progress, force,
                     tokenization, **class_opts):
    """Context ablation: for every start position t and distance 1 <= d <= D, how much
    the loss at t + d rises, and how far the predicted distribution moves (KL), when the
    word at t is replaced or removed; summed per class of that word.

    \b
    Example:
      stategrad ablation --model run/model.pt --text valid.txt --max-distance 20 \\
          --replace unk --block-size 2000 --out ablation.h5 --json ablation.json --ci jackknife

    The ablated runs start from the exact state before t (see docs for the definitions).
    A killed run resumes from OUT.partial when started again with the same arguments.
    """
    import torch

    from ..ablation import AblationError, compute_ablation, compute_context_length, resolution_note
    from ..analysis import UncertaintyError
    from .class_inputs import ClassOptions, read_inputs

    _check_ablation_options(context_length, max_context, max_distance, start, stop, ci,
                            block_size)
    if threads:
        torch.set_num_threads(threads)
    checkpoint = _checked_outputs(out_path, json_path, csv_path, checkpoint_path)
    # the model and text exactly as `gradients` reads them: same checks, same messages
    lm, tokens, class_set = read_inputs(model_path, vocab_path, trusted, nonlinearity, code_path,
                                        text_path, no_eos, encoding, start, force=force,
                                        tokenization=tokenization,
                                        class_opts=ClassOptions(**class_opts))
    common = dict(classes=class_set, block_size=block_size, sample_every=sample_every,
                  start=start, stop=stop, device=device, dtype=getattr(torch, dtype),
                  batch=batch, checkpoint_path=checkpoint, checkpoint_every=checkpoint_every,
                  # a bar on a terminal, else a line every minute (logs of batch jobs)
                  progress=(True if sys.stderr.isatty() else "log") if progress else False,
                  text_info=_text_info(text_path, class_opts["tagged"], no_eos, encoding,
                                       tokenization or lm.tokenization))
    began = time.perf_counter()
    with failing(AblationError, UncertaintyError):
        if context_length:
            result = compute_context_length(lm, tokens, max_context=max_context,
                                            order=context_order, seed=replace_seed, **common)
        else:
            result = compute_ablation(lm, tokens, max_distance=max_distance, replace=replace,
                                      seed=replace_seed, **common)
        elapsed = time.perf_counter() - began
        saved = _save(result, out_path, checkpoint, model_path, elapsed)
        _write_rows(result, json_path, csv_path, ci, level, n_boot, ci_seed)
    click.echo(_summary(result, elapsed, saved))
    note = resolution_note(result)
    if note:
        click.echo(f"warning: {note}", err=True)


def _check_ablation_options(context_length, max_context, max_distance, start, stop, ci,
                            block_size) -> None:
    """The options' usage errors, found before any file is read."""
    if context_length:
        if max_context is None:
            raise click.UsageError("--context-length needs --max-context")
        if max_distance is not None:
            raise click.UsageError("--max-distance is for ablation, not --context-length")
    elif max_distance is None:
        raise click.UsageError("give --max-distance (or --context-length --max-context C)")
    if stop is not None and stop <= start:
        raise click.BadParameter(f"{stop} is not after --slice-start {start}",
                                 param_hint="--slice-stop/--stop")
    if ci and not block_size:
        raise click.UsageError("--ci needs --block-size (intervals come from the blocks)")


def _checked_outputs(out_path, json_path, csv_path, checkpoint_path) -> Path:
    """The running-state file (default OUT.partial), once every file the run will write
    is known to be writable: a run must not fail at its end for want of a folder."""
    from .gradient_commands import _check_writable

    checkpoint = Path(checkpoint_path) if checkpoint_path else Path(str(out_path) + ".partial")
    for path, what in ((out_path, "the result"), (json_path, "--json"), (csv_path, "--csv"),
                       (checkpoint, "the running state")):
        if path:
            _check_writable(Path(path), what)
    return checkpoint


def _text_info(text_path, tagged, no_eos, encoding, tokenization) -> dict:
    """How the text was read, for the result's metadata."""
    return {"path": str(Path(text_path or tagged).resolve()), "no_eos": no_eos,
            "encoding": encoding, "tokenization": "tagged" if tagged else tokenization}


def _save(result, out_path, checkpoint: Path, model_path, elapsed: float) -> Path:
    """Write the result with how it was made, then remove the running state."""
    from ..ablation import remove_running_state

    result.metadata["run"] = {"command": click.get_current_context().command_path,
                              "seconds": round(elapsed, 3),
                              "model": str(Path(model_path).resolve())}
    saved = result.save(out_path)
    remove_running_state(checkpoint)  # only now: a kill before must leave it to resume
    return saved


def _write_rows(result, json_path, csv_path, ci, level, n_boot, seed) -> None:
    """The --json / --csv rows (with --ci, their intervals)."""
    from ..analysis import ablation_table

    table = ablation_table(result, interval=ci, level=level, n_boot=n_boot, seed=seed)
    if json_path:
        table.to_json(json_path)
    if csv_path:
        table.to_csv(csv_path)


def _summary(result, elapsed: float, saved: Path) -> str:
    n = int(result.counts[:, 0].sum())
    return (f"{n:,} predictions compared ({int(result.counts[0, 0]):,} positions x "
            f"{len(result.axis)} {result.axis_name} values) in {elapsed:.1f} s "
            f"({n / max(elapsed, 1e-9):,.0f}/s) -> {saved}")


@click.command("ablation-merge")
@click.argument("results", nargs=-1, required=True,
                type=click.Path(exists=True, dir_okay=False))
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False))
def ablation_merge_command(results, out_path):
    """Add up ablation results of disjoint parts of a text (slices) into one; results
    that cover a position twice are refused."""
    from ..ablation import AblationError, load_ablation

    if len({Path(p).resolve() for p in results}) < len(results):
        raise click.ClickException("the same file is given twice: its positions would be "
                                   "counted twice")
    merged = None
    with failing(AblationError):
        for path in results:
            with reading(path):
                res = load_ablation(path)
            with failing(AblationError, path=path):
                merged = res if merged is None else merged.merge(res)
        merged.save(out_path)
    click.echo(f"merged {len(results)} ablation results ({int(merged.counts[0, 0]):,} "
               f"positions) -> {out_path}")


@click.command("ablation-inspect")
@click.argument("result_path", metavar="RESULT", type=click.Path(exists=True, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the metadata as JSON.")
def ablation_inspect_command(result_path, as_json):
    """Show what an ablation result holds and how it was made, with its mean loss
    increase per class and distance."""
    from ..ablation import AblationError, load_ablation
    from ..analysis import ablation_table

    with failing(AblationError), reading(result_path):
        res = load_ablation(result_path)
    if as_json:
        click.echo(json.dumps(res.metadata, indent=2, sort_keys=True))
        return
    m = res.metadata
    click.echo(f"{result_path}: {res.mode}, {res.axis_name} {res.axis[0]}..{res.axis[-1]}, "
               f"replacement {m.get('replace')}, {len(res.classes)} classes, dtype {m.get('dtype')}")
    text = m.get("text", {})
    click.echo(f"  text: {text.get('path', '?')} ({text.get('tokens', '?')} tokens)")
    click.echo(f"  model identity: {str(m.get('model_identity'))[:16]}...")
    for entry in m.get("coverage") or []:
        ranges = ", ".join(f"[{a}, {b})" for a, b in entry["ranges"]) or "none"
        click.echo(f"  positions {ranges} (sampling: {entry['sampling'].get('rule')})")
    if m.get("block_size"):
        click.echo(f"  blocks of {m['block_size']} positions")
    click.echo(ablation_table(res).format())


COMMANDS = [ablation_command, ablation_merge_command, ablation_inspect_command]
