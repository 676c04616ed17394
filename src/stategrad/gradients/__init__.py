"""State gradients: the engine, its result file, raw pairs, and the sliced run
over several processes.

Other subpackages, the command line and the public API import from here, never from
the modules inside, so the modules can be split without breaking them."""

from __future__ import annotations

from .coverage import coverage_overlaps, union_coverage
from .engine import InterruptedRun, StateGradientEngine, compute_state_gradients
from .errors import EmptyClassError, ResultError
from .options import EngineError, EngineOptions
from .parallel import compute_state_gradients_distributed, plan_slices
from .precision import precision_error
from .raw import RawError, RawPairWriter, iter_raw_pairs, parse_index_spec
from .result import GradientResult, json_default, load_result, write_h5_atomic
from .sentence import sentence_gradients

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
