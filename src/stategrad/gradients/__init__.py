"""State gradients: the engine, its result file, raw pairs, and the sliced run
over several processes.

The result file (``GradientResult``, ``load_result``, coverage, errors) needs only
NumPy and h5py, so it is imported at once; the engine and everything else that needs
PyTorch is imported on first use (PEP 562), so reading a result (``stategrad inspect``)
does not pay for loading torch.

Other subpackages, the command line and the public API import from here, never from
the modules inside, so the modules can be split without breaking them."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .coverage import coverage_overlaps, union_coverage
from .errors import EmptyClassError, ResultError
from .result import GradientResult, json_default, load_result, write_h5_atomic

if TYPE_CHECKING:  # what __getattr__ below imports on first use, spelled out for tools
    from .engine import InterruptedRun, StateGradientEngine, compute_state_gradients
    from .options import EngineError, EngineOptions
    from .parallel import compute_state_gradients_distributed, plan_slices
    from .precision import precision_error
    from .raw import RawError, RawPairWriter, iter_raw_pairs, parse_index_spec
    from .sentence import sentence_gradients

# name -> module of this subpackage that defines it; these modules import torch
_LAZY = {
    "InterruptedRun": "engine",
    "StateGradientEngine": "engine",
    "compute_state_gradients": "engine",
    "EngineError": "options",
    "EngineOptions": "options",
    "compute_state_gradients_distributed": "parallel",
    "plan_slices": "parallel",
    "precision_error": "precision",
    "RawError": "raw",
    "RawPairWriter": "raw",
    "iter_raw_pairs": "raw",
    "parse_index_spec": "raw",
    "sentence_gradients": "sentence",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__


__all__ = [
    "EmptyClassError",
    "EngineError",
    "EngineOptions",
    "GradientResult",
    "InterruptedRun",
    "RawError",
    "RawPairWriter",
    "ResultError",
    "StateGradientEngine",
    "compute_state_gradients",
    "compute_state_gradients_distributed",
    "coverage_overlaps",
    "iter_raw_pairs",
    "json_default",
    "load_result",
    "parse_index_spec",
    "plan_slices",
    "precision_error",
    "sentence_gradients",
    "union_coverage",
    "write_h5_atomic",
]
