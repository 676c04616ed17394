"""The one-command demo, and the checks that state gradients find a memory planted in
advance (see :mod:`.criteria` for what is measured and why).

Other subpackages, the command line and the public API import from here, never from
the modules inside, so the modules can be split without breaking them."""

from __future__ import annotations

from .criteria import Criterion, DemoSummary, describe, evaluate_criteria
from .measures import (
    TargetScores,
    measure,
    target_scores,
    trigger_classes,
)
from .run import run_demo
from .settings import SUMMARY_FILE, DemoError, DemoSettings

__all__ = [
    "Criterion",
    "DemoError",
    "DemoSettings",
    "DemoSummary",
    "SUMMARY_FILE",
    "TargetScores",
    "describe",
    "evaluate_criteria",
    "measure",
    "run_demo",
    "target_scores",
    "trigger_classes",
]
