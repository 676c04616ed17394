"""Training and evaluation of word-level RNN language models, the original's way.

- cost of a batch = summed cross entropy / batch size; perplexity = exp(total cost /
  total steps) over an epoch (equal to the per-token perplexity);
- learning rate of epoch i (from 0): ``learning_rate * lr_decay ** max(i + 1 - max_epoch, 0)``;
- gradients clipped to a global norm; SGD, Adam or Adagrad;
- the final recurrent state of a batch is the initial state of the next; every
  epoch starts from zeros;
- the ``earlyStopping`` trainer (:class:`EarlyStopping`);
- optional sampled softmax for training (log-uniform sampler, as TensorFlow's
  ``sampled_softmax_loss``); evaluation always uses the full softmax.

Checkpoints (``save_path/last.pt`` after every epoch and on interruption,
``save_path/best.pt`` for the best validation perplexity) hold everything needed
to resume bit-for-bit on CPU: optimizer state, RNG state, the position inside the
epoch with its recurrent state and partial sums, early-stopping state and history.
``last.pt`` is the run's one commit point: ``best.pt``, ``epoch_<n>.pt``, the metrics
files and the end of the log are derived from it, and rebuilt from it on ``--resume``.
"""

from __future__ import annotations

import contextlib
import csv
import filecmp
import io
import json
import logging
import math
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data import (
    BOS,
    EOS,
    CorpusError,
    Vocabulary,
    batchify,
    iter_sentences,
    num_batches,
    read_tokens,
    unk_warning,
)
from .config import ConfigError, TrainConfig, data_files, learning_rate_for_epoch, require_file
from .models import (
    RNNLM,
    LanguageModel,
    ModelError,
    ModelSpec,
    detach_state,
    module_from_checkpoint,
    read_checkpoint,
    save_checkpoint,
)

log = logging.getLogger("stategrad.training")

LAST = "last.pt"
BEST = "best.pt"


class TrainingError(RuntimeError):
    """Training cannot go on; the message says why and what to do."""


class NonFiniteLossError(TrainingError):
    def __init__(self, epoch: int, batch: int, value: float, lr: float):
        self.epoch, self.batch, self.value, self.lr = epoch, batch, value, lr
        super().__init__(f"the training loss became {value} at epoch {epoch + 1}, batch {batch + 1} "
                         f"(learning rate {lr:g})")


# --- schedule and early stopping ----------------------------------------------------------

def learning_rate(config: TrainConfig, epoch: int) -> float:
    """Learning rate of ``epoch`` (counted from 0), the original's schedule."""
    return learning_rate_for_epoch(config.training, epoch)


@dataclass
class EarlyStopping:
    """The original's ``earlyStopping`` trainer.

    It keeps the last ``patience`` validation perplexities.  From epoch index
    ``patience`` on, every one of them that the new perplexity does not beat (``>=``)
    counts one failure; failures are never reset.  Training stops once there are
    ``patience`` failures, and the epoch that triggers the stop is not saved.
    """

    patience: int
    previous: list[float] = field(default_factory=list)
    failures: int = 0

    def update(self, epoch: int, valid_ppl: float) -> bool:
        """Record the perplexity of ``epoch`` (from 0); True means stop now."""
        if epoch > self.patience - 1:
            self.failures += sum(1 for prev in self.previous if valid_ppl >= prev)
            if self.previous:
                self.previous.pop(0)
        self.previous.append(valid_ppl)
        return self.failures >= self.patience

    def state(self) -> dict[str, Any]:
        return {"patience": self.patience, "previous": list(self.previous),
                "failures": self.failures}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> EarlyStopping:
        return cls(int(state["patience"]), [float(p) for p in state["previous"]],
                   int(state["failures"]))


# --- sampled softmax ----------------------------------------------------------------------

class LogUniformSampler:
    """Unique negative classes from P(k) = log((k+2)/(k+1)) / log(V+1), like TensorFlow.

    Ids are assumed ordered by falling frequency (the vocabulary's order).  Samples
    are drawn with rejection until ``num_sampled`` are distinct; the expected count
    of class k is then ``1 - (1 - P(k)) ** tries``, TensorFlow's correction for
    ``unique=True``.  Draws use the global torch RNG, so they are seeded and
    checkpointed with everything else.
    """

    def __init__(self, vocab_size: int, num_sampled: int):
        if num_sampled >= vocab_size:
            raise ConfigError(f"training.num_sampled ({num_sampled}) must be smaller than the "
                              f"vocabulary ({vocab_size} words); use softmax = 'full'")
        self.vocab_size = vocab_size
        self.num_sampled = num_sampled
        k = torch.arange(vocab_size, dtype=torch.float64)
        self.log_range = math.log(vocab_size + 1)
        self.prob = (torch.log(k + 2) - torch.log(k + 1)) / self.log_range

    def sample(self) -> tuple[torch.Tensor, int]:
        chosen: list[int] = []
        seen: set[int] = set()
        tries = 0
        while len(chosen) < self.num_sampled:
            u = torch.rand(2 * self.num_sampled, dtype=torch.float64)
            draws = (torch.exp(u * self.log_range) - 1).floor().long().clamp_(0, self.vocab_size - 1)
            for value in draws.tolist():
                tries += 1
                if value not in seen:
                    seen.add(value)
                    chosen.append(value)
                    if len(chosen) == self.num_sampled:
                        break
        return torch.tensor(chosen, dtype=torch.long), tries

    def log_expected_count(self, ids: torch.Tensor, tries: int) -> torch.Tensor:
        p = self.prob[ids.cpu()]
        return torch.log(-torch.expm1(tries * torch.log1p(-p)))


def sampled_softmax_cost(hidden: torch.Tensor, targets: torch.Tensor, decoder: nn.Linear,
                         sampler: LogUniformSampler) -> torch.Tensor:
    """Summed sampled-softmax cross entropy of ``hidden`` (N, H) against ``targets`` (N,)."""
    sampled, tries = sampler.sample()
    device = hidden.device
    sampled = sampled.to(device)
    log_q_true = sampler.log_expected_count(targets, tries).to(device, hidden.dtype)
    log_q_sampled = sampler.log_expected_count(sampled, tries).to(device, hidden.dtype)
    weight, bias = decoder.weight, decoder.bias
    true_logit = (hidden * weight[targets]).sum(-1) + bias[targets] - log_q_true
    sampled_logit = hidden @ weight[sampled].t() + bias[sampled] - log_q_sampled
    # a negative that happens to be the target is not a negative ("remove accidental hits")
    sampled_logit = sampled_logit.masked_fill(sampled[None, :] == targets[:, None], float("-inf"))
    logits = torch.cat([true_logit[:, None], sampled_logit], dim=1)
    return (torch.logsumexp(logits, dim=1) - true_logit).sum()


# --- one epoch ----------------------------------------------------------------------------

@dataclass
class EpochProgress:
    """Where an epoch stands: enough to resume it exactly."""

    next_batch: int = 0
    cost: float = 0.0
    steps: int = 0
    tokens: int = 0
    seconds: float = 0.0
    state: Any = None

    @property
    def perplexity(self) -> float:
        return perplexity(self.cost / self.steps) if self.steps else float("nan")


def perplexity(mean_cross_entropy: float) -> float:
    """exp of a mean cross entropy; inf where that overflows (a huge but finite loss)."""
    try:
        return math.exp(mean_cross_entropy)
    except OverflowError:
        return math.inf


def _rows_tensor(tokens: np.ndarray, batch_size: int, device: torch.device) -> torch.Tensor:
    """(row_len, batch) time-major ids on the device, once per split, not once per batch."""
    rows = batchify(tokens, batch_size)
    return torch.from_numpy(rows.T.astype(np.int64)).contiguous().to(device)


def train_epoch(
    module: RNNLM,
    data: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    *,
    num_steps: int,
    max_grad_norm: float | None,
    sampler: LogUniformSampler | None = None,
    progress: EpochProgress | None = None,
    max_batches: int | None = None,
    should_stop: Callable[[], bool] | None = None,
    epoch: int = 0,
    bar: Any = None,
    sync: Any = None,
    ddp: nn.Module | None = None,
) -> EpochProgress:
    """Train over ``data`` ((row_len, batch) ids from :func:`_rows_tensor`), in place.

    Continues from ``progress`` (resuming mid-epoch) and returns it updated.  Stops
    early, between batches, after ``max_batches`` batches or when ``should_stop()``
    is true; ``progress.next_batch`` then says where to continue.

    Under ``torchrun``, ``sync`` (a :class:`stategrad.lm.TrainingSync`) and
    ``ddp`` (the DistributedDataParallel wrapper of ``module``) make each rank train
    its own rows; cost, stop and non-finite decisions are then those of all ranks.
    """
    module.train()
    row_len, batch_size = data.shape
    n = num_batches(row_len, num_steps)
    if n == 0:
        raise CorpusError(f"training text too short: rows of {row_len} tokens for "
                          f"num_steps={num_steps} (need at least {2 * num_steps} per row)")
    progress = progress or EpochProgress()
    state = progress.state
    if state is None:
        state = module.init_state(batch_size, data.device)
    params = [p for p in module.parameters() if p.requires_grad]
    lr = optimizer.param_groups[0]["lr"]
    forward = ddp if ddp is not None else module
    ranks = sync.world_size if sync is not None else 1
    done = 0
    started = time.perf_counter()
    for i in range(progress.next_batch, n):
        lo = i * num_steps
        inputs = data[lo: lo + num_steps]
        targets = data[lo + 1: lo + num_steps + 1]
        state = detach_state(state)
        if sampler is None:
            logits, state = forward(inputs, state)
            cost = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                                   reduction="sum") / batch_size
        else:
            hidden, state = forward(inputs, state, return_hidden=True)
            cost = sampled_softmax_cost(hidden.reshape(-1, hidden.shape[-1]),
                                        targets.reshape(-1), module.decoder, sampler) / batch_size
        stop_now = bool(max_batches is not None and done + 1 >= max_batches) or bool(
            should_stop and should_stop())
        if sync is not None:
            # one all-reduce: the whole batch's cost and any rank's wish to stop
            value, stop_now = sync.step(cost, stop_now)
        else:
            value = cost.item()
        # checked before the step, so a bad batch never reaches the parameters
        if not math.isfinite(value):
            raise NonFiniteLossError(epoch, i, value, lr)
        optimizer.zero_grad(set_to_none=True)
        cost.backward()
        if max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
        optimizer.step()
        progress.cost += value
        progress.steps += num_steps
        progress.tokens += num_steps * batch_size * ranks
        progress.next_batch = i + 1
        done += 1
        if bar is not None:
            elapsed = progress.seconds + time.perf_counter() - started
            bar.update(1)
            bar.set_postfix_str(f"ppl {progress.perplexity:.1f}, "
                                f"{progress.tokens / max(elapsed, 1e-9):,.0f} tok/s", refresh=False)
        if stop_now:
            break
    progress.state = detach_state(state)
    progress.seconds += time.perf_counter() - started
    return progress


#: Seconds between two progress lines of ``train(progress="log")``.
LINE_PROGRESS_SECONDS = 60.0


class _LineProgress:
    """Progress as a line every ``every`` seconds, where a bar has no terminal to draw on
    (a log file, a batch job): the few calls of tqdm that :func:`train_epoch` makes."""

    def __init__(self, total: int, initial: int, desc: str, echo: Callable[[str], None],
                 every: float | None = None) -> None:
        self.total, self.n, self.desc, self.echo = total, initial, desc, echo
        self.every = LINE_PROGRESS_SECONDS if every is None else every
        self.last = time.monotonic()

    def update(self, n: int = 1) -> None:
        self.n += n

    def set_postfix_str(self, text: str, refresh: bool = False) -> None:
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            self.echo(f"{self.desc}: batch {self.n:,} of {self.total:,} ({text})")

    def close(self) -> None:
        pass


# --- evaluation ---------------------------------------------------------------------------

@torch.no_grad()
def evaluate(
    model: LanguageModel | RNNLM,
    tokens: np.ndarray,
    *,
    batch_size: int = 1,
    num_steps: int = 1,
    device: str | torch.device = "cpu",
    chunk: int = 512,
    progress: bool = False,
) -> float:
    """Perplexity of ``tokens`` scored the original's way.

    The text is cut into ``batch_size`` rows; the original scores the first
    ``(len_row // num_steps - 1) * num_steps`` positions of every row, carrying the
    state.  The same positions are scored here in chunks of up to ``chunk`` steps:
    with the state carried the result is the same, and test mode (batch 1, 1 step)
    does not take one Python iteration per token.
    """
    module = model.module if isinstance(model, LanguageModel) else model
    device = torch.device(device)
    was_training = module.training
    module.eval()
    try:
        data = _rows_tensor(np.asarray(tokens), batch_size, device)
        limit = num_batches(data.shape[0], num_steps) * num_steps
        if limit == 0:
            raise CorpusError(f"{len(tokens)} tokens are too few to evaluate with batch_size="
                              f"{batch_size}, num_steps={num_steps}")
        # bound the (steps, batch, V) logits of one chunk to about 64 MB of float32
        vocab_size = module.decoder.out_features
        step = max(num_steps, min(chunk, (1 << 24) // (batch_size * vocab_size)))
        state = module.init_state(batch_size, device)
        total = torch.zeros((), dtype=torch.float64, device=device)
        positions = range(0, limit, step)
        if progress:
            from tqdm import tqdm

            positions = tqdm(positions, desc="eval", unit="chunk", leave=False)
        for lo in positions:
            hi = min(lo + step, limit)
            logits, state = module(data[lo:hi], state)
            total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                     data[lo + 1: hi + 1].reshape(-1), reduction="sum").double()
        mean = total.item() / (limit * batch_size)
    finally:
        module.train(was_training)
    if not math.isfinite(mean):
        raise TrainingError(f"evaluation produced a non-finite cross entropy ({mean}); "
                            "the model's parameters are not finite")
    return perplexity(mean)


# --- vocabulary and data ------------------------------------------------------------------

def build_vocabulary(config: TrainConfig) -> Vocabulary:
    """From ``data.vocab_file`` (extended with unseen training words), or the training text."""
    d = config.data
    files = data_files(config)
    train = require_file(files.train, "train")
    opts = {"no_eos": d.no_eos, "encoding": d.encoding}
    if d.vocab_file is not None:
        vocab = Vocabulary.load(d.vocab_file, encoding=d.encoding)
        words = list(vocab.words)
        known = set(words)
        for sentence in iter_sentences(train, **opts):
            for w in sentence:
                if w not in known:  # the original appends unseen words
                    known.add(w)
                    words.append(w)
        vocab = Vocabulary(tuple(words))
        if d.vocab_size is not None and len(vocab) > d.vocab_size:
            raise ConfigError(f"data.vocab_file {d.vocab_file} plus the unseen training words "
                              f"gives {len(vocab)} words, more than data.vocab_size={d.vocab_size}")
        return vocab
    return Vocabulary.build(train, max_size=d.vocab_size, **opts)


def read_split(config: TrainConfig, path: Path, vocab: Vocabulary) -> np.ndarray:
    return read_tokens(path, vocab, no_eos=config.data.no_eos, encoding=config.data.encoding)


def _require_words(tokens: np.ndarray, vocab: Vocabulary, path: Path) -> None:
    """Empty lines give only <eos>: a 3-word vocabulary that cannot learn anything."""
    markers = [i for i in (vocab.get(EOS), vocab.get(BOS)) if i is not None]
    if not np.isin(tokens, markers, invert=True).any():
        raise CorpusError(f"train file {path} has no words (only empty lines): a language "
                          "model needs text to learn from")


def _save_vocab(vocab: Vocabulary, path: Path) -> None:
    try:
        vocab.save(path)
    except OSError:
        path.with_name(path.name + ".tmp").unlink(missing_ok=True)  # a full disk: no leftover
        raise


def _make_folder(path: Path, option: str) -> None:
    """The folder, made and known writable before any training time is spent."""
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{option}: {path} is a file, not a folder; choose another path")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):  # nameless where it can be: a kill leaves nothing
            pass
    except OSError as exc:
        raise ConfigError(f"{option}: cannot write in {path}: {exc.strerror or exc}") from None


def vocabulary_mismatch(expected: Vocabulary, found: Vocabulary) -> str | None:
    if expected.words == found.words:
        return None
    for i, (a, b) in enumerate(zip(expected.words, found.words, strict=False)):
        if a != b:
            return f"id {i} is {b!r} in the checkpoint but {a!r} now"
    return f"the checkpoint has {len(found)} words, the configuration gives {len(expected)}"


# --- devices, seeds, RNG state ------------------------------------------------------------

def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"--device / training.device: unknown device {name!r} (cpu, cuda, "
                          "cuda:N or auto)") from None
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"--device / training.device: {name!r} is not supported (cpu, cuda, "
                          "cuda:N or auto)")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} asked for, but this PyTorch has no usable CUDA "
                          "device; use --device cpu")
    return device


def _rng_state(device: torch.device) -> dict[str, torch.Tensor]:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, torch.Tensor], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


# --- the run ------------------------------------------------------------------------------

@dataclass
class EpochMetrics:
    epoch: int  # 1-based, as the original prints
    learning_rate: float
    train_ppl: float
    valid_ppl: float
    tokens_per_s: float
    seconds: float
    best: bool


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


def make_optimizer(config: TrainConfig, params: list[nn.Parameter]) -> torch.optim.Optimizer:
    lr = config.training.learning_rate
    name = config.training.optimizer
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    # TensorFlow's Adagrad (the original's) starts its accumulators at 0.1, not 0
    return torch.optim.Adagrad(params, lr=lr, initial_accumulator_value=0.1)


def build_model(config: TrainConfig, vocab: Vocabulary) -> RNNLM:
    """A freshly initialised model (call after seeding)."""
    m = config.model
    spec = ModelSpec(vocab_size=len(vocab), embedding_size=m.emb_size, hidden_size=m.hidden_size,
                     num_layers=m.num_layers, cell=m.cell, dropout=m.dropout,
                     embedding_dropout=m.embedding_dropout, init_scale=m.init_scale,
                     forget_bias=m.forget_bias, tie_weights=m.tie_weights)
    module = RNNLM(spec)
    if m.pretrained_embeddings is not None:
        # written elsewhere in the package; imported here so training works without it
        from ..data import load_embedding_matrix

        matrix = torch.as_tensor(load_embedding_matrix(m.pretrained_embeddings, vocab))
        if tuple(matrix.shape) != (len(vocab), spec.embedding_size):
            raise ConfigError(
                f"model.pretrained_embeddings {m.pretrained_embeddings}: matrix is "
                f"{tuple(matrix.shape)}, the model needs ({len(vocab)}, {spec.embedding_size}) "
                "(vocabulary size x model.embedding_size)")
        with torch.no_grad():
            module.embedding.weight.copy_(matrix)
    if m.fixed_embeddings:
        module.embedding.weight.requires_grad_(False)
    return module


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


class _StrictFileHandler(logging.FileHandler):
    """A log line that cannot be written (a full disk) stops training with that error,
    instead of logging's traceback on stderr and a run that goes on without its log."""

    def handleError(self, record: logging.LogRecord) -> None:
        exc = sys.exc_info()[1]  # called from the except block of emit()
        if isinstance(exc, OSError):
            raise _naming(exc, Path(self.baseFilename)) from None
        raise  # anything else: emit's own error, unchanged


@contextlib.contextmanager
def _log_to(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = _StrictFileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    root = logging.getLogger("stategrad")
    old_level = root.level
    root.addHandler(handler)
    if root.level == logging.NOTSET or root.level > logging.INFO:
        root.setLevel(logging.INFO)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        # every line is flushed as written: a failing close only repeats the error that
        # the failed line already raised
        with contextlib.suppress(OSError):
            handler.close()


_KILL_AT = "STATEGRAD_KILL_AT"
_passes: dict[str, int] = {}


def _kill_point(name: str) -> None:
    """Test hook: with ``STATEGRAD_KILL_AT=NAME:N`` in the environment the process kills
    itself (SIGKILL: no clean-up at all) the N-th time it passes the point NAME, the
    file just written (``last.pt``, ``best.pt.tmp``, ``metrics.csv``, ``train.log``...).
    The fault tests use it to stop a run between any two of its writes."""
    target, _, count = os.environ.get(_KILL_AT, "").rpartition(":")
    if target != name:
        return
    _passes[name] = _passes.get(name, 0) + 1
    if str(_passes[name]) == count:
        os.kill(os.getpid(), signal.SIGKILL)


def _naming(exc: OSError, path: Path) -> OSError:
    """The error with the file it was about (a failed write() names none)."""
    return OSError(exc.errno, exc.strerror or str(exc), str(path))


def _write_atomic(path: Path, text: str) -> None:
    """Temp file renamed into place; on failure (full disk) nothing is left behind."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "w", newline="", encoding="utf-8") as handle:
            handle.write(text)
        _kill_point(tmp.name)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise _naming(exc, path) from None
    _kill_point(path.name)


def _copy_atomic(src: Path, dst: Path) -> None:
    """Make ``dst`` a copy of ``src`` (temp file + rename); a no-op when it already is one."""
    if dst.is_file() and filecmp.cmp(src, dst, shallow=False):
        return
    tmp = dst.with_name(dst.name + ".tmp")
    try:
        shutil.copyfile(src, tmp)
        _kill_point(tmp.name)
        os.replace(tmp, dst)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise _naming(exc, dst) from None
    _kill_point(dst.name)


def _write_metrics(save_path: Path, history: list[EpochMetrics]) -> None:
    rows = [asdict(m) for m in history]
    _write_atomic(save_path / "metrics.json", json.dumps(rows, indent=1))
    table = io.StringIO()
    writer = csv.DictWriter(table, fieldnames=[f for f in EpochMetrics.__dataclass_fields__])
    writer.writeheader()
    writer.writerows(rows)
    _write_atomic(save_path / "metrics.csv", table.getvalue())


# --- the commit point ---------------------------------------------------------------------
#
# ``last.pt`` is the one commit point of a run: it carries the metrics history, the best
# epoch and the length of the log when it was written.  best.pt, epoch_<n>.pt, metrics.*
# and the end of the log are derived from it, right after it is written and again on
# every --resume, so whatever a kill leaves between two writes is repaired the same way.

_DERIVED = (BEST, "metrics.json", "metrics.csv")


def _settle(save_path: Path, tr: dict[str, Any], keep_epochs: bool) -> None:
    """Bring best.pt, epoch_<n>.pt and metrics.* in line with last.pt's record ``tr``."""
    last = save_path / LAST
    epoch, at_end = int(tr["epoch"]), int(tr.get("batch", 0)) == 0
    if at_end and epoch > 0 and tr.get("best_epoch") == epoch:
        _copy_atomic(last, save_path / BEST)  # the epoch just committed is the best one
    if keep_epochs and at_end and epoch > 0:
        _copy_atomic(last, save_path / f"epoch_{epoch}.pt")
    _write_metrics(save_path, [EpochMetrics(**m) for m in tr.get("history", [])])


def _check_best(save_path: Path, tr: dict[str, Any]) -> None:
    """Refuse to resume when best.pt is not the best epoch that last.pt names: it cannot be
    rebuilt from last.pt, and going on would leave a wrong best.pt behind."""
    best_epoch = tr.get("best_epoch")
    at_end = int(tr.get("batch", 0)) == 0
    if best_epoch is None or (at_end and best_epoch == int(tr["epoch"])):
        return  # nothing yet, or best.pt is a copy of last.pt (made by _settle)
    path = save_path / BEST
    found = None
    if path.is_file():
        saved = read_checkpoint(path).get("training") or {}
        found = saved.get("epoch") if int(saved.get("batch", 0)) == 0 else None
    if found != best_epoch:
        what = f"holds epoch {found}" if path.is_file() else "is missing"
        raise TrainingError(f"cannot resume: {path} {what}, but {save_path / LAST} says the best "
                            f"epoch is {best_epoch}; restore that best.pt, or start again with "
                            "--overwrite")


def _log_size(path: Path) -> int | None:
    return path.stat().st_size if path.is_file() else None


def _rewind_log(path: Path, size: int | None) -> None:
    """Drop what the log gained after the commit point (lines of work a kill undid)."""
    if size is not None and path.is_file() and path.stat().st_size > size:
        os.truncate(path, size)


def _remove_stale_temps(save_path: Path) -> None:
    """Temp files a kill left halfway; each is written again from scratch when needed."""
    for name in (LAST, "vocab.txt", *_DERIVED):
        (save_path / (name + ".tmp")).unlink(missing_ok=True)
    for tmp in save_path.glob("epoch_*.pt.tmp"):
        tmp.unlink(missing_ok=True)


def _state_tensors(state) -> list[torch.Tensor]:
    if state is None:
        return []
    return [s.detach().cpu() for s in (state if isinstance(state, tuple) else (state,))]


def _state_from_tensors(tensors: list[torch.Tensor], cell: str, device: torch.device):
    if not tensors:
        return None
    tensors = [t.to(device) for t in tensors]
    return tuple(tensors) if cell == "lstm" else tensors[0]


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


def evaluate_file(model: LanguageModel, path: str | os.PathLike, *, batch_size: int = 1,
                  num_steps: int = 1, device: str | torch.device = "cpu",
                  no_eos: bool = False, encoding: str = "utf-8", progress: bool = False) -> float:
    """Perplexity of a text file under ``model`` (its own vocabulary, unknown words -> <unk>)."""
    tokens = read_tokens(path, model.vocab, no_eos=no_eos, encoding=encoding)
    return evaluate(model, tokens, batch_size=batch_size, num_steps=num_steps, device=device,
                    progress=progress)


__all__ = [
    "EarlyStopping",
    "EpochMetrics",
    "EpochProgress",
    "LogUniformSampler",
    "NonFiniteLossError",
    "TrainingError",
    "TrainingSummary",
    "build_model",
    "build_vocabulary",
    "checkpoint_for",
    "evaluate",
    "evaluate_file",
    "learning_rate",
    "load_trained",
    "make_optimizer",
    "sampled_softmax_cost",
    "train",
    "train_epoch",
    "unk_warning",
    "ModelError",
]
