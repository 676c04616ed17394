"""The language model: the RNN LM module and its checkpoints, the TOML training
configuration, training (one process or DDP under torchrun).

Other subpackages, the command line and the public API import from here, never from
the modules inside, so the modules can be split without breaking them."""

from __future__ import annotations

from ..atomic import torch_save_atomic
from ..data import unk_warning
from .adapters import LayeredRNN, adapt, needs_generic
from .checkpoints import load_model, read_checkpoint, save_checkpoint
from .config import (
    ConfigError,
    TrainConfig,
    TrainingOptions,
    data_files,
    learning_rate_for_epoch,
    load_toml_config,
    require_file,
    validate_config,
)
from .ddp import TrainingSync
from .errors import NonFiniteLossError, TrainingError
from .factory import load_factory
from .hf_mamba import HFMamba
from .loop import EpochProgress, evaluate, perplexity, train_epoch
from .mamba import MambaLM
from .models import (
    RNNLM,
    STATE_SPACE_CELLS,
    LanguageModel,
    ModelError,
    ModelSpec,
    build_module,
    is_fused,
    model_hash,
)
from .optim import (
    EarlyStopping,
    LogUniformSampler,
    learning_rate,
    make_optimizer,
    sampled_softmax_cost,
)
from .prepare import build_model, resolve_device
from .recurrent import (
    RecurrentLM,
    embedding_matrix,
    flatten_state,
    is_recurrent_lm,
    missing_members,
    run_steps,
    unflatten_state,
)
from .rundir import LAST
from .training import TrainingSummary, checkpoint_for, load_trained, train
from .vocab_check import check_vocabulary_order, vocabulary_fit

__all__ = [
    "run_steps",
    "load_factory",
    "unflatten_state",
    "missing_members",
    "is_recurrent_lm",
    "flatten_state",
    "embedding_matrix",
    "needs_generic",
    "adapt",
    "RecurrentLM",
    "LayeredRNN",
    "ConfigError",
    "EarlyStopping",
    "EpochProgress",
    "HFMamba",
    "LAST",
    "LanguageModel",
    "MambaLM",
    "LogUniformSampler",
    "ModelError",
    "ModelSpec",
    "NonFiniteLossError",
    "RNNLM",
    "STATE_SPACE_CELLS",
    "TrainConfig",
    "TrainingError",
    "TrainingOptions",
    "TrainingSummary",
    "TrainingSync",
    "build_model",
    "build_module",
    "check_vocabulary_order",
    "checkpoint_for",
    "data_files",
    "evaluate",
    "is_fused",
    "learning_rate",
    "learning_rate_for_epoch",
    "load_model",
    "load_toml_config",
    "load_trained",
    "make_optimizer",
    "model_hash",
    "perplexity",
    "read_checkpoint",
    "require_file",
    "resolve_device",
    "sampled_softmax_cost",
    "save_checkpoint",
    "torch_save_atomic",
    "train",
    "train_epoch",
    "unk_warning",
    "validate_config",
    "vocabulary_fit",
]
