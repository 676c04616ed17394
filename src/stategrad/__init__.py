"""stategrad: state gradients of recurrent language models.

The public API, for notebooks and scripts; the ``stategrad`` command is a thin
layer over these functions.
"""

from .classes import ClassSet
from .corpus import Vocabulary, read_tokens
from .models import LanguageModel, ModelSpec, RNNLM, load_model
from .result import GradientResult, load_result

__version__ = "0.1.0"

__all__ = [
    "ClassSet",
    "GradientResult",
    "LanguageModel",
    "ModelSpec",
    "RNNLM",
    "Vocabulary",
    "load_model",
    "load_result",
    "read_tokens",
    "__version__",
]
