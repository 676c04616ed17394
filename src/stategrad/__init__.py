"""stategrad: state gradients of recurrent language models.

The public API, for notebooks and scripts; the ``stategrad`` command is a thin
layer over these functions.  Names are imported on first use, so ``import
stategrad`` stays quick (matplotlib, scikit-learn and h5py load only when needed).

    import stategrad as sg
    lm = sg.load_model("run/best.pt")
    tokens = sg.read_tokens("valid.txt", lm.vocab)
    res = sg.compute_state_gradients(lm, tokens, max_delay=50, state="cell")
    res.mean(10, "all")          # the average G at delay 10, an H x E array
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> subpackage that exports it
_API = {
    # data
    "Vocabulary": "data",
    "read_tokens": "data",
    "ClassSet": "data",
    "load_classes": "data",
    "load_token_classes": "data",  # classes of each token of a tagged text
    "TokenClassSet": "data",
    "word_ranks": "data",  # frequency ranks, and strata of classes by them
    "stratify": "data",
    "prepare_tagged": "data",
    # models and training
    "ModelSpec": "lm",
    "RNNLM": "lm",
    "LanguageModel": "lm",
    "load_model": "lm",
    "RecurrentLM": "lm",  # the protocol any recurrent model can implement
    "load_factory": "lm",
    "load_config": "legacy",  # reads TOML or the original's .config
    "TrainConfig": "lm",
    "train": "lm",
    "evaluate": "lm",
    # the engine and its results
    "compute_state_gradients": "gradients",
    "sentence_gradients": "gradients",
    "StateGradientEngine": "gradients",
    "GradientResult": "gradients",
    "load_result": "gradients",
    # context ablation, beside the gradients
    "compute_ablation": "ablation",
    "compute_context_length": "ablation",
    "load_ablation": "ablation",
    "ablation_table": "analysis",
    # analysis
    "EmbeddingStats": "analysis",
    "embedding_stats_for_model": "analysis",
    "load_embedding_stats": "analysis",
    "singular_value_table": "analysis",
    "memory_curves": "analysis",
    "difference_vector": "analysis",
    "relative_memory": "analysis",
    "locate_property": "analysis",
    "identity_table": "analysis",
    "pos_probe": "analysis",
    # figures and reports
    "build_report": "report",
    "sentence_map": "report",
    # synthetic language
    "SynthConfig": "synth",
    "generate_corpus": "synth",
}

__all__ = sorted(_API) + ["__version__"]


def __getattr__(name: str) -> Any:
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'stategrad' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
