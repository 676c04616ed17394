"""The synthetic language with planted memory, and its corpora.

Other subpackages, the command line and the public API import from here, never from
the modules inside, so the modules can be split without breaking them."""

from __future__ import annotations

from .language import (
    PRESETS,
    PROPERTIES,
    VARIANCE_PROFILES,
    SynthConfig,
    SynthCorpus,
    SynthError,
    SynthLanguage,
    TriggerClass,
    generate_corpus,
    load_corpus,
    preset,
)

__all__ = [
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
]
