"""Training configuration: a validated TOML schema, and the original's whitespace ``.config``.

Two file formats describe the same :class:`TrainConfig`:

- **TOML** (``*.toml``), sections ``[data]``, ``[model]``, ``[training]``, ``[output]``.
  Unknown keys are errors that name the closest valid key; wrong types and
  out-of-range values are errors that name the key.  ``model.dropout`` is a
  **drop** probability (PyTorch's convention, 0 = no dropout).
- The original code's **legacy** format (any other suffix, e.g. ``*.config``),
  read with the original's rules: a line is split on white space, the first token
  is the key and the *last* token the value, lines with fewer than two tokens are
  ignored, and values become ``True``/``False``, int, float or else str.  There,
  ``dropout`` is a **keep** probability, converted here to ``1 - keep``.

Relative paths in either format are taken relative to the working directory, as
the original did.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from dataclasses import dataclass, field
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

    cell: Literal["lstm", "gru", "rnn_tanh", "rnn_relu"] = "lstm"
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

    @model_validator(mode="after")
    def _consistent(self) -> ModelConfig:
        if self.fixed_embeddings and self.pretrained_embeddings is None:
            raise ValueError("fixed_embeddings: needs pretrained_embeddings (there is nothing to keep fixed)")
        if self.tie_weights and self.embedding_size not in (None, self.hidden_size):
            raise ValueError("tie_weights: needs embedding_size == hidden_size")
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


# --- the original's format ---------------------------------------------------------------

def convert_legacy_value(token: str) -> bool | int | float | str:
    """The original's conversion order: True/False, int, float, else the string."""
    if token == "True":
        return True
    if token == "False":
        return False
    try:
        return int(token)
    except ValueError:
        pass
    try:
        return float(token)
    except ValueError:
        return token


def parse_legacy_config(path: str | os.PathLike, encoding: str = "utf-8") -> dict[str, Any]:
    """Key -> value exactly as the original reads a ``.config`` file (later lines win)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"configuration file not found: {path}")
    raw: dict[str, Any] = {}
    try:
        text = path.read_text(encoding=encoding)
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path} is not {encoding} text: {exc}") from None
    for line in text.splitlines():
        tokens = line.split()
        if len(tokens) < 2:
            continue
        # the LAST token is the value, which makes the shipped "size ` 256" harmless
        raw[tokens[0]] = convert_legacy_value(tokens[-1])
    return raw


GRADIENT_KEYS = ("grad_interm", "time_step", "max_delay", "grad_dir")

# Keys of the original that are refused, and why.
_LEGACY_REJECTED = {
    "random": "runs here are always seeded for reproducibility; to get a different "
              "initialisation put 'seed = N' in [training] of a TOML config "
              "(`stategrad run` and `stategrad train` accept TOML too)",
}

_LEGACY_KEYS = (
    "save_path log_dir log data_path vocab_size vocab basic_cell num_layers embedding_size size "
    "num_steps init_scale learning_rate max_grad_norm batch_size forget_bias dropout max_epoch "
    "max_max_epoch lr_decay optimizer trainer softmax no_emb_dropout pretrained_embeddings "
    "fixed_embeddings other_test save_embedding grad_interm time_step max_delay grad_dir "
    "encoding read_vocab_from_file save_dict valid_as_test no_eos random early_stop"
).split()


@dataclass
class LegacyRun:
    """A ``.config`` file: the training configuration plus the original's run-mode options."""

    config: TrainConfig
    source: str
    raw: dict[str, Any]
    other_test: str | None = None
    valid_as_test: bool = False
    save_embedding: str | None = None
    gradients: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)


def _legacy_fail(path: str, key: str, value: Any, why: str) -> ConfigError:
    return ConfigError(f"{path}: {key} {value!r}: {why}")


def legacy_to_run(raw: dict[str, Any], source: str = "configuration") -> LegacyRun:
    """Map the original's keys onto :class:`TrainConfig` (see the table in the README)."""
    unknown = [k for k in raw if k not in _LEGACY_KEYS]
    if unknown:
        key = unknown[0]
        close = difflib.get_close_matches(key, _LEGACY_KEYS, n=1, cutoff=0.5)
        hint = f"did you mean '{close[0]}'?" if close else "it is not an option of the original"
        raise ConfigError(f"{source}: unknown key '{key}'; {hint}")
    for key, why in _LEGACY_REJECTED.items():
        if key in raw:
            raise _legacy_fail(source, key, raw[key], why)

    notes: list[str] = []
    data: dict[str, Any] = {}
    model: dict[str, Any] = {}
    training: dict[str, Any] = {}
    output: dict[str, Any] = {}

    def text(key: str) -> str:
        value = raw[key]
        if isinstance(value, bool):
            raise _legacy_fail(source, key, value, "expected a path or name, not True/False")
        return str(value)

    if "data_path" in raw:
        data["path"] = text("data_path")
    vocab_k = raw.get("vocab", False)
    if vocab_k is not False:
        if isinstance(vocab_k, bool) or not isinstance(vocab_k, int):
            raise _legacy_fail(source, "vocab", vocab_k,
                               "expected False or an integer k (files train_<k>k-unk.txt etc.)")
        if "data_path" not in raw:
            raise ConfigError(f"{source}: vocab {vocab_k} needs data_path")
        for split in ("train", "valid", "test"):
            data[split] = os.path.join(text("data_path"), f"{split}_{vocab_k}k-unk.txt")
    if "vocab_size" in raw:
        # The original overwrites vocab_size with the size of the vocabulary it builds
        # from the training text; capping here would change old results.
        notes.append("vocab_size is informational in a .config file (the original builds "
                     "the vocabulary from the training text); use data.vocab_size in TOML to cap it")
    if "encoding" in raw:
        data["encoding"] = text("encoding")
    if "no_eos" in raw:
        data["no_eos"] = raw["no_eos"]
    if "read_vocab_from_file" in raw:
        data["vocab_file"] = text("read_vocab_from_file")
    if "save_dict" in raw:
        data["save_vocab"] = text("save_dict") + ".dict"  # the original appends '.dict'

    if "basic_cell" in raw:
        cell = text("basic_cell").lower()
        mapping = {"lstm": "lstm", "gru": "gru", "rnn": "rnn_tanh"}
        if cell not in mapping:
            raise _legacy_fail(source, "basic_cell", raw["basic_cell"], "choose LSTM, GRU or RNN")
        model["cell"] = mapping[cell]
    for key, target in (("num_layers", "num_layers"), ("size", "hidden_size"),
                        ("embedding_size", "embedding_size"), ("init_scale", "init_scale"),
                        ("forget_bias", "forget_bias"), ("fixed_embeddings", "fixed_embeddings")):
        if key in raw:
            model[target] = raw[key]
    if "dropout" in raw:
        keep = raw["dropout"]
        if isinstance(keep, bool) or not isinstance(keep, (int, float)) or not 0 < keep <= 1:
            raise _legacy_fail(source, "dropout", keep,
                               "the original's dropout is a KEEP probability in (0, 1]")
        model["dropout"] = 1.0 - float(keep)
    if "no_emb_dropout" in raw:
        if not isinstance(raw["no_emb_dropout"], bool):
            raise _legacy_fail(source, "no_emb_dropout", raw["no_emb_dropout"], "expected True or False")
        model["embedding_dropout"] = not raw["no_emb_dropout"]
    if "pretrained_embeddings" in raw:
        model["pretrained_embeddings"] = text("pretrained_embeddings")

    for key in ("learning_rate", "lr_decay", "max_epoch", "max_max_epoch", "batch_size",
                "num_steps", "max_grad_norm", "early_stop"):
        if key in raw:
            value = raw[key]
            # the original's config reader yields ints for "1"; our floats accept them
            training[key] = float(value) if key in ("learning_rate", "lr_decay", "max_grad_norm") \
                and isinstance(value, int) and not isinstance(value, bool) else value
    if "optimizer" in raw:
        training["optimizer"] = text("optimizer").lower()
    trainer = raw.get("trainer", "trainer")
    if trainer == "trainer":
        if "early_stop" in raw:
            notes.append("early_stop is ignored by the original's 'trainer trainer'; "
                         "set 'trainer earlyStopping' to use it")
            training.pop("early_stop")
    elif trainer == "earlyStopping":
        if "early_stop" not in raw:
            raise ConfigError(f"{source}: trainer earlyStopping needs 'early_stop N' "
                              "(the number of validation perplexities to compare with)")
    else:
        raise _legacy_fail(source, "trainer", trainer, "supported trainers: trainer, earlyStopping")
    if "softmax" in raw:
        softmax = text("softmax")
        if softmax not in ("full", "sampled"):
            raise _legacy_fail(source, "softmax", softmax,
                               "only 'full' and 'sampled' (32 samples) are supported")
        training["softmax"] = softmax

    if "save_path" in raw:
        output["save_path"] = text("save_path")
    if "log_dir" in raw or "log" in raw:
        # the original: LOG_DIR/<basename of log, or of save_path>.log
        log_dir = text("log_dir") if "log_dir" in raw else output.get("save_path", ".")
        base = os.path.basename(os.path.normpath(text("log") if "log" in raw
                                                 else output.get("save_path", "train")))
        output["log_file"] = os.path.join(log_dir, f"{base}.log")
    if output.get("save_path") is None:
        raise ConfigError(f"{source}: save_path is required (the folder for the model)")

    other_test = text("other_test") if "other_test" in raw else None
    valid_as_test = raw.get("valid_as_test", False)
    if not isinstance(valid_as_test, bool):
        raise _legacy_fail(source, "valid_as_test", valid_as_test, "expected True or False")
    save_embedding = text("save_embedding") if "save_embedding" in raw else None
    if save_embedding is not None and other_test is None:
        raise ConfigError(f"{source}: save_embedding needs other_test (the text whose "
                          "token embeddings are written)")
    gradients = {k: raw[k] for k in GRADIENT_KEYS if k in raw} or None

    config = validate_config({"data": data, "model": model, "training": training,
                              "output": output}, source)
    return LegacyRun(config=config, source=source, raw=dict(raw), other_test=other_test,
                     valid_as_test=valid_as_test, save_embedding=save_embedding,
                     gradients=gradients, notes=notes)


def load_legacy_config(path: str | os.PathLike) -> LegacyRun:
    return legacy_to_run(parse_legacy_config(path), str(path))


def is_toml(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() == ".toml"


def load_run(path: str | os.PathLike) -> LegacyRun:
    """Either format as a :class:`LegacyRun` (a TOML file has no run-mode options)."""
    if is_toml(path):
        return LegacyRun(config=load_toml_config(path), source=str(path), raw={})
    return load_legacy_config(path)


def load_config(path: str | os.PathLike) -> TrainConfig:
    """A ``.toml`` file, or else the original's whitespace format."""
    return load_run(path).config


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
