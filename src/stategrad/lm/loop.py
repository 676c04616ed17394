"""One pass over the data: a training epoch (resumable mid-epoch) and evaluation.

- cost of a batch = summed cross entropy / batch size; perplexity = exp(total cost /
  total steps) over an epoch (equal to the per-token perplexity);
- gradients clipped to a global norm;
- the final recurrent state of a batch is the initial state of the next; every
  epoch starts from zeros;
- evaluation always uses the full softmax.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data import CorpusError, batchify, num_batches, read_tokens
from .errors import NonFiniteLossError, TrainingError
from .models import RNNLM, LanguageModel, detach_state
from .optim import LogUniformSampler, sampled_softmax_cost
from .recurrent import is_recurrent_lm, run_steps

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
        cost, state = _batch_cost(forward, module, inputs, targets, detach_state(state), sampler)
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


def _batch_cost(forward: nn.Module, module: RNNLM, inputs: torch.Tensor, targets: torch.Tensor,
                state: Any, sampler: LogUniformSampler | None) -> tuple[torch.Tensor, Any]:
    """Summed cross entropy of one batch / batch size (full or sampled softmax), and the
    state it ends in.  ``forward`` is ``module`` or its DDP wrapper."""
    batch_size = inputs.shape[1]
    if sampler is None:
        logits, state = forward(inputs, state)
        cost = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                               reduction="sum") / batch_size
    else:
        hidden, state = forward(inputs, state, return_hidden=True)
        cost = sampled_softmax_cost(hidden.reshape(-1, hidden.shape[-1]),
                                    targets.reshape(-1), module.decoder, sampler) / batch_size
    return cost, state


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
        generic = is_recurrent_lm(module)  # a model of the recurrent protocol
        vocab_size = int(module.vocab_size) if generic else module.decoder.out_features
        step = max(num_steps, min(chunk, (1 << 24) // (batch_size * vocab_size)))
        state = None if generic else module.init_state(batch_size, device)
        total = torch.zeros((), dtype=torch.float64, device=device)
        positions = range(0, limit, step)
        if progress:
            from tqdm import tqdm

            positions = tqdm(positions, desc="eval", unit="chunk", leave=False)
        for lo in positions:
            hi = min(lo + step, limit)
            logits, state = (run_steps(module, data[lo:hi], state) if generic
                             else module(data[lo:hi], state))
            total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                     data[lo + 1: hi + 1].reshape(-1), reduction="sum").double()
        mean = total.item() / (limit * batch_size)
    finally:
        module.train(was_training)
    if not math.isfinite(mean):
        raise TrainingError(f"evaluation produced a non-finite cross entropy ({mean}); "
                            "the model's parameters are not finite")
    return perplexity(mean)


def evaluate_file(model: LanguageModel, path: str | os.PathLike, *, batch_size: int = 1,
                  num_steps: int = 1, device: str | torch.device = "cpu",
                  no_eos: bool = False, encoding: str = "utf-8", progress: bool = False) -> float:
    """Perplexity of a text file under ``model`` (its own vocabulary, unknown words -> <unk>)."""
    tokens = read_tokens(path, model.vocab, no_eos=no_eos, encoding=encoding)
    return evaluate(model, tokens, batch_size=batch_size, num_steps=num_steps, device=device,
                    progress=progress)
