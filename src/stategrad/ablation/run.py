"""The ablation pass: chunks of consecutive positions, each one batched run of every
start position in it (the batch dimension is the start positions), summed per class
and block; resumable from a running-state file; the public entry points."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import __version__
from ..data import UNK, ClassError, ClassSet, TokenClassSet
from .accumulate import Sums
from .errors import AblationError
from .model import check_tokens, model_parts
from .modes import AblationMode, ContextMode
from .progress import Progress
from .replacements import Replacer
from .result import AblationResult
from .running_state import load_state, save_state
from .shuffle import ShuffledContextMode
from .walk import Walker


class InterruptedAblation(RuntimeError):
    """Raised when a run stops early on purpose (``stop_after_chunks``); resumable."""


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _run(mode, parts, tokens: np.ndarray, classes: ClassSet, *, start: int, stop: int | None,
         block_size: int | None, batch: int, checkpoint_path, checkpoint_every: float,
         stop_after_chunks: int | None, settings: dict[str, Any],
         text_info: dict[str, Any] | None, progress: bool | str = False) -> AblationResult:
    N = len(tokens)
    stop = N if stop is None else min(int(stop), N)
    if not 0 <= start <= stop:
        raise AblationError(f"bad slice [{start}, {stop}) of a text of {N} tokens")
    if block_size is not None and block_size < 1:
        raise AblationError(f"block_size must be positive, got {block_size}")
    if batch < 1:
        raise AblationError(f"batch must be positive, got {batch}")
    if classes.vocab_size != parts.vocab_size:
        raise AblationError(f"classes are defined over {classes.vocab_size} words, the model "
                            f"has {parts.vocab_size}")
    lo, hi = mode.bounds(start, stop)
    try:  # a token-level class set has rows of its own and belongs to one text
        keys = classes.keys_for(tokens)
    except ClassError as exc:
        raise AblationError(str(exc)) from exc
    sums = Sums(len(mode.axis), classes.membership, keys, block_size)
    walker = Walker(parts, tokens)
    text_sha = _sha(np.ascontiguousarray(tokens, dtype=np.int32).tobytes())
    fingerprint = {"model": parts.identity, "text": text_sha, "slice": [start, stop],
                   "settings": repr(sorted(settings.items())), "block_size": block_size,
                   "batch": batch, "dtype": str(parts.dtype),
                   "classes": classes.digest()}
    path = Path(checkpoint_path) if checkpoint_path is not None else None
    pos = load_state(path, fingerprint, walker, sums) if path is not None else None
    resumed = pos is not None
    if pos is None:
        walker.advance_to(lo)
        pos = lo
    every = settings.get("sample_every") or 1
    step = batch * (every if mode.name == "ablation" else 1)
    last_save, chunks = time.monotonic(), 0
    bar = Progress(progress, lo, hi, pos)
    while pos < hi:
        b = min(pos + step, hi)
        rows = mode.chunk(walker, pos, b)
        if rows is not None:
            sums.add(rows)
        bar.update(b, b - pos)
        pos, chunks = b, chunks + 1
        asked = stop_after_chunks is not None and chunks >= stop_after_chunks
        if path is not None and pos < hi and (asked or
                                              time.monotonic() - last_save >= checkpoint_every):
            save_state(path, fingerprint, pos, walker, sums)
            last_save = time.monotonic()
        if asked and pos < hi:
            bar.close()
            raise InterruptedAblation(f"stopped at position {pos}; rerun to resume")
    bar.close()
    return _result(mode, parts, tokens, classes, sums, start, stop, block_size, settings,
                   text_sha, text_info, resumed)


def _result(mode, parts, tokens, classes, sums: Sums, start, stop, block_size, settings,
            text_sha, text_info, resumed) -> AblationResult:
    every = settings.get("sample_every") or 1
    sampling = {"rule": "every", "every": every} if every > 1 else {"rule": "all"}
    text = {"tokens": int(len(tokens)), "sha256": text_sha, **(text_info or {})}
    meta = {
        "mode": mode.name, **settings,
        "axis": mode.axis_name,
        "model_identity": parts.identity,
        "text": text,
        "slice": {"start": int(start), "stop": int(stop)},
        # The positions a result holds: start positions (ablation) or predicted positions
        # (context length) in [start, stop); parts that merge must not share one.
        "coverage": [{"text": text_sha, "tokens": int(len(tokens)), "sampling": sampling,
                      "kind": mode.name, "ranges": [[int(start), int(stop)]] if stop > start
                      else []}],
        "class_definitions": classes.definitions,
        "class_info": classes.info,
        "block_size": block_size,
        "dtype": str(parts.dtype).replace("torch.", ""),
        "device": str(parts.device),
        "stategrad_version": __version__,
        "torch_version": torch.__version__,
        "resumed": resumed,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    blocks: dict[str, Any] = {}
    if block_size is not None:
        vals, counts, starts = sums.block_arrays()
        blocks = dict(block_values=vals, block_counts=counts, block_starts=starts)
    return AblationResult(sums.values, sums.counts, mode.axis, mode.axis_name,
                          list(classes.names), parts.vocab or [], meta, **blocks)


def _common(model, tokens, classes, device, dtype):
    parts = model_parts(model, device, dtype)
    tokens = check_tokens(parts, tokens)
    classes = classes if classes is not None else ClassSet.only_all(parts.vocab_size)
    return parts, tokens, classes


def compute_ablation(
    model, tokens: Sequence[int] | np.ndarray, *, max_distance: int, replace: str = "unk",
    classes: ClassSet | None = None, unk_id: int | None = None, seed: int = 0,
    block_size: int | None = None, sample_every: int | None = None, start: int = 0,
    stop: int | None = None, device: str = "cpu", dtype: torch.dtype = torch.float32,
    batch: int = 256, checkpoint_path: str | os.PathLike | None = None,
    checkpoint_every: float = 300.0, stop_after_chunks: int | None = None,
    text_info: dict[str, Any] | None = None, progress: bool | str = False,
) -> AblationResult:
    """For every start position t in ``[start, stop)`` (every ``sample_every``-th) with
    ``t + max_distance < N`` and every distance 1 <= d <= ``max_distance``: the loss at
    position t + d with ``w_t`` replaced (``unk``, ``random`` word of its class, the
    ``mean`` embedding, or ``drop``ped), its increase over the unablated loss and
    KL(p_orig || p_ablated); summed per class of ``w_t`` and distance (see
    :mod:`stategrad.ablation.modes` for the exact definitions).  ``unk_id`` defaults to
    the vocabulary's ``<unk>``; ``block_size`` keeps sums per block of start positions
    for intervals; ``checkpoint_path`` makes the run resumable after a kill; ``progress``
    True draws a bar, ``"log"`` prints a line every minute."""
    if max_distance < 1:
        raise AblationError(f"max_distance must be at least 1, got {max_distance}")
    if sample_every is not None and sample_every < 1:
        raise AblationError(f"sample_every must be >= 1, got {sample_every}")
    with torch.no_grad():
        parts, tokens, classes = _common(model, tokens, classes, device, dtype)
        if unk_id is None and parts.vocab is not None and UNK in parts.vocab:
            unk_id = parts.vocab.index(UNK)
        if replace == "random" and isinstance(classes, TokenClassSet):
            raise AblationError("--replace random draws a word of the ablated word's class, "
                                "which token classes (--tagged) do not define; use unk, mean "
                                "or drop")
        replacer = Replacer(replace, parts, classes.membership, unk_id, seed)
        mode = AblationMode(parts, tokens, max_distance, replacer, sample_every)
        settings = {"replace": replace, "max_distance": int(max_distance), "seed": int(seed),
                    "unk_id": unk_id, "sample_every": sample_every}
        return _run(mode, parts, tokens, classes, start=start, stop=stop, block_size=block_size,
                    batch=batch, checkpoint_path=checkpoint_path,
                    checkpoint_every=checkpoint_every, stop_after_chunks=stop_after_chunks,
                    settings=settings, text_info=text_info, progress=progress)


def compute_context_length(
    model, tokens: Sequence[int] | np.ndarray, *, max_context: int,
    classes: ClassSet | None = None, block_size: int | None = None,
    sample_every: int | None = None, start: int = 0, stop: int | None = None,
    device: str = "cpu", dtype: torch.dtype = torch.float32, batch: int = 256,
    checkpoint_path: str | os.PathLike | None = None, checkpoint_every: float = 300.0,
    stop_after_chunks: int | None = None, text_info: dict[str, Any] | None = None,
    order: str = "cut", seed: int = 0, progress: bool | str = False,
) -> AblationResult:
    """For every predicted position i in ``[start, stop)`` with i >= ``max_context`` and
    every context length 0 <= k <= ``max_context``: the loss of ``w_i`` predicted from
    only ``w_{i-k} .. w_{i-1}`` (from the initial state; the rest cut), its increase over
    the loss with the whole text and KL(p_full || p_k); summed per class of ``w_i``.
    ``order="shuffle"`` keeps C words in view and shuffles those beyond the last k
    (seeded by ``seed``; see :mod:`stategrad.ablation.shuffle`)."""
    if order not in ("cut", "shuffle"):
        raise AblationError(f"order must be 'cut' or 'shuffle', got {order!r}")
    if max_context < 0:
        raise AblationError(f"max_context must be >= 0, got {max_context}")
    if sample_every is not None and sample_every < 1:
        raise AblationError(f"sample_every must be >= 1, got {sample_every}")
    with torch.no_grad():
        parts, tokens, classes = _common(model, tokens, classes, device, dtype)
        mode = (ContextMode(parts, tokens, max_context, sample_every) if order == "cut" else
                ShuffledContextMode(parts, tokens, max_context, sample_every, seed))
        if order == "shuffle":  # C + 1 runs per position: keep a chunk's runs near ``batch``
            batch = max(1, batch // (max_context + 1))
        settings = {"replace": order, "max_context": int(max_context),
                    "seed": int(seed) if order == "shuffle" else 0, "sample_every": sample_every}
        return _run(mode, parts, tokens, classes, start=start, stop=stop, block_size=block_size,
                    batch=batch, checkpoint_path=checkpoint_path,
                    checkpoint_every=checkpoint_every, stop_after_chunks=stop_after_chunks,
                    settings=settings, text_info=text_info, progress=progress)


def remove_running_state(path: str | os.PathLike) -> None:
    """Delete a running-state file once the result is stored."""
    Path(path).unlink(missing_ok=True)
    Path(str(path) + ".tmp").unlink(missing_ok=True)
