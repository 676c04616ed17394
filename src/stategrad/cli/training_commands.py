"""``stategrad train``, ``stategrad eval`` and ``stategrad run`` (the original's command line)."""

from __future__ import annotations

import errno
import signal
import threading
from pathlib import Path

import click

from ..data import CorpusError
from ..legacy import load_config, load_run
from ..lm import ConfigError, ModelError, TrainConfig, read_checkpoint
from ._inputs import load_model, reading
from .options import device_option, model_options, progress_option, threads_option

_ERRORS = (ConfigError, CorpusError, ModelError)


def _fail(exc: Exception, config_file: str | None = None) -> click.ClickException:
    if isinstance(exc, OSError) and exc.filename:  # a read-only folder, a full disk
        return click.ClickException(f"{exc.filename}: {exc.strerror or exc}")
    if isinstance(exc, OSError) and config_file:  # a write that failed without a file name
        hint = " (is the disk full?)" if exc.errno == errno.ENOSPC else ""
        return click.ClickException(f"writing the run of {config_file}: "
                                    f"{exc.strerror or exc}{hint}")
    message = str(exc)
    if isinstance(exc, ConfigError) and config_file and config_file not in message:
        message = f"{config_file}: {message}"
    return click.ClickException(message)


def _ignore_interrupts() -> None:
    """Everything is saved and the process is about to exit: a further Ctrl-C would only
    break the interpreter's shutdown (a traceback from an atexit callback), so ignore it."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def _echo(message: str) -> None:
    # through tqdm so an active progress bar is not torn
    from tqdm import tqdm

    tqdm.write(message, file=click.get_text_stream("stderr"))


# train and run print a line every 60 s without the bar; eval has nothing to report between
_TRAIN_PROGRESS = ("A progress bar; without it, a line on standard error every 60 s while "
                   "training.")


@click.command("train")
@click.argument("config_file", metavar="CONFIG", type=click.Path(dir_okay=False))
@click.option("--resume", is_flag=True, help="Continue from save_path/last.pt.")
@click.option("--overwrite", is_flag=True, help="Start from scratch even if save_path has a checkpoint.")
@click.option("--keep-epochs", is_flag=True,
              help="Also keep every epoch's model as save_path/epoch_<n>.pt "
                   "(output.keep_epoch_checkpoints).")
@device_option(configured=True)
@threads_option()
@progress_option(_TRAIN_PROGRESS)
def train_command(config_file: str, resume: bool, overwrite: bool, keep_epochs: bool,
                  device: str | None, threads: int | None, progress: bool) -> None:
    """Train a word-level language model described by CONFIG (.toml, or the original's .config).

    Writes save_path/last.pt after every epoch (and on Ctrl-C, mid-epoch),
    save_path/best.pt for the best validation perplexity, metrics.csv/.json, vocab.txt
    and a log file.  An interrupted run continues with --resume and gives the same
    result as an uninterrupted one.
    """
    from ..lm import TrainingError, train

    try:
        with reading(config_file):
            config = load_config(config_file)
        if keep_epochs:
            config.output.keep_epoch_checkpoints = True
        summary = train(config, resume=resume, overwrite=overwrite, device=device,
                        threads=threads, progress=progress or "log", echo=_echo)
    except (*_ERRORS, TrainingError, OSError) as exc:
        raise _fail(exc, config_file) from None
    _ignore_interrupts()
    if summary.interrupted:
        click.echo(f"interrupted; continue with: stategrad train {config_file} --resume")
        return
    reason = "early stopping" if summary.stopped_early else "done"
    click.echo(f"{reason}: {summary.epochs_completed} epochs; best valid perplexity "
               f"{summary.best_valid_ppl:.3f} (epoch {summary.best_epoch}); model in "
               f"{summary.best_checkpoint}")


def _config_from_checkpoint(path: Path) -> TrainConfig | None:
    stored = read_checkpoint(path).get("config") or {}
    if not stored:
        return None
    return TrainConfig.from_dict(stored, f"configuration stored in {path}")


@click.command("eval")
@click.argument("config_file", metavar="[CONFIG]", required=False,
                type=click.Path(dir_okay=False))
@model_options("Checkpoint to evaluate (default: save_path/best.pt of CONFIG), or a model from "
               "elsewhere with --vocab.")
@click.option("--checkpoint", "which", type=click.Choice(["best", "last"]), default="best",
              show_default=True, help="Which checkpoint of save_path, without --model.")
@click.option("--split", default="test", show_default=True, metavar="valid|test|PATH",
              help="The configured validation or test text, or any text file.")
@click.option("--batch-size", type=click.IntRange(min=1), default=None,
              help="Default: 1 for test and files (the original's test mode), the training "
                   "batch size for valid.")
@click.option("--num-steps", type=click.IntRange(min=1), default=None,
              help="Default: 1 for test and files, training.num_steps for valid.")
@device_option(configured=True)
@threads_option()
@progress_option("Show a progress bar.")
def eval_command(config_file: str | None, model_path: str | None, vocab_path: str | None,
                 trusted: bool, nonlinearity: str | None, code_path: str | None, which: str, split: str,
                 batch_size: int | None, num_steps: int | None, device: str | None,
                 threads: int | None, progress: bool) -> None:
    """Report the perplexity of a trained model on a text.

    With CONFIG, the model is save_path/best.pt and valid/test are the configured
    files; with --model only, the configuration stored in the checkpoint is used.
    Scored as the original: test mode is batch size 1 and 1 step (every token after
    the first), validation uses the training batch size and num_steps.
    """
    import torch

    from ..data import read_tokens
    from ..lm import (
        TrainingError,
        checkpoint_for,
        data_files,
        evaluate,
        load_trained,
        require_file,
        resolve_device,
        unk_warning,
    )

    if config_file is None and model_path is None:
        raise click.UsageError("give a CONFIG, or a checkpoint with --model")
    try:
        with reading(config_file):
            config = load_config(config_file) if config_file else None
        path = Path(model_path) if model_path else checkpoint_for(config, which)
        # a model from elsewhere (or a factory's) carries no configuration
        foreign = vocab_path is not None or click.get_current_context().meta.get(
            "stategrad.model_factory") is not None
        if config is None and not foreign:
            config = _config_from_checkpoint(path)
        dev = resolve_device(device or (config.training.device if config else "cpu"))
        if threads:
            torch.set_num_threads(threads)
        if split in ("valid", "test"):
            if config is None:
                raise ConfigError(f"{path} carries no configuration: give --split PATH or a CONFIG")
            text = require_file(getattr(data_files(config), split), split)
        else:
            text = Path(split)
            if not text.is_file():
                raise ConfigError(f"--split: {split!r} is neither 'valid', 'test' nor an existing file")
        is_valid = split == "valid"
        bs = batch_size or (config.training.batch_size if is_valid else 1)
        ns = num_steps or (config.training.num_steps if is_valid else 1)
        if foreign:
            model = load_model(str(path), vocab_path, trusted, nonlinearity, code_path)
            model.module.to(dev)
        else:
            model = load_trained(path, dev)
        opts = {"no_eos": config.data.no_eos, "encoding": config.data.encoding} if config else {}
        with reading(text, "--split"):
            tokens = read_tokens(text, model.vocab, **opts)
            warning = unk_warning(tokens, model.vocab)
            if warning:
                click.echo(warning, err=True)
            ppl = evaluate(model, tokens, batch_size=bs, num_steps=ns, device=dev,
                           progress=progress)
    except (*_ERRORS, TrainingError, OSError) as exc:
        raise _fail(exc) from None
    click.echo(f"{split if split in ('valid', 'test') else text} perplexity: {ppl:.3f} "
               f"(model {path}, batch size {bs}, {ns} step{'s' if ns > 1 else ''})")


@click.command("run")
@click.option("--config", "config_file", required=True, type=click.Path(dir_okay=False),
              help="The original's .config file (or a .toml).")
@click.option("--notrain", is_flag=True, help="Do not train: use the model saved in save_path.")
@click.option("--novalid", is_flag=True, help="Skip validation (not allowed when training).")
@click.option("--notest", is_flag=True, help="Skip the test (batch size 1, 1 step).")
@device_option(configured=True)
@threads_option()
@progress_option(_TRAIN_PROGRESS)
def run_command(config_file: str, notrain: bool, novalid: bool, notest: bool,
                device: str | None, threads: int | None, progress: bool) -> None:
    """The original's `main.py --config F [--notrain] [--novalid] [--notest] [--device cpu]`.

    Same keys, same meaning (dropout is a keep probability in a .config file);
    other_test, valid_as_test and save_embedding work as in the original, and
    grad_interm/max_delay/grad_dir compute the state gradients of the validation
    text (all time steps at once) with --notrain --notest.
    """
    from ..legacy import run_legacy
    from ..lm import TrainingError

    try:
        with reading(config_file):
            run = load_run(config_file)
        result = run_legacy(run, do_train=not notrain, do_valid=not novalid, do_test=not notest,
                            device=device, threads=threads, progress=progress or "log",
                            echo=_echo)
    except (*_ERRORS, TrainingError, OSError) as exc:
        raise _fail(exc, config_file) from None
    _ignore_interrupts()
    if result.summary is not None and result.summary.history:
        last = result.summary.history[-1]
        click.echo(f"Epoch: {last.epoch} Valid Perplexity: {last.valid_ppl:.3f}")
    if result.valid_ppl is not None:
        click.echo(f"Valid Perplexity: {result.valid_ppl:.3f}")
    if result.test_ppl is not None:
        click.echo(f"Test Perplexity: {result.test_ppl:.3f}")


COMMANDS = [train_command, eval_command, run_command]
