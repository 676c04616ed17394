"""What a state gradient run is asked to do: its options, checked, and the start
positions they select."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

SEMANTICS = ("carry", "segment")
CELL_PATHS = ("auto", "fused", "generic")
STATES = ("cell", "hidden")  # of the fused cells; a protocol model names its own


class EngineError(ValueError):
    """Arguments the engine cannot work with."""


@dataclass
class EngineOptions:
    max_delay: int
    state: str = "cell"
    layer: int = -1
    semantics: str = "carry"
    segment_length: int | None = None
    device: str = "cpu"
    dtype: torch.dtype = torch.float32
    block_size: int | None = None
    sample_every: int | None = None
    sample_fraction: float | None = None
    seed: int = 0
    window: int = 16  # steps gathered per batched accumulation
    # "auto": the fused cells where they apply (nn.LSTM/GRU/RNN), the generic ones
    # (any recurrent-protocol model) elsewhere; "generic" forces the latter.
    cells: str = "auto"
    chunk_size: int = 4096  # start positions per compute-dtype accumulator


def _text_identity(tokens: np.ndarray, extra: dict[str, Any] | None) -> dict[str, Any]:
    ident = {
        "tokens": int(len(tokens)),
        "sha256": hashlib.sha256(np.ascontiguousarray(tokens, dtype=np.int32).tobytes()).hexdigest(),
    }
    if extra:
        ident.update(extra)
    return ident


def _sample_mask(n: int, opts: EngineOptions) -> np.ndarray | None:
    if opts.sample_every is not None and opts.sample_fraction is not None:
        raise EngineError("choose one of sample_every and sample_fraction, not both")
    if opts.sample_every is not None:
        if opts.sample_every < 1:
            raise EngineError(f"sample_every must be >= 1, got {opts.sample_every}")
        if opts.sample_every == 1:
            return None
        mask = np.zeros(n, dtype=bool)
        mask[:: opts.sample_every] = True
        return mask
    if opts.sample_fraction is not None:
        if not 0 < opts.sample_fraction <= 1:
            raise EngineError(f"sample_fraction must be in (0, 1], got {opts.sample_fraction}")
        if opts.sample_fraction == 1:
            return None
        return np.random.default_rng(opts.seed).random(n) < opts.sample_fraction
    return None



def usable_positions(n_tokens: int, options: EngineOptions) -> int:
    """Start positions the engine uses (one past the last): all of the text in carry
    semantics; in segment semantics the original's whole segments but the last,
    ``n_tokens // segment_length - 1`` of them."""
    if options.semantics == "segment":
        n = options.segment_length or 1
        return max(n_tokens // n - 1, 0) * n
    return n_tokens


def check_options(o: EngineOptions) -> torch.device:
    """``EngineError`` for options the engine cannot work with; the device to use."""
    if o.max_delay < 1:
        raise EngineError(f"max_delay must be at least 1, got {o.max_delay}")
    if o.semantics not in SEMANTICS:
        raise EngineError(f"semantics must be one of {SEMANTICS}, got {o.semantics!r}")
    if not isinstance(o.state, str) or not o.state:
        raise EngineError(f"state must name a part of the model's state, got {o.state!r}")
    if o.semantics == "segment" and not o.segment_length:
        raise EngineError("segment semantics needs segment_length (the model's num_steps)")
    if o.cells not in CELL_PATHS:
        raise EngineError(f"cells must be one of {CELL_PATHS}, got {o.cells!r}")
    if o.block_size is not None and o.block_size < 1:
        raise EngineError(f"block_size must be positive, got {o.block_size}")
    try:
        device = torch.device(o.device)
    except (RuntimeError, TypeError) as exc:
        raise EngineError(f"unknown device {o.device!r}: use cpu, cuda or cuda:N") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise EngineError("device 'cuda' asked for, but PyTorch sees no CUDA device")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise EngineError(f"device {o.device!r} does not exist: PyTorch sees "
                          f"{torch.cuda.device_count()} CUDA device(s)")
    return device


def max_rows(sample_mask: np.ndarray | None, D: int) -> int:
    """The most start positions in flight at once: D, or fewer when sampling (the most
    sampled positions in any D consecutive ones), at least 1."""
    if sample_mask is None:
        return D
    csum = np.concatenate([[0], np.cumsum(sample_mask)])
    k = np.arange(len(sample_mask))
    lo = np.maximum(k - D + 1, 0)
    return int(max((csum[k + 1] - csum[lo]).max(initial=0), 1))
