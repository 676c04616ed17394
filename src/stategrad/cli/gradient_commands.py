"""``stategrad gradients``, ``merge`` and ``inspect``: the engine from the command line."""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ._inputs import reading
from .class_inputs import ClassOptions, read_inputs
from .options import (
    class_options,
    device_option,
    encoding_option,
    model_options,
    progress_option,
    threads_option,
    tokenization_option,
    vocab_force_option,
)

if TYPE_CHECKING:
    import numpy as np

    from ..gradients import EngineOptions

# torch is imported by the commands that compute, not to list --help (see cli/__init__)
_DTYPES = ("float32", "float64")


def _check_writable(path: Path, what: str) -> None:
    """Fail before computing rather than after: create and remove a probe file in the
    folder that ``path`` will be written to (or the nearest one that exists: it would
    be created there)."""
    folder = path.absolute().parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        raise click.ClickException(f"cannot write {what} {path}: {folder} is not a folder")
    try:
        with tempfile.TemporaryFile(dir=folder, prefix=".stategrad-probe-"):
            pass
    except OSError as exc:
        raise click.ClickException(f"cannot write {what} {path}: no file can be created in "
                                   f"{folder} ({exc.strerror or exc})") from exc


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@click.command("gradients")
@model_options("A stategrad checkpoint, or a word_language_model state dict / module (with --vocab).",
               required=True, must_exist=True)
@click.option("--text", "text_path", type=click.Path(exists=True, dir_okay=False),
              help="Text to analyse, one sentence per line (read as for training); or give "
                   "--tagged.")
@click.option("--state", default="cell", show_default=True,
              help="Which state to differentiate: cell or hidden (GRU and RNN have only "
                   "'hidden'); for a --model-factory model one of its state_names.")
@click.option("--layer", type=int, default=-1, show_default=True,
              help="Layer, counted from 0; -1 is the top layer.")
@click.option("--max-delay", "-D", type=click.IntRange(min=1), required=True,
              help="Delays 0 .. D-1 are computed.")
@class_options
@click.option("--semantics", type=click.Choice(["carry", "segment"]), default="carry",
              show_default=True,
              help="carry: exact derivative of the model run over the whole text. segment: the "
                   "original's, segments of --segment-length tokens with constant initial state.")
@click.option("--segment-length", type=click.IntRange(min=1),
              help="Segment length for --semantics segment (default: the model's num_steps).")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False),
              help="Result file (HDF5) to write.")
@click.option("--block-size", type=click.IntRange(min=1),
              help="Also keep sums per block of this many start positions, for confidence "
                   "intervals (file size: number of blocks x the size of the sums).")
@click.option("--sample-every", type=click.IntRange(min=1), help="Use every k-th start position.")
@click.option("--sample-fraction", type=click.FloatRange(0, 1, min_open=True),
              help="Use a random fraction of start positions (see --seed).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of --sample-fraction.")
@click.option("--slice-start", "--start", "start", type=click.IntRange(min=0), default=0,
              show_default=True,
              help="First start position (slices of a text merge into the whole). Under "
                   "torchrun write --slice-start: torchrun takes --start for its --start-method.")
@click.option("--slice-stop", "--stop", "stop", type=click.IntRange(min=0),
              help="One past the last start position.")
@device_option()
@click.option("--dtype", type=click.Choice(_DTYPES), default="float32", show_default=True)
@threads_option()
@click.option("--tf32", is_flag=True,
              help="On CUDA, TF32 matrix products (faster, less exact; the error against "
                   "float64 is measured and printed).")
@click.option("--checkpoint", "checkpoint_path", type=click.Path(dir_okay=False),
              help="Running-state file for resuming a killed run (default: OUT.partial).")
@click.option("--checkpoint-every", type=float, default=300.0, show_default=True,
              help="Seconds between running-state checkpoints.")
@click.option("--raw", "raw_path", type=click.Path(dir_okay=False),
              help="Also write individual matrices of --raw-positions x --raw-delays to this HDF5 file.")
@click.option("--raw-positions", default="0:100", show_default=True,
              help="Start positions for --raw / --export-original: N, A:B, A:B:STEP, lists, or 'all'.")
@click.option("--raw-delays", default="all", show_default=True,
              help="Delays for --raw / --export-original, same syntax.")
@click.option("--export-original", "export_dir", type=click.Path(file_okay=False),
              help="Write the chosen matrices in the original's layout, "
                   "DIR/timestep_all/delay_<d>/<n>.npy with mapping.txt and all.npz: give DIR "
                   "to the original's avg_gradient_matrix.py / avg_gradient_matrix_pos.py, "
                   "DIR/timestep_all/delay_<d> to np2npz.py.  DIR must hold no timestep_* "
                   "folder yet.")
@click.option("--no-eos", is_flag=True, help="Do not append <eos> to every line.")
@tokenization_option
@encoding_option()
@progress_option()
@vocab_force_option
def gradients_command(model_path, vocab_path, trusted, nonlinearity, code_path, text_path, state,
                      layer, max_delay, semantics, segment_length, out_path, block_size,
                      sample_every, sample_fraction, seed, start, stop, device, dtype, threads,
                      tf32, checkpoint_path, checkpoint_every, raw_path, raw_positions, raw_delays,
                      export_dir, no_eos, tokenization, encoding, progress, force, **class_opts):
    """Compute state gradients G(t, d) = d s_(t+d) / d x_t for every position t and delay
    d < D of a text, in one streaming pass, and save their sums and counts per delay and
    word class.

    \b
    Example:
      stategrad gradients --model run/model.pt --text valid.txt --state cell \\
          --max-delay 200 --classes ptb --pos-map words+pos.txt --out grads.h5

    A killed run resumes from OUT.partial when started again with the same arguments
    (a damaged one is renamed to OUT.partial.damaged and the run starts afresh).
    Under torchrun the text is split across the workers (see docs/distributed.md).
    """
    import torch

    from ..gradients import EngineError, ResultError, StateGradientEngine

    if sample_every and sample_fraction:
        raise click.UsageError("give --sample-every or --sample-fraction, not both")
    if stop is not None and stop <= start:
        raise click.BadParameter(f"{stop} is not after --slice-start {start}",
                                 param_hint="--slice-stop/--stop")
    if threads:
        torch.set_num_threads(threads)
    checkpoint = Path(checkpoint_path) if checkpoint_path else Path(str(out_path) + ".partial")
    _check_writable(Path(out_path), "the result")
    _check_writable(checkpoint, "the running state")
    lm, tokens, class_set = read_inputs(model_path, vocab_path, trusted, nonlinearity, code_path,
                                        text_path, no_eos, encoding, start, force, tokenization,
                                        ClassOptions(**class_opts))
    text_path = text_path or class_opts["tagged"]
    options = engine_options(lm, max_delay=max_delay, state=state, layer=layer,
                             semantics=semantics, segment_length=segment_length, device=device,
                             dtype=dtype, block_size=block_size, sample_every=sample_every,
                             sample_fraction=sample_fraction, seed=seed)
    text_info, run_info, model_info = _provenance(lm, model_path, text_path, no_eos, encoding)
    text_info["tokenization"] = "tagged" if class_opts["tagged"] else tokenization or lm.tokenization
    from ..comm import is_distributed_launch

    if is_distributed_launch() or tf32:
        if raw_path or export_dir:
            raise click.UsageError("--raw and --export-original run in a single process only")
        _run_distributed(lm, tokens, options, class_set, out_path=out_path, start=start, stop=stop,
                         progress=progress, text_info=text_info, run_info=run_info, tf32=tf32,
                         checkpoint_every=checkpoint_every, model_info=model_info)
        return
    try:
        engine = StateGradientEngine(lm, tokens, options, class_set)
    except EngineError as exc:
        raise click.ClickException(str(exc)) from exc
    raw = _RawOutput.open(engine, options, tokens, model_path, text_info, raw_path, export_dir,
                          raw_positions, raw_delays)
    try:
        result, elapsed = _run_single(engine, start, stop, progress, raw.writer, checkpoint,
                                      checkpoint_every, text_info)
        run_info["seconds"] = round(elapsed, 3)
        result.metadata["run"] = run_info
        result.metadata.update(model_info)
        try:
            saved = result.save(out_path)
        except ResultError as exc:
            raise click.ClickException(str(exc)) from exc
        # Only now: a kill before the result is in place must leave the running state to resume.
        engine.remove_running_state(checkpoint)
        pairs = int(result.counts[:, 0].sum())
        click.echo(f"{pairs:,} matrices ({result.counts[0, 0]:,} positions x delays < {max_delay}) "
                   f"in {elapsed:.1f} s ({pairs / max(elapsed, 1e-9):,.0f}/s) -> {saved}")
        raw.finish(tokens, lm.vocab)
    finally:
        raw.cleanup()


def engine_options(lm, *, max_delay: int, state: str, layer: int, semantics: str,
                   segment_length: int | None, device: str, dtype: str,
                   block_size: int | None = None, sample_every: int | None = None,
                   sample_fraction: float | None = None, seed: int = 0) -> EngineOptions:
    """The EngineOptions of the command line's options, for the single-process and the
    torchrun run alike.  --semantics segment without --segment-length takes the model's
    num_steps."""
    import torch

    from ..gradients import EngineOptions

    if semantics == "segment" and segment_length is None:
        # Checkpoints trained here keep it under [training]; the original's flat configs at the top.
        segment_length = (lm.config.get("training", {}).get("num_steps")
                          or lm.config.get("num_steps"))
        if not segment_length:
            raise click.UsageError("--semantics segment needs --segment-length (the model "
                                   "does not record its num_steps)")
    return EngineOptions(max_delay=max_delay, state=state, layer=layer, semantics=semantics,
                         segment_length=segment_length, device=device, dtype=getattr(torch, dtype),
                         block_size=block_size, sample_every=sample_every,
                         sample_fraction=sample_fraction, seed=seed)


def _provenance(lm, model_path, text_path, no_eos, encoding) -> tuple[dict, dict, dict]:
    """What the result records of how it was made: the text, the command, the model."""
    import torch

    text_info = {"path": str(Path(text_path).resolve()), "file_sha256": _file_sha256(Path(text_path)),
                 "no_eos": no_eos, "encoding": encoding}
    ctx = click.get_current_context()
    run_info = {"command": ctx.command_path, "arguments": dict(ctx.params),
                "threads": torch.get_num_threads()}
    spec = getattr(lm.module, "spec", None)
    if spec is None:  # a model of the recurrent protocol (--model-factory)
        model_info = {"model": {"factory": str(model_path), "class": type(lm.module).__name__,
                                "cell": str(getattr(lm.module, "cell_name", "")),
                                "layers": int(lm.module.num_layers)}}
        return text_info, run_info, model_info
    model_info = {"model": {"path": str(Path(model_path).resolve()), "cell": spec.cell,
                            "hidden_size": spec.hidden_size,
                            "embedding_size": spec.embedding_size,
                            "layers": spec.num_layers}}
    return text_info, run_info, model_info


def _run_distributed(lm, tokens, options, class_set, *, tf32: bool, model_info: dict, **run):
    """Under torchrun (or for --tf32): the sliced run, and with --tf32 the precision check."""
    from ..comm import DistributedError
    from ..gradients import (
        EngineError,
        ResultError,
        compute_state_gradients_distributed,
        precision_error,
    )

    try:
        compute_state_gradients_distributed(lm, tokens, options, class_set, tf32=tf32,
                                            extra_metadata=model_info, **run)
        if tf32 and int(os.environ.get("RANK", "0")) == 0:
            err = precision_error(lm, tokens, options, class_set, tf32=True)
            click.echo(f"TF32 matmuls: error against float64 {err}", err=True)
    except (EngineError, ResultError, DistributedError) as exc:
        raise click.ClickException(str(exc)) from exc


def _run_single(engine, start, stop, progress, writer, checkpoint: Path, checkpoint_every,
                text_info):
    """The engine's pass in this process: (result, seconds).  A failure or Ctrl-C drops the
    raw file being written; Ctrl-C leaves the running state to resume from."""
    import torch

    from ..gradients import EngineError

    if checkpoint.is_file():
        click.echo(f"resuming from {checkpoint}", err=True)
    began = time.perf_counter()
    try:
        with torch.no_grad():
            result = engine.run(start, stop, progress=progress or "log", on_pairs=writer,
                                checkpoint_path=checkpoint, checkpoint_every=checkpoint_every,
                                text_info=text_info, keep_checkpoint=True)
    except EngineError as exc:
        if writer is not None:
            writer.abort()
        raise click.ClickException(str(exc)) from exc
    except KeyboardInterrupt:
        if writer is not None:
            writer.abort()
        click.echo(f"\ninterrupted; the last running-state checkpoint is {checkpoint} "
                   "(rerun the same command to resume)", err=True)
        sys.exit(130)
    return result, time.perf_counter() - began


class _RawOutput:
    """The individual matrices of --raw and --export-original: the raw HDF5 file written
    during the pass (to a temporary folder when only the original's layout is wanted),
    and after it the original's layout made from that file."""

    def __init__(self, writer=None, raw_path=None, export_dir=None, tmpdir=None):
        self.writer, self.raw_path, self.export_dir, self.tmpdir = writer, raw_path, export_dir, tmpdir

    @classmethod
    def open(cls, engine, options, tokens, model_path, text_info, raw_path, export_dir, raw_positions,
             raw_delays) -> _RawOutput:
        from ..gradients import RawPairWriter

        if not (raw_path or export_dir):
            return cls()
        if export_dir:
            from ..legacy import LegacyError, check_export_target

            try:
                check_export_target(export_dir)
            except LegacyError as exc:
                raise click.ClickException(str(exc)) from None
        positions = _index_spec(raw_positions, len(tokens), "--raw-positions")
        delays = _index_spec(raw_delays, options.max_delay, "--raw-delays")
        tmpdir = None
        target = raw_path
        if target is None:
            tmpdir = tempfile.TemporaryDirectory()
            target = Path(tmpdir.name) / "raw.h5"
        writer = RawPairWriter(target, positions, delays, engine.H, engine.E,
                               metadata={"model": str(model_path), "text": text_info,
                                         "state": options.state, "layer": engine.layer,
                                         "semantics": options.semantics})
        return cls(writer, raw_path, export_dir, tmpdir)

    def finish(self, tokens, vocab) -> None:
        if self.writer is None:
            return
        self.writer.close()
        click.echo(f"{self.writer.count:,} individual matrices"
                   + (f" -> {self.raw_path}" if self.raw_path else ""))
        if self.export_dir:
            from ..gradients import iter_raw_pairs
            from ..legacy import EXPORT_TIME_STEP, export_original_layout, np2npz

            summary = export_original_layout(self.export_dir, iter_raw_pairs(self.writer.path),
                                             tokens, vocab, time_step=EXPORT_TIME_STEP)
            for folder in sorted(summary.out_dir.glob("delay_*")):
                np2npz(folder)
            click.echo(f"original layout -> {summary.out_dir}/delay_<d>/ ({summary.matrices:,} "
                       f"matrices): give {self.export_dir} to the original's avg_gradient_matrix.py")

    def cleanup(self) -> None:
        if self.tmpdir is not None:
            self.tmpdir.cleanup()


def _index_spec(spec: str, n: int, option: str) -> np.ndarray:
    from ..gradients import RawError, parse_index_spec

    try:
        chosen = parse_index_spec(spec, n)
    except RawError as exc:
        raise click.BadParameter(str(exc), param_hint=option) from exc
    if len(chosen) == 0:
        # an empty selection would silently write no matrix at all
        raise click.BadParameter(f"{spec!r} selects nothing (0..{n - 1})", param_hint=option)
    return chosen


@click.command("merge")
@click.argument("results", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False))
@click.option("--allow-unknown-coverage", is_flag=True,
              help="Merge results written before stategrad recorded which start positions a "
                   "result covers (an overlap, counted twice, then cannot be detected).")
def merge_command(results, out_path, allow_unknown_coverage):
    """Add up results of disjoint parts of a text (or of several texts) into one.
    Results that cover a start position of the same text twice are refused."""
    from ..gradients import ResultError, load_result

    seen: dict[Path, str] = {}
    for path in results:
        key = Path(path).resolve()
        if key in seen:
            raise click.ClickException(f"{seen[key]} and {path} are the same file: its start "
                                       "positions would be counted twice")
        seen[key] = path
    earlier: list[tuple[str, list | None]] = []  # (file, coverage) of the inputs so far
    merged = None
    try:
        for path in results:
            with reading(path):
                res = load_result(path)
            _check_coverage(path, res.metadata.get("coverage"), earlier, allow_unknown_coverage)
            earlier.append((path, res.metadata.get("coverage")))
            try:
                merged = res if merged is None else merged.merge(
                    res, allow_unknown_coverage=allow_unknown_coverage)
            except ResultError as exc:
                raise ResultError(f"{path}: {exc}") from exc
        merged.save(out_path)
    except ResultError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"merged {len(results)} results ({int(merged.counts[0, 0]):,} positions) -> {out_path}")


def _check_coverage(path: str, coverage: list | None, earlier: list[tuple[str, list | None]],
                    allow_unknown: bool) -> None:
    """Refuse a result that overlaps an earlier input, naming both files, and one without a
    coverage record unless allowed (then warn: the merge may count positions twice)."""
    from ..gradients import coverage_overlaps

    if coverage is None:
        if not allow_unknown:
            raise click.ClickException(
                f"{path}: no coverage record (written before stategrad recorded which start "
                "positions a result covers), so an overlap cannot be ruled out; "
                "--allow-unknown-coverage merges it anyway")
        click.echo(f"WARNING: {path} records no coverage: if it overlaps another input, those "
                   "start positions are counted twice and the merged result is wrong; the output "
                   "is marked as of unknown coverage", err=True)
        return
    for other, cov in earlier:
        overlaps = coverage_overlaps(cov or [], coverage)
        if overlaps:
            raise click.ClickException(f"{other} and {path} overlap: " + "; ".join(overlaps))


COMMANDS = [gradients_command, merge_command]
