"""Training configuration: a validated TOML schema (:class:`TrainConfig`).

Sections ``[data]``, ``[model]``, ``[training]``, ``[output]``.  Unknown keys are errors
that name the closest valid key; wrong types and out-of-range values are errors that
name the key.  ``model.dropout`` is a **drop** probability (PyTorch's convention, 0 = no
dropout).  The original's whitespace ``.config`` format, and :func:`load_config` that
reads either, live in :mod:`stategrad.legacy` (the original's formats sit on top).

Relative paths are taken relative to the working directory, as the original did.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class ConfigError(ValueError):
    """A configuration file or value that cannot be used; the message names the key."""


_STRICT = ConfigDict(extra="forbid", strict=True, validate_assignment=True, allow_inf_nan=False)


class DataConfig(BaseModel):
    """Where the text is and how it becomes token ids."""

    model_config = _STRICT

    path: str | None = None
    """Folder with ``train.txt``, ``valid.txt`` and ``test.txt``."""
    train: str | None = None
    valid: str | None = None
    test: str | None = None
    vocab_size: int | None = Field(default=None, ge=2)
    """Cap on the vocabulary (``<unk>`` and ``<bos>`` included); rarer words map to ``<unk>``."""
    vocab_file: str | None = None
    """Read the vocabulary (``word<TAB>id``) from this file; unseen training words are appended."""
    save_vocab: str | None = None
    """Also write the vocabulary to this file (it is always written to ``save_path/vocab.txt``)."""
    encoding: str = "utf-8"
    no_eos: bool = False
    tokenization: Literal["original", "plain"] = "original"
    """How a line becomes tokens: ``original`` (the original code's rules, with the
    WikiText rule for paths containing ``wikitext``) or ``plain`` (word_language_model's:
    ``<eos>`` per line, ``.`` kept).  Recorded in the checkpoints, so analyses read texts
    the way the model was trained."""

    @model_validator(mode="after")
    def _encoding_known(self) -> DataConfig:
        import codecs

        try:
            codecs.lookup(self.encoding)
        except LookupError:
            raise ValueError(f"encoding: unknown text encoding {self.encoding!r}") from None
        return self


class ModelConfig(BaseModel):
    model_config = _STRICT

    cell: Literal["lstm", "gru", "rnn_tanh", "rnn_relu", "mamba"] = "lstm"
    num_layers: int = Field(default=1, ge=1)
    embedding_size: int | None = Field(default=None, ge=1)
    """Defaults to ``hidden_size``, as in the original."""
    hidden_size: int = Field(default=256, ge=1)
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    """Drop probability (0 = none).  The original's ``.config`` keep probability k is 1 - k here."""
    embedding_dropout: bool = True
    """Dropout on the embeddings too (the original's ``no_emb_dropout True`` sets this false)."""
    init_scale: float = Field(default=0.05, gt=0.0)
    forget_bias: float = 0.0
    tie_weights: bool = False
    pretrained_embeddings: str | None = None
    fixed_embeddings: bool = False
    d_state: int = Field(default=16, ge=1)
    """Mamba: state size per inner channel (the ``ssm`` state is d_inner x d_state)."""
    d_conv: int = Field(default=4, ge=1)
    """Mamba: width of the causal convolution (the ``conv`` state keeps d_conv - 1 inputs)."""
    expand: int = Field(default=2, ge=1)
    """Mamba: d_inner = expand * hidden_size."""

    @model_validator(mode="after")
    def _consistent(self) -> ModelConfig:
        if self.fixed_embeddings and self.pretrained_embeddings is None:
            raise ValueError("fixed_embeddings: needs pretrained_embeddings (there is nothing to keep fixed)")
        if self.tie_weights and self.embedding_size not in (None, self.hidden_size):
            raise ValueError("tie_weights: needs embedding_size == hidden_size")
        if self.cell == "mamba" and self.embedding_size not in (None, self.hidden_size):
            raise ValueError("embedding_size: a mamba model needs embedding_size == hidden_size")
        return self

    @property
    def emb_size(self) -> int:
        return self.embedding_size if self.embedding_size is not None else self.hidden_size


class TrainingOptions(BaseModel):
    model_config = _STRICT

    optimizer: Literal["sgd", "adam", "adagrad"] = "sgd"
    learning_rate: float = Field(default=1.0, gt=0.0)
    lr_decay: float = Field(default=1.0, gt=0.0, le=1.0)
    """Learning rate of epoch i (from 0): ``learning_rate * lr_decay ** max(i + 1 - max_epoch, 0)``."""
    max_epoch: int = Field(default=1, ge=1)
    """Epochs trained at the full learning rate before decay starts."""
    max_max_epoch: int = Field(default=1, ge=1)
    """Total number of epochs."""
    batch_size: int = Field(default=20, ge=1)
    num_steps: int = Field(default=35, ge=1)
    max_grad_norm: float | None = Field(default=5.0, gt=0.0)
    """Clip gradients to this global norm; ``None`` (leave it out) = no clipping."""
    early_stop: int | None = Field(default=None, ge=1)
    """The original's ``earlyStopping`` trainer with ``early_stop n``."""
    softmax: Literal["full", "sampled"] = "full"
    num_sampled: int = Field(default=32, ge=1)
    """Negative samples of the sampled softmax (training only; evaluation is always full)."""
    seed: int = Field(default=1, ge=0)
    device: str = Field(default="cpu", pattern=r"^(cpu|auto|cuda(:\d+)?)$")
    threads: int = Field(default=0, ge=0)
    """``torch.set_num_threads``; 0 keeps PyTorch's default."""


class OutputConfig(BaseModel):
    model_config = _STRICT

    save_path: str = "model"
    """Folder for checkpoints (``last.pt``, ``best.pt``), ``vocab.txt``, metrics and the log."""
    log_file: str | None = None
    """Default ``save_path/train.log``."""
    keep_epoch_checkpoints: bool = False
    """Keep ``epoch_<n>.pt`` for every epoch, as the original did (costs disk)."""


class TrainConfig(BaseModel):
    """The whole configuration of a training run."""

    model_config = _STRICT

    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    training: TrainingOptions = Field(default_factory=TrainingOptions)
    output: OutputConfig = Field(default_factory=OutputConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (stored in checkpoints)."""
        return self.model_dump(mode="json")

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "configuration") -> TrainConfig:
        return validate_config(data, source)


_SECTIONS: dict[str, type[BaseModel]] = {
    "data": DataConfig,
    "model": ModelConfig,
    "training": TrainingOptions,
    "output": OutputConfig,
}

# Names a user of the original (or of other toolkits) is likely to type into TOML.
_HINTS: dict[str, str] = {
    "size": "model.hidden_size",
    "basic_cell": "model.cell",
    "data_path": "data.path",
    "read_vocab_from_file": "data.vocab_file",
    "save_dict": "data.save_vocab",
    "no_emb_dropout": "model.embedding_dropout (= false)",
    "dropout_keep": "model.dropout, a DROP probability (= 1 - keep)",
    "keep_prob": "model.dropout, a DROP probability (= 1 - keep)",
    "trainer": "training.early_stop (set it for the earlyStopping trainer)",
    "log_dir": "output.log_file",
    "log": "output.log_file",
    "other_test": "data.test (or `stategrad eval CONFIG --split PATH`)",
    "hidden": "model.hidden_size",
    "lr": "training.learning_rate",
    "epochs": "training.max_max_epoch",
    "clip": "training.max_grad_norm",
}


def _field_names(model: type[BaseModel]) -> list[str]:
    return list(model.model_fields)


def _unknown_key_message(section: str | None, key: str) -> str:
    where = f"[{section}]" if section else "the top level"
    if key in _HINTS:
        return f"unknown key '{key}' in {where}; use {_HINTS[key]}"
    for name, model in _SECTIONS.items():
        if name != section and key in model.model_fields:
            return f"unknown key '{key}' in {where}; it belongs in [{name}]"
    candidates = _field_names(_SECTIONS[section]) if section else list(_SECTIONS)
    close = difflib.get_close_matches(key, candidates, n=1, cutoff=0.5)
    if not close:
        everything = {f"{s}.{k}": k for s, m in _SECTIONS.items() for k in m.model_fields}
        close_all = difflib.get_close_matches(key, list(everything.values()), n=1, cutoff=0.6)
        if close_all:
            full = next(f for f, k in everything.items() if k == close_all[0])
            return f"unknown key '{key}' in {where}; did you mean '{full}'?"
        valid = ", ".join(candidates)
        return f"unknown key '{key}' in {where}; valid keys: {valid}"
    return f"unknown key '{key}' in {where}; did you mean '{close[0]}'?"


def _short_errors(exc: ValidationError) -> list[str]:
    """One line per problem, naming the key: pydantic's own text is long and generic."""
    lines = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        if err["type"] == "extra_forbidden":
            section = loc[0] if len(loc) > 1 else None
            lines.append(_unknown_key_message(section, loc[-1]))
            continue
        key = ".".join(p for p in loc if not p.isdigit())
        msg = err["msg"]
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
            # our validators name their key first ("fixed_embeddings: ...")
            head, _, rest = msg.partition(": ")
            if rest and " " not in head:
                key = ".".join([*loc, head]) if loc else head
                msg = rest
        if err["type"] == "string_pattern_mismatch" and loc and loc[-1] == "device":
            msg = "must be 'cpu', 'cuda', 'cuda:N' or 'auto'"
        if err["type"] in ("literal_error",):
            expected = err.get("ctx", {}).get("expected", "")
            msg = f"must be one of {expected}"
        shown = err.get("input")
        if isinstance(shown, dict):
            lines.append(f"{key or 'configuration'}: {msg}")
        else:
            lines.append(f"{key or 'configuration'}: {msg} (got {shown!r})")
    return lines


def validate_config(data: dict[str, Any], source: str = "configuration") -> TrainConfig:
    """Validate a nested dict; raise :class:`ConfigError` with one short line per problem."""
    try:
        return TrainConfig.model_validate(data)
    except ValidationError as exc:
        lines = _short_errors(exc)
        raise ConfigError(f"{source}: " + ("\n  ".join(lines) if len(lines) == 1
                                           else "\n  " + "\n  ".join(lines))) from None


def load_toml_config(path: str | os.PathLike) -> TrainConfig:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"configuration file not found: {path}")
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:  # a binary file, or another encoding
        raise ConfigError(f"{path}: not UTF-8 text, so not a TOML file ({exc.reason} at byte "
                          f"{exc.start})") from None
    return validate_config(data, str(path))


# --- data files --------------------------------------------------------------------------

@dataclass(frozen=True)
class DataFiles:
    train: Path | None
    valid: Path | None
    test: Path | None


def data_files(config: TrainConfig) -> DataFiles:
    """Explicit ``train``/``valid``/``test`` win over ``path/{train,valid,test}.txt``."""
    d = config.data
    found: dict[str, Path | None] = {}
    for split in ("train", "valid", "test"):
        explicit = getattr(d, split)
        if explicit is not None:
            found[split] = Path(explicit)
        elif d.path is not None:
            found[split] = Path(d.path) / f"{split}.txt"
        else:
            found[split] = None
    return DataFiles(**found)


def require_file(path: Path | None, what: str) -> Path:
    """Name the split and the keys that set it when a data file is missing."""
    if path is None:
        raise ConfigError(f"no {what} file configured: set data.path (a folder with "
                          f"{what}.txt) or data.{what}")
    if not path.is_file():
        raise ConfigError(f"{what} file not found: {path} (set by data.path or data.{what})")
    return path


def learning_rate_for_epoch(training: TrainingOptions, epoch: int) -> float:
    """The original's schedule, epoch counted from 0."""
    return training.learning_rate * training.lr_decay ** max(epoch + 1 - training.max_epoch, 0)
