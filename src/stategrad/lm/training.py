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

from ..data import num_batches
from .checkpoints import module_from_checkpoint, read_checkpoint, save_checkpoint
from .config import ConfigError, TrainConfig, data_files, require_file
from .errors import NonFiniteLossError, TrainingError
from .loop import EpochProgress, _LineProgress, _rows_tensor, evaluate, train_epoch
from .models import LanguageModel
from .optim import EarlyStopping, LogUniformSampler, learning_rate, make_optimizer
from .prepare import (
    _require_words,
    build_model,
    build_vocabulary,
    read_split,
    resolve_device,
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
    _restore,
    _rewind_log,
    _rng_state,
    _settle,
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


def _train(config: TrainConfig, **options: Any) -> TrainingSummary:
    run = _Run(config, **options)
    run.read_data()
    run.open_folder()
    with _log_to(run.log_file) if run.main else contextlib.nullcontext():
        run.save_vocabulary()
        run.build()
        run.start_or_restore()
        run.cut_rows()
        run.train_epochs()
    if run.sync is not None:
        run.sync.close()
    return run.summary()


class _Run:
    """One call of :func:`train`, as named steps over the state they share: what the
    run was given, the data and model it built, and where it stands (epoch, history,
    best epoch, early stopping).  The steps run in the order :func:`_train` calls them;
    each one's writes and RNG draws come in the order the resume guarantee relies on."""

    def __init__(self, config: TrainConfig, *, resume: bool, overwrite: bool,
                 device: str | None, threads: int | None, progress: bool | str,
                 should_stop: Callable[[], bool] | None,
                 echo: Callable[[str], None] | None) -> None:
        self.config, self.t = config, config.training
        self.resume, self.progress = resume, progress
        self.should_stop, self.echo = should_stop, echo
        self._start_process(device, threads)
        self.save_path = Path(config.output.save_path)
        self.last_path, self.best_path = self.save_path / LAST, self.save_path / BEST
        if self.last_path.exists() and not resume and not overwrite:
            raise TrainingError(f"{self.last_path} already exists: pass --resume to continue "
                                "that run, --overwrite to start again from scratch, or choose "
                                "another output.save_path")
        if resume and not self.last_path.exists():
            raise TrainingError(f"cannot resume: no checkpoint {self.last_path}")
        files = data_files(config)
        self.train_file = require_file(files.train, "train")
        self.valid_file = require_file(files.valid, "valid")
        self.log_file = (Path(config.output.log_file) if config.output.log_file
                         else self.save_path / "train.log")
        # where the run stands; start_or_restore() fills these in from last.pt on --resume
        self.history: list[EpochMetrics] = []
        self.start_epoch = 0
        self.epoch_progress = EpochProgress()
        self.best_ppl: float | None = None
        self.best_epoch: int | None = None
        self.early = EarlyStopping(self.t.early_stop) if self.t.early_stop else None
        self.stopped_early = self.interrupted = False

    def _start_process(self, device: str | None, threads: int | None) -> None:
        """The device, and under torchrun the process group (rank 0 is the main rank)."""
        self.dev = resolve_device(device or self.t.device)
        # deferred import: torch.distributed is only touched when launched by torchrun
        from .ddp import TrainingSync

        self.sync = TrainingSync.from_environment(str(self.dev))
        self.main = self.sync is None or self.sync.is_main
        if self.sync is not None:
            self.dev = torch.device(self.sync.device(str(self.dev)))
        n_threads = threads if threads is not None else self.t.threads
        if n_threads:
            torch.set_num_threads(n_threads)

    def say(self, message: str) -> None:
        if not self.main:
            return
        log.info(message)
        if self.echo is not None:
            self.echo(message)

    def write_metrics(self) -> None:
        if self.main:
            _write_metrics(self.save_path, self.history)

    # --- before training: data, folder, model ---------------------------------------------

    def read_data(self) -> None:
        """The data first: a text or vocabulary that cannot be used leaves nothing on disk."""
        self.vocab = build_vocabulary(self.config)
        self.train_tokens = read_split(self.config, self.train_file, self.vocab)
        _require_words(self.train_tokens, self.vocab, self.train_file)
        self.valid_tokens = read_split(self.config, self.valid_file, self.vocab)

    def open_folder(self) -> None:
        """Make the folders; on --resume read last.pt and undo what came after it."""
        _make_folder(self.save_path, "output.save_path")
        _make_folder(self.log_file.parent, "output.log_file")
        self.payload = read_checkpoint(self.last_path) if self.resume else None
        if self.payload is not None and self.main:
            _remove_stale_temps(self.save_path)
            _rewind_log(self.log_file, (self.payload.get("training") or {}).get("log_size"))

    def save_vocabulary(self) -> None:
        if self.main:
            self.vocab.save(self.save_path / "vocab.txt")
        if self.config.data.save_vocab and self.main:
            Path(self.config.data.save_vocab).parent.mkdir(parents=True, exist_ok=True)
            self.vocab.save(self.config.data.save_vocab)
        sizes = (f"vocabulary {len(self.vocab)} words; train {len(self.train_tokens):,} tokens "
                 f"({self.train_file}), valid {len(self.valid_tokens):,} tokens "
                 f"({self.valid_file})")
        if not self.resume:
            self.say(sizes)
        elif self.main and self.echo is not None:
            self.echo(sizes)  # not logged: a resumed log goes on as if never interrupted

    def build(self) -> None:
        """A freshly seeded model, its optimizer and the sampled-softmax sampler."""
        t = self.t
        torch.manual_seed(t.seed)
        self.module = build_model(self.config, self.vocab).to(self.dev)
        if self.sync is not None:
            self.sync.seed_ranks(t.seed)
        params = [p for p in self.module.parameters() if p.requires_grad]
        self.optimizer = make_optimizer(self.config, params)
        self.sampler = (LogUniformSampler(len(self.vocab), t.num_sampled)
                        if t.softmax == "sampled" else None)

    def start_or_restore(self) -> None:
        if not self.resume:
            self.say(f"model: {self.module.spec}")
            return
        (self.start_epoch, self.epoch_progress, self.best_ppl, self.best_epoch, self.history,
         self.early) = _restore(self.last_path, self.payload, self.config, self.vocab,
                                self.module, self.optimizer, self.dev, self.early, self.sync)
        tr = self.payload.get("training") or {}
        _check_best(self.save_path, tr)  # on every rank, so that all of them refuse alike
        if self.main:
            _settle(self.save_path, tr, self.config.output.keep_epoch_checkpoints)
        if self.start_epoch >= self.t.max_max_epoch:
            self.say(f"{self.last_path} has finished {self.start_epoch} epochs, "
                     f"training.max_max_epoch is {self.t.max_max_epoch}: nothing to do (raise "
                     "max_max_epoch to train longer)")
        else:
            self.say(f"resuming from {self.last_path}: epoch {self.start_epoch + 1}, batch "
                     f"{self.epoch_progress.next_batch + 1}")

    def cut_rows(self) -> None:
        """The training text as (row_len, batch) ids, this rank's rows under torchrun."""
        t = self.t
        self.train_rows = _rows_tensor(self.train_tokens, t.batch_size, self.dev)
        self.ddp = None
        if self.sync is not None:
            self.train_rows = self.sync.local_rows(self.train_rows)
            self.ddp = self.sync.wrap(self.module)
        self.n_batches = num_batches(self.train_rows.shape[0], t.num_steps)
        if self.n_batches == 0:
            raise ConfigError(f"train file {self.train_file} has {len(self.train_tokens)} "
                              f"tokens: too few for batch_size={t.batch_size} and "
                              f"num_steps={t.num_steps}")
        valid_row = len(self.valid_tokens) // t.batch_size
        if num_batches(valid_row, t.num_steps) == 0:
            raise ConfigError(f"valid file {self.valid_file} has {len(self.valid_tokens)} "
                              f"tokens: too few for batch_size={t.batch_size} and "
                              f"num_steps={t.num_steps} (need at least "
                              f"{2 * t.num_steps * t.batch_size})")

    # --- the epochs -------------------------------------------------------------------------

    def train_epochs(self) -> None:
        with _Interrupt() as interrupt:
            should_stop = self.should_stop
            stop = (lambda: interrupt.requested or should_stop()) if should_stop else \
                (lambda: interrupt.requested)
            for epoch in range(self.start_epoch, self.t.max_max_epoch):
                if self.one_epoch(epoch, stop):
                    break

    def one_epoch(self, epoch: int, stop: Callable[[], bool]) -> bool:
        """Train, validate and commit ``epoch``; True when the run stops after it."""
        lr = learning_rate(self.config, epoch)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.epoch_progress = self.train_batches(epoch, stop)
        if self.epoch_progress.next_batch < self.n_batches:
            self.commit(epoch, self.epoch_progress)
            self.say(f"interrupted in epoch {epoch + 1} after batch "
                     f"{self.epoch_progress.next_batch}/{self.n_batches}; saved "
                     f"{self.last_path}; continue with --resume")
            self.interrupted = True
            return True
        valid_ppl, is_best = self.record_epoch(epoch, lr)
        self.epoch_progress = EpochProgress()
        if self.early is not None and self.early.update(epoch, valid_ppl):
            # as the original: the epoch that triggers the stop is not saved
            self.stopped_early = True
            self.say(f"early stopping: validation perplexity failed to improve "
                     f"{self.early.failures} times (early_stop {self.early.patience})")
            self.write_metrics()
            return True
        if is_best:
            self.best_ppl, self.best_epoch = valid_ppl, epoch + 1
        self.commit(epoch + 1, self.epoch_progress)
        if stop():
            self.interrupted = epoch + 1 < self.t.max_max_epoch
            if self.interrupted:
                self.say(f"interrupted after epoch {epoch + 1}; continue with --resume")
            return True
        return False

    def train_batches(self, epoch: int, stop: Callable[[], bool]) -> EpochProgress:
        """The epoch's batches from where it stands, under a progress bar or line."""
        bar = self.progress_bar(epoch)
        try:
            return train_epoch(
                self.module, self.train_rows, self.optimizer, num_steps=self.t.num_steps,
                max_grad_norm=self.t.max_grad_norm, sampler=self.sampler,
                progress=self.epoch_progress, should_stop=stop, epoch=epoch, bar=bar,
                sync=self.sync, ddp=self.ddp)
        except NonFiniteLossError as exc:
            raise self.diverged(str(exc)) from None
        finally:
            if bar is not None:
                bar.close()

    def progress_bar(self, epoch: int) -> Any:
        desc = f"epoch {epoch + 1}/{self.t.max_max_epoch}"
        if self.progress == "log" and self.main:
            return _LineProgress(self.n_batches, self.epoch_progress.next_batch, desc, self.say)
        if self.progress and self.main:
            from tqdm import tqdm

            return tqdm(total=self.n_batches, initial=self.epoch_progress.next_batch,
                        desc=desc, unit="batch", dynamic_ncols=True, leave=False)
        return None

    def record_epoch(self, epoch: int, lr: float) -> tuple[float, bool]:
        """Validate the finished epoch and add it to the history: (valid ppl, is best)."""
        prog = self.epoch_progress
        train_ppl = prog.perplexity
        tok_s = prog.tokens / max(prog.seconds, 1e-9)
        valid_ppl = self.validate() if self.main else None
        if self.sync is not None:  # one evaluation, so every rank decides alike
            valid_ppl = self.sync.broadcast(valid_ppl)
        if not (math.isfinite(train_ppl) and math.isfinite(valid_ppl)):
            # a loss too large for exp() is as useless as an infinite one
            raise self.diverged(f"the perplexity became infinite at epoch {epoch + 1} (train "
                                f"{train_ppl}, valid {valid_ppl}; learning rate {lr:g})")
        is_best = self.best_ppl is None or valid_ppl < self.best_ppl
        self.history.append(EpochMetrics(epoch + 1, lr, train_ppl, valid_ppl, tok_s,
                                         prog.seconds, is_best))
        self.say(f"epoch {epoch + 1}: learning rate {lr:.6g}, train perplexity "
                 f"{train_ppl:.3f}, valid perplexity {valid_ppl:.3f}, {tok_s:,.0f} tokens/s")
        return valid_ppl, is_best

    def validate(self) -> float:
        try:
            return evaluate(self.module, self.valid_tokens, batch_size=self.t.batch_size,
                            num_steps=self.t.num_steps, device=self.dev)
        except TrainingError:  # non-finite parameters: the stop that follows says what to do
            return math.nan

    def diverged(self, reason: str) -> TrainingError:
        """The documented stop on a non-finite loss: last.pt stays the last good epoch."""
        self.write_metrics()
        kept = (f"the last good checkpoint is {self.last_path}" if self.last_path.exists()
                else "no checkpoint was written (it failed in the first epoch)")
        return TrainingError(
            f"{reason}. Training stopped; {kept}. Lower training.learning_rate, set or "
            "lower training.max_grad_norm (gradient clipping), or check the data; "
            "then start again, or continue from the checkpoint with --resume "
            "(the new settings apply).")

    # --- the commit point -------------------------------------------------------------------

    def commit(self, epoch: int, prog: EpochProgress) -> None:
        """Write last.pt, then bring what is derived from it in line (see rundir)."""
        _kill_point(self.log_file.name)  # the epoch's line is logged, last.pt not yet written
        self.checkpoint(self.last_path, epoch, prog)
        _kill_point(self.last_path.name)
        if self.main:
            _settle(self.save_path, {"epoch": epoch, "batch": prog.next_batch,
                                     "best_epoch": self.best_epoch,
                                     "history": [asdict(m) for m in self.history]},
                    self.config.output.keep_epoch_checkpoints)

    def checkpoint(self, path: Path, epoch: int, prog: EpochProgress) -> None:
        sync = self.sync
        state = _state_tensors(prog.state) if prog.next_batch else []
        extra: dict[str, Any] = {}
        if sync is not None:  # collective: every rank comes here at the same point
            state = sync.full_state(prog.state) if prog.next_batch else []
            extra["rng_ranks"] = sync.gather(_rng_state(self.dev))
            if not sync.is_main:
                sync.barrier()  # the file exists once any rank goes on
                return
        save_checkpoint(path, self.module, self.vocab, self.config.to_dict(), extra | {
            "epoch": epoch,
            "batch": prog.next_batch,
            "epoch_cost": prog.cost,
            "epoch_steps": prog.steps,
            "epoch_tokens": prog.tokens,
            "epoch_seconds": prog.seconds,
            "recurrent_state": state,
            "optimizer": self.optimizer.state_dict(),
            "rng": _rng_state(self.dev),
            "history": [asdict(m) for m in self.history],
            "best_valid_ppl": self.best_ppl,
            "best_epoch": self.best_epoch,
            "early_stopping": self.early.state() if self.early else None,
            "learning_rate": self.optimizer.param_groups[0]["lr"],
            "log_size": _log_size(self.log_file),
        })
        if sync is not None:
            sync.barrier()

    def summary(self) -> TrainingSummary:
        completed = self.history[-1].epoch if self.history else self.start_epoch
        return TrainingSummary(
            save_path=self.save_path, history=self.history, epochs_completed=completed,
            best_valid_ppl=self.best_ppl, best_epoch=self.best_epoch,
            stopped_early=self.stopped_early, interrupted=self.interrupted,
            last_checkpoint=self.last_path if self.last_path.exists() else None,
            best_checkpoint=self.best_path if self.best_path.exists() else None)


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
