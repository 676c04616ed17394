"""Training a word-level RNN language model, the original's way: :func:`train` and
the summary it returns.

The pieces live beside it: the schedule, optimizers, early stopping and sampled softmax
in :mod:`.optim`; one epoch and evaluation in :mod:`.loop`; the device, vocabulary,
splits and fresh model in :mod:`.prepare`; the run folder and its commit point in
:mod:`.rundir`.

Checkpoints (``save_path/last.pt`` after every epoch and on interruption,
``save_path/best.pt`` for the best validation perplexity) hold everything needed
to resume bit-for-bit on CPU: optimizer state, RNG state, the position inside the
epoch with its recurrent state and partial sums, early-stopping state and history.
``last.pt`` is the run's one commit point: ``best.pt``, ``epoch_<n>.pt``, the metrics
files and the end of the log are derived from it, and rebuilt from it on ``--resume``.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import signal
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from ..data import Vocabulary, num_batches
from .config import ConfigError, TrainConfig, data_files, require_file
from .errors import NonFiniteLossError, TrainingError
from .loop import EpochProgress, _LineProgress, _rows_tensor, evaluate, train_epoch
from .models import RNNLM, LanguageModel, module_from_checkpoint, read_checkpoint, save_checkpoint
from .optim import EarlyStopping, LogUniformSampler, learning_rate, make_optimizer
from .prepare import (
    _require_words,
    build_model,
    build_vocabulary,
    read_split,
    resolve_device,
    vocabulary_mismatch,
)
from .rundir import (
    BEST,
    LAST,
    EpochMetrics,
    _check_best,
    _kill_point,
    _log_size,
    _log_to,
    _make_folder,
    _remove_stale_temps,
    _rewind_log,
    _rng_state,
    _save_vocab,
    _set_rng_state,
    _settle,
    _state_from_tensors,
    _state_tensors,
    _write_metrics,
)

log = logging.getLogger("stategrad.training")


@dataclass
class TrainingSummary:
    save_path: Path
    history: list[EpochMetrics]
    epochs_completed: int
    best_valid_ppl: float | None
    best_epoch: int | None
    stopped_early: bool = False
    interrupted: bool = False
    last_checkpoint: Path | None = None
    best_checkpoint: Path | None = None

    @property
    def final_valid_ppl(self) -> float | None:
        return self.history[-1].valid_ppl if self.history else None


class _Interrupt:
    """First Ctrl-C: finish the current batch, save, stop.  Second: abort at once."""

    def __init__(self) -> None:
        self.requested = False
        self._previous = None

    def __enter__(self) -> _Interrupt:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        log.warning("interrupt: stopping after this batch and saving a resumable checkpoint "
                    "(Ctrl-C again to abort without saving)")

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def train(
    config: TrainConfig,
    *,
    resume: bool = False,
    overwrite: bool = False,
    device: str | None = None,
    threads: int | None = None,
    progress: bool | str = True,
    should_stop: Callable[[], bool] | None = None,
    echo: Callable[[str], None] | None = None,
) -> TrainingSummary:
    """Train the model ``config`` describes; checkpoints go to ``config.output.save_path``.

    ``resume`` continues from ``save_path/last.pt`` (after an epoch or an interruption);
    the result is the same as that of an uninterrupted run.  Without ``resume`` an
    existing checkpoint is an error unless ``overwrite``.  ``should_stop`` is polled
    between batches (as Ctrl-C is): when true, a resumable checkpoint is written and
    the summary says ``interrupted``.  ``echo`` receives the progress messages.
    ``progress``: True draws a progress bar per epoch; ``"log"`` writes a line (batch,
    perplexity, tokens/s) every 60 s instead, for logs and batch jobs; False neither.

    Started by ``torchrun`` (``WORLD_SIZE`` > 1), every rank trains its own rows of the
    batch stream with DistributedDataParallel; rank 0 alone writes checkpoints, logs
    and metrics (see ``docs/distributed.md``).
    """
    save_path = Path(config.output.save_path)
    log_file = Path(config.output.log_file) if config.output.log_file else save_path / "train.log"
    made = [p for p in (save_path, log_file) if not p.exists()]
    try:
        return _train(config, resume=resume, overwrite=overwrite, device=device,
                      threads=threads, progress=progress, should_stop=should_stop, echo=echo)
    except BaseException:
        # A run that fails before its first commit point (bad data, a diverging first
        # epoch, a full disk) leaves nothing it made behind: no folder holding only a log.
        if not (save_path / LAST).exists() and not _is_worker():
            for path in made:
                with contextlib.suppress(OSError):  # the original error is the one to show
                    if path.is_dir():
                        shutil.rmtree(path)
                    elif path.exists():
                        path.unlink()
        raise


def _is_worker() -> bool:
    """A torchrun rank other than 0 (rank 0 alone writes, so it alone cleans up)."""
    return int(os.environ.get("RANK", "0")) != 0


def _train(
    config: TrainConfig,
    *,
    resume: bool,
    overwrite: bool,
    device: str | None,
    threads: int | None,
    progress: bool | str,
    should_stop: Callable[[], bool] | None,
    echo: Callable[[str], None] | None,
) -> TrainingSummary:
    t = config.training
    dev = resolve_device(device or t.device)
    # deferred import: torch.distributed is only touched when launched by torchrun
    from .ddp import TrainingSync

    sync = TrainingSync.from_environment(str(dev))
    main = sync is None or sync.is_main
    if sync is not None:
        dev = torch.device(sync.device(str(dev)))
    n_threads = threads if threads is not None else t.threads
    if n_threads:
        torch.set_num_threads(n_threads)
    save_path = Path(config.output.save_path)
    last_path, best_path = save_path / LAST, save_path / BEST
    if last_path.exists() and not resume and not overwrite:
        raise TrainingError(f"{last_path} already exists: pass --resume to continue that run, "
                            "--overwrite to start again from scratch, or choose another "
                            "output.save_path")
    if resume and not last_path.exists():
        raise TrainingError(f"cannot resume: no checkpoint {last_path}")
    files = data_files(config)
    train_file = require_file(files.train, "train")
    valid_file = require_file(files.valid, "valid")
    log_file = Path(config.output.log_file) if config.output.log_file else save_path / "train.log"
    # the data first: a text or vocabulary that cannot be used leaves nothing on disk
    vocab = build_vocabulary(config)
    train_tokens = read_split(config, train_file, vocab)
    _require_words(train_tokens, vocab, train_file)
    valid_tokens = read_split(config, valid_file, vocab)
    _make_folder(save_path, "output.save_path")
    _make_folder(log_file.parent, "output.log_file")
    payload = read_checkpoint(last_path) if resume else None
    if payload is not None and main:
        _remove_stale_temps(save_path)
        _rewind_log(log_file, (payload.get("training") or {}).get("log_size"))

    def say(message: str) -> None:
        if not main:
            return
        log.info(message)
        if echo is not None:
            echo(message)

    def write_metrics() -> None:
        if main:
            _write_metrics(save_path, history)

    with _log_to(log_file) if main else contextlib.nullcontext():
        if main:
            _save_vocab(vocab, save_path / "vocab.txt")
        if config.data.save_vocab and main:
            Path(config.data.save_vocab).parent.mkdir(parents=True, exist_ok=True)
            _save_vocab(vocab, Path(config.data.save_vocab))
        sizes = (f"vocabulary {len(vocab)} words; train {len(train_tokens):,} tokens "
                 f"({train_file}), valid {len(valid_tokens):,} tokens ({valid_file})")
        if not resume:
            say(sizes)
        elif main and echo is not None:
            echo(sizes)  # not logged: a resumed log goes on as if never interrupted

        torch.manual_seed(t.seed)
        module = build_model(config, vocab).to(dev)
        if sync is not None:
            sync.seed_ranks(t.seed)
        params = [p for p in module.parameters() if p.requires_grad]
        optimizer = make_optimizer(config, params)
        sampler = LogUniformSampler(len(vocab), t.num_sampled) if t.softmax == "sampled" else None

        history: list[EpochMetrics] = []
        start_epoch = 0
        epoch_progress = EpochProgress()
        best_ppl: float | None = None
        best_epoch: int | None = None
        early = EarlyStopping(t.early_stop) if t.early_stop else None
        if resume:
            start_epoch, epoch_progress, best_ppl, best_epoch, history, early = _restore(
                last_path, payload, config, vocab, module, optimizer, dev, early, sync)
            tr = payload.get("training") or {}
            _check_best(save_path, tr)  # on every rank, so that all of them refuse alike
            if main:
                _settle(save_path, tr, config.output.keep_epoch_checkpoints)
            if start_epoch >= t.max_max_epoch:
                say(f"{last_path} has finished {start_epoch} epochs, training.max_max_epoch is "
                    f"{t.max_max_epoch}: nothing to do (raise max_max_epoch to train longer)")
            else:
                say(f"resuming from {last_path}: epoch {start_epoch + 1}, batch "
                    f"{epoch_progress.next_batch + 1}")
        else:
            say(f"model: {module.spec}")

        train_rows = _rows_tensor(train_tokens, t.batch_size, dev)
        ddp = None
        if sync is not None:
            train_rows = sync.local_rows(train_rows)
            ddp = sync.wrap(module)
        n_batches = num_batches(train_rows.shape[0], t.num_steps)
        if n_batches == 0:
            raise ConfigError(f"train file {train_file} has {len(train_tokens)} tokens: too few "
                              f"for batch_size={t.batch_size} and num_steps={t.num_steps}")
        valid_row = len(valid_tokens) // t.batch_size
        if num_batches(valid_row, t.num_steps) == 0:
            raise ConfigError(f"valid file {valid_file} has {len(valid_tokens)} tokens: too few "
                              f"for batch_size={t.batch_size} and num_steps={t.num_steps} (need "
                              f"at least {2 * t.num_steps * t.batch_size})")
        stopped_early = interrupted = False

        def checkpoint(path: Path, epoch: int, prog: EpochProgress) -> None:
            state = _state_tensors(prog.state) if prog.next_batch else []
            extra: dict[str, Any] = {}
            if sync is not None:  # collective: every rank comes here at the same point
                state = sync.full_state(prog.state) if prog.next_batch else []
                extra["rng_ranks"] = sync.gather(_rng_state(dev))
                if not sync.is_main:
                    sync.barrier()  # the file exists once any rank goes on
                    return
            save_checkpoint(path, module, vocab, config.to_dict(), extra | {
                "epoch": epoch,
                "batch": prog.next_batch,
                "epoch_cost": prog.cost,
                "epoch_steps": prog.steps,
                "epoch_tokens": prog.tokens,
                "epoch_seconds": prog.seconds,
                "recurrent_state": state,
                "optimizer": optimizer.state_dict(),
                "rng": _rng_state(dev),
                "history": [asdict(m) for m in history],
                "best_valid_ppl": best_ppl,
                "best_epoch": best_epoch,
                "early_stopping": early.state() if early else None,
                "learning_rate": optimizer.param_groups[0]["lr"],
                "log_size": _log_size(log_file),
            })
            if sync is not None:
                sync.barrier()

        def validate() -> float:
            try:
                return evaluate(module, valid_tokens, batch_size=t.batch_size,
                                num_steps=t.num_steps, device=dev)
            except TrainingError:  # non-finite parameters: the stop below says what to do
                return math.nan

        def diverged(reason: str) -> TrainingError:
            """The documented stop on a non-finite loss: last.pt stays the last good epoch."""
            write_metrics()
            kept = (f"the last good checkpoint is {last_path}" if last_path.exists()
                    else "no checkpoint was written (it failed in the first epoch)")
            return TrainingError(
                f"{reason}. Training stopped; {kept}. Lower training.learning_rate, set or "
                "lower training.max_grad_norm (gradient clipping), or check the data; "
                "then start again, or continue from the checkpoint with --resume "
                "(the new settings apply).")

        def commit(epoch: int, prog: EpochProgress) -> None:
            _kill_point(log_file.name)  # the epoch's line is logged, last.pt not yet written
            checkpoint(last_path, epoch, prog)
            _kill_point(last_path.name)
            if main:
                _settle(save_path, {"epoch": epoch, "batch": prog.next_batch,
                                    "best_epoch": best_epoch,
                                    "history": [asdict(m) for m in history]},
                        config.output.keep_epoch_checkpoints)

        with _Interrupt() as interrupt:
            stop = (lambda: interrupt.requested or should_stop()) if should_stop else \
                (lambda: interrupt.requested)
            for epoch in range(start_epoch, t.max_max_epoch):
                lr = learning_rate(config, epoch)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                bar = None
                if progress == "log" and main:
                    bar = _LineProgress(n_batches, epoch_progress.next_batch,
                                        f"epoch {epoch + 1}/{t.max_max_epoch}", say)
                elif progress and main:
                    from tqdm import tqdm

                    bar = tqdm(total=n_batches, initial=epoch_progress.next_batch,
                               desc=f"epoch {epoch + 1}/{t.max_max_epoch}", unit="batch",
                               dynamic_ncols=True, leave=False)
                try:
                    epoch_progress = train_epoch(
                        module, train_rows, optimizer, num_steps=t.num_steps,
                        max_grad_norm=t.max_grad_norm, sampler=sampler,
                        progress=epoch_progress, should_stop=stop, epoch=epoch, bar=bar,
                        sync=sync, ddp=ddp)
                except NonFiniteLossError as exc:
                    raise diverged(str(exc)) from None
                finally:
                    if bar is not None:
                        bar.close()
                if epoch_progress.next_batch < n_batches:
                    commit(epoch, epoch_progress)
                    say(f"interrupted in epoch {epoch + 1} after batch {epoch_progress.next_batch}"
                        f"/{n_batches}; saved {last_path}; continue with --resume")
                    interrupted = True
                    break
                train_ppl = epoch_progress.perplexity
                tok_s = epoch_progress.tokens / max(epoch_progress.seconds, 1e-9)
                valid_ppl = validate() if main else None
                if sync is not None:  # one evaluation, so every rank decides alike
                    valid_ppl = sync.broadcast(valid_ppl)
                if not (math.isfinite(train_ppl) and math.isfinite(valid_ppl)):
                    # a loss too large for exp() is as useless as an infinite one
                    raise diverged(f"the perplexity became infinite at epoch {epoch + 1} (train "
                                   f"{train_ppl}, valid {valid_ppl}; learning rate {lr:g})")
                is_best = best_ppl is None or valid_ppl < best_ppl
                history.append(EpochMetrics(epoch + 1, lr, train_ppl, valid_ppl, tok_s,
                                            epoch_progress.seconds, is_best))
                say(f"epoch {epoch + 1}: learning rate {lr:.6g}, train perplexity {train_ppl:.3f}, "
                    f"valid perplexity {valid_ppl:.3f}, {tok_s:,.0f} tokens/s")
                epoch_progress = EpochProgress()
                if early is not None and early.update(epoch, valid_ppl):
                    # as the original: the epoch that triggers the stop is not saved
                    stopped_early = True
                    say(f"early stopping: validation perplexity failed to improve "
                        f"{early.failures} times (early_stop {early.patience})")
                    write_metrics()
                    break
                if is_best:
                    best_ppl, best_epoch = valid_ppl, epoch + 1
                commit(epoch + 1, epoch_progress)
                if stop():
                    interrupted = epoch + 1 < t.max_max_epoch
                    if interrupted:
                        say(f"interrupted after epoch {epoch + 1}; continue with --resume")
                    break

    if sync is not None:
        sync.close()
    completed = history[-1].epoch if history else start_epoch
    return TrainingSummary(save_path=save_path, history=history, epochs_completed=completed,
                           best_valid_ppl=best_ppl, best_epoch=best_epoch,
                           stopped_early=stopped_early, interrupted=interrupted,
                           last_checkpoint=last_path if last_path.exists() else None,
                           best_checkpoint=best_path if best_path.exists() else None)


def _restore(path: Path, payload: dict[str, Any], config: TrainConfig, vocab: Vocabulary,
             module: RNNLM, optimizer: torch.optim.Optimizer, device: torch.device,
             early: EarlyStopping | None, sync: Any = None):
    ck_module, ck_vocab = module_from_checkpoint(payload)
    problem = vocabulary_mismatch(vocab, ck_vocab)
    if problem:
        raise TrainingError(f"cannot resume from {path}: its vocabulary differs from the one "
                            f"the configuration gives ({problem}). Did the training file, "
                            "data.vocab_size or data.vocab_file change?")
    if ck_module.spec != module.spec:
        diffs = [f"{k}: {v} in the checkpoint, {getattr(module.spec, k)} now"
                 for k, v in ck_module.spec.to_dict().items() if getattr(module.spec, k) != v]
        raise TrainingError(f"cannot resume from {path}: the model differs from the "
                            f"configuration ({'; '.join(diffs)})")
    module.load_state_dict(ck_module.state_dict())
    tr = payload.get("training") or {}
    try:
        optimizer.load_state_dict(tr["optimizer"])
    except (KeyError, ValueError) as exc:
        raise TrainingError(f"cannot resume from {path}: its optimizer state does not fit "
                            f"training.optimizer={config.training.optimizer!r} ({exc})") from None
    _set_rng_state(tr["rng"], device)
    tensors = list(tr.get("recurrent_state", []))
    if sync is not None:
        rng_ranks = tr.get("rng_ranks") or []
        if len(rng_ranks) == sync.world_size:
            _set_rng_state(rng_ranks[sync.rank], device)
        else:  # another number of ranks than the checkpoint's: fresh per-rank streams
            sync.seed_ranks(config.training.seed + int(tr["epoch"]) + int(tr.get("batch", 0)))
        tensors = sync.local_state(tensors) if tensors else tensors
    prog = EpochProgress(next_batch=int(tr.get("batch", 0)), cost=float(tr.get("epoch_cost", 0.0)),
                         steps=int(tr.get("epoch_steps", 0)), tokens=int(tr.get("epoch_tokens", 0)),
                         seconds=float(tr.get("epoch_seconds", 0.0)),
                         state=_state_from_tensors(tensors, module.spec.cell, device))
    history = [EpochMetrics(**m) for m in tr.get("history", [])]
    if tr.get("early_stopping") and early is not None:
        early = EarlyStopping.from_state(tr["early_stopping"])
        early.patience = config.training.early_stop or early.patience
    return (int(tr["epoch"]), prog, tr.get("best_valid_ppl"), tr.get("best_epoch"), history, early)


# --- using a trained model ----------------------------------------------------------------

def checkpoint_for(config: TrainConfig, which: str = "best") -> Path:
    """``save_path/best.pt`` (or ``last.pt``), falling back to the other one."""
    save_path = Path(config.output.save_path)
    order = [BEST, LAST] if which == "best" else [LAST, BEST]
    for name in order:
        if (save_path / name).is_file():
            return save_path / name
    raise TrainingError(f"no trained model in {save_path} (expected {order[0]}); "
                        "train it first with `stategrad train`")


def load_trained(path: str | os.PathLike, device: str | torch.device = "cpu") -> LanguageModel:
    """A checkpoint written by :func:`train`, for evaluation or analysis."""
    payload = read_checkpoint(path)
    module, vocab = module_from_checkpoint(payload)
    module.to(device).eval()
    return LanguageModel(module, vocab, str(path), payload.get("config", {}))
