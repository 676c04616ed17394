"""Context ablation: a behavioural memory measure beside state gradients.

How much the model's loss and predicted distribution change at position t + d when the
word at t is replaced or removed (and, in context-length mode, when the model sees only
the last k words), summed per class and distance in a self-describing, mergeable
result.  It sits beside ``gradients`` in the pipeline and uses its coverage records and
atomic HDF5 writer.

Other subpackages, the command line and the public API import from here, never from
the modules inside."""

from __future__ import annotations

from .accumulate import QUANTITIES
from .errors import AblationError
from .replacements import REPLACEMENTS
from .result import AblationResult, is_ablation_file, load_ablation, resolution_note
from .run import (
    InterruptedAblation,
    compute_ablation,
    compute_context_length,
    remove_running_state,
)
from .sentence import SentenceAblation, sentence_ablation

__all__ = [
    "AblationError",
    "AblationResult",
    "InterruptedAblation",
    "QUANTITIES",
    "REPLACEMENTS",
    "compute_ablation",
    "compute_context_length",
    "is_ablation_file",
    "load_ablation",
    "remove_running_state",
    "resolution_note",
    "SentenceAblation",
    "sentence_ablation",
]
