"""The synthetic language with planted memory, and its corpora.

Other subpackages, the command line and the public API import from here, never from
the modules inside, so the modules can be split without breaking them."""

from __future__ import annotations

from .config import (
    PRESETS,
    PROPERTIES,
    VARIANCE_PROFILES,
    SynthConfig,
    SynthError,
    TriggerClass,
    preset,
    property_class,
)
from .corpus import SynthCorpus, generate_corpus, load_corpus
from .entropy import EntropyReport
from .language import SynthLanguage

__all__ = [
    "EntropyReport",
    "PRESETS",
    "PROPERTIES",
    "SynthConfig",
    "SynthCorpus",
    "SynthError",
    "SynthLanguage",
    "TriggerClass",
    "VARIANCE_PROFILES",
    "generate_corpus",
    "load_corpus",
    "preset",
    "property_class",
]
