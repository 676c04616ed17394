"""The run folder (``save_path``) and its one commit point.

``last.pt`` is written after every epoch and on interruption; ``best.pt``,
``epoch_<n>.pt``, ``metrics.json``/``metrics.csv`` and the end of the log are derived
from it, and rebuilt from it on ``--resume``.  The writes here are atomic (temp file +
rename) and pass the ``STATEGRAD_KILL_AT`` test hook, so the fault tests can kill a run
between any two of them.
"""

from __future__ import annotations

import contextlib
import csv
import filecmp
import io
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from ..atomic import write_atomic
from ..data import Vocabulary
from .checkpoints import module_from_checkpoint, read_checkpoint
from .config import ConfigError, TrainConfig
from .errors import TrainingError
from .loop import EpochProgress
from .models import RNNLM
from .optim import EarlyStopping
from .prepare import vocabulary_mismatch

LAST = "last.pt"
BEST = "best.pt"


# --- the folder ---------------------------------------------------------------------------

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


def _remove_stale_temps(save_path: Path) -> None:
    """Temp files a kill left halfway; each is written again from scratch when needed."""
    for name in (LAST, "vocab.txt", *_DERIVED):
        (save_path / (name + ".tmp")).unlink(missing_ok=True)
    for tmp in save_path.glob("epoch_*.pt.tmp"):
        tmp.unlink(missing_ok=True)


# --- atomic writes and the kill hook ------------------------------------------------------

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
    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as handle:
            handle.write(text)
        _kill_point(tmp.name)

    _write_passing_kill_points(path, write)


def _copy_atomic(src: Path, dst: Path) -> None:
    """Make ``dst`` a copy of ``src`` (temp file + rename); a no-op when it already is one."""
    if dst.is_file() and filecmp.cmp(src, dst, shallow=False):
        return

    def write(tmp: Path) -> None:
        shutil.copyfile(src, tmp)
        _kill_point(tmp.name)

    _write_passing_kill_points(dst, write)


def _write_passing_kill_points(path: Path, write) -> None:
    """:func:`stategrad.atomic.write_atomic`, with the error naming ``path`` and the kill
    point passed once it is in place (``write`` passes the one of the temp file)."""
    try:
        write_atomic(path, write)
    except OSError as exc:
        raise _naming(exc, path) from None
    _kill_point(path.name)


# --- metrics and the log ------------------------------------------------------------------

@dataclass
class EpochMetrics:
    epoch: int  # 1-based, as the original prints
    learning_rate: float
    train_ppl: float
    valid_ppl: float
    tokens_per_s: float
    seconds: float
    best: bool


def _write_metrics(save_path: Path, history: list[EpochMetrics]) -> None:
    rows = [asdict(m) for m in history]
    _write_atomic(save_path / "metrics.json", json.dumps(rows, indent=1))
    table = io.StringIO()
    writer = csv.DictWriter(table, fieldnames=[f for f in EpochMetrics.__dataclass_fields__])
    writer.writeheader()
    writer.writerows(rows)
    _write_atomic(save_path / "metrics.csv", table.getvalue())


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


def _log_size(path: Path) -> int | None:
    return path.stat().st_size if path.is_file() else None


def _rewind_log(path: Path, size: int | None) -> None:
    """Drop what the log gained after the commit point (lines of work a kill undid)."""
    if size is not None and path.is_file() and path.stat().st_size > size:
        os.truncate(path, size)


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


# --- resuming -----------------------------------------------------------------------------

def _rng_state(device: torch.device) -> dict[str, torch.Tensor]:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, torch.Tensor], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def _state_tensors(state) -> list[torch.Tensor]:
    if state is None:
        return []
    return [s.detach().cpu() for s in (state if isinstance(state, tuple) else (state,))]


def _state_from_tensors(tensors: list[torch.Tensor], cell: str, device: torch.device):
    if not tensors:
        return None
    tensors = [t.to(device) for t in tensors]
    return tuple(tensors) if cell in ("lstm", "mamba") else tensors[0]


def _restore(path: Path, payload: dict[str, Any], config: TrainConfig, vocab: Vocabulary,
             module: RNNLM, optimizer: torch.optim.Optimizer, device: torch.device,
             early: EarlyStopping | None, sync: Any = None):
    """Load last.pt's ``payload`` into ``module`` and ``optimizer`` and set the RNG; returns
    where the run stands: (epoch, its progress, best perplexity, best epoch, history,
    early stopping).  A checkpoint of another vocabulary or model is refused."""
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
