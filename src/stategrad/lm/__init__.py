"""The language model: the RNN LM module and its checkpoints, the TOML training
configuration, training (one process or DDP under torchrun).

Other subpackages, the command line and the public API import from here, never from
the modules inside, so the modules can be split without breaking them."""

from __future__ import annotations

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
from .models import (
    RNNLM,
    LanguageModel,
    ModelError,
    ModelSpec,
    load_model,
    model_hash,
    read_checkpoint,
    save_checkpoint,
    torch_save_atomic,
)
from .training import (
    LAST,
    EarlyStopping,
    EpochProgress,
    LogUniformSampler,
    NonFiniteLossError,
    TrainingError,
    TrainingSummary,
    build_model,
    checkpoint_for,
    evaluate,
    learning_rate,
    load_trained,
    make_optimizer,
    perplexity,
    resolve_device,
    sampled_softmax_cost,
    train,
    train_epoch,
    unk_warning,
)

__all__ = [
    "ConfigError",
    "EarlyStopping",
    "EpochProgress",
    "LAST",
    "LanguageModel",
    "LogUniformSampler",
    "ModelError",
    "ModelSpec",
    "NonFiniteLossError",
    "RNNLM",
    "TrainConfig",
    "TrainingError",
    "TrainingOptions",
    "TrainingSummary",
    "TrainingSync",
    "build_model",
    "checkpoint_for",
    "data_files",
    "evaluate",
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
]
