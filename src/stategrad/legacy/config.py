"""The original code's whitespace ``.config`` format, read with the original's rules (a
line is split on white space, the first token is the key and the *last* token the value,
lines with fewer than two tokens are ignored, values become ``True``/``False``, int, float
or else str; ``dropout`` is a **keep** probability, converted to ``1 - keep``), and the
loaders that take either format (:func:`load_config`, :func:`load_run`): the TOML schema
itself lives in :mod:`stategrad.lm.config`."""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..lm import ConfigError, TrainConfig, load_toml_config, validate_config


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


# The TOML key of each setting a .config file gives, and the .config key that gives it:
# errors found after the conversion name the key the user wrote.
_CONFIG_KEY_OF = {
    "data.path": "data_path", "data.vocab_file": "read_vocab_from_file",
    "data.save_vocab": "save_dict", "data.encoding": "encoding", "data.no_eos": "no_eos",
    "data.vocab_size": "vocab_size",
    "model.cell": "basic_cell", "model.num_layers": "num_layers", "model.hidden_size": "size",
    "model.embedding_size": "embedding_size", "model.init_scale": "init_scale",
    "model.forget_bias": "forget_bias", "model.dropout": "dropout (a keep probability there)",
    "model.embedding_dropout": "no_emb_dropout",
    "model.pretrained_embeddings": "pretrained_embeddings",
    "model.fixed_embeddings": "fixed_embeddings",
    **{f"training.{k}": k for k in ("optimizer", "learning_rate", "lr_decay", "max_epoch",
                                    "max_max_epoch", "batch_size", "num_steps",
                                    "max_grad_norm", "early_stop", "softmax")},
    "output.save_path": "save_path", "output.log_file": "log_dir/log",
}


def config_key_names(message: str) -> str:
    """``message`` with the TOML keys of the settings of a ``.config`` file replaced by the
    ``.config`` keys that set them (``data.path`` -> ``data_path``)."""
    # the files of data.path: train.txt (or train_<k>k-unk.txt with vocab k) in data_path
    message = re.sub(r"set data\.path \(a folder with (\w+)\.txt\) or data\.\w+",
                     r"set data_path (a folder with \1.txt)", message)
    message = re.sub(r"\(set by data\.path or data\.\w+\)", "(set by data_path)",
                     message)
    return re.sub(r"\b(?:data|model|training|output)\.\w+\b",
                  lambda m: _CONFIG_KEY_OF.get(m.group(0), m.group(0)), message)


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
    """Map the original's keys onto :class:`TrainConfig` (see the table in the README).

    Each section is read in its own step, in the order of the original's file, so the
    first wrong key found is the first one in that order."""
    _check_keys(raw, source)
    notes: list[str] = []
    data = _data_section(raw, source, notes)
    model = _model_section(raw, source)
    training = _training_section(raw, source, notes)
    output = _output_section(raw, source)
    other_test = _text(raw, source, "other_test") if "other_test" in raw else None
    valid_as_test = raw.get("valid_as_test", False)
    if not isinstance(valid_as_test, bool):
        raise _legacy_fail(source, "valid_as_test", valid_as_test, "expected True or False")
    save_embedding = _text(raw, source, "save_embedding") if "save_embedding" in raw else None
    if save_embedding is not None and other_test is None:
        raise ConfigError(f"{source}: save_embedding needs other_test (the text whose "
                          "token embeddings are written)")
    gradients = {k: raw[k] for k in GRADIENT_KEYS if k in raw} or None

    try:
        config = validate_config({"data": data, "model": model, "training": training,
                                  "output": output}, source)
    except ConfigError as exc:
        raise ConfigError(config_key_names(str(exc))) from None
    return LegacyRun(config=config, source=source, raw=dict(raw), other_test=other_test,
                     valid_as_test=valid_as_test, save_embedding=save_embedding,
                     gradients=gradients, notes=notes)


def _check_keys(raw: dict[str, Any], source: str) -> None:
    """Refuse a key the original does not know (naming the closest one) or that is refused here."""
    unknown = [k for k in raw if k not in _LEGACY_KEYS]
    if unknown:
        key = unknown[0]
        close = difflib.get_close_matches(key, _LEGACY_KEYS, n=1, cutoff=0.5)
        hint = f"did you mean '{close[0]}'?" if close else "it is not an option of the original"
        raise ConfigError(f"{source}: unknown key '{key}'; {hint}")
    for key, why in _LEGACY_REJECTED.items():
        if key in raw:
            raise _legacy_fail(source, key, raw[key], why)


def _text(raw: dict[str, Any], source: str, key: str) -> str:
    """A path or name: True/False there is a mistake the original would have carried along."""
    value = raw[key]
    if isinstance(value, bool):
        raise _legacy_fail(source, key, value, "expected a path or name, not True/False")
    return str(value)


def _data_section(raw: dict[str, Any], source: str, notes: list[str]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    if "data_path" in raw:
        data["path"] = _text(raw, source, "data_path")
    vocab_k = raw.get("vocab", False)
    if vocab_k is not False:
        if isinstance(vocab_k, bool) or not isinstance(vocab_k, int):
            raise _legacy_fail(source, "vocab", vocab_k,
                               "expected False or an integer k (files train_<k>k-unk.txt etc.)")
        if "data_path" not in raw:
            raise ConfigError(f"{source}: vocab {vocab_k} needs data_path")
        for split in ("train", "valid", "test"):
            data[split] = os.path.join(_text(raw, source, "data_path"), f"{split}_{vocab_k}k-unk.txt")
    if "vocab_size" in raw:
        # The original overwrites vocab_size with the size of the vocabulary it builds
        # from the training text; capping here would change old results.
        notes.append("vocab_size is informational in a .config file (the original builds "
                     "the vocabulary from the training text); use data.vocab_size in TOML to cap it")
    if "encoding" in raw:
        data["encoding"] = _text(raw, source, "encoding")
    if "no_eos" in raw:
        data["no_eos"] = raw["no_eos"]
    if "read_vocab_from_file" in raw:
        data["vocab_file"] = _text(raw, source, "read_vocab_from_file")
    if "save_dict" in raw:
        data["save_vocab"] = _text(raw, source, "save_dict") + ".dict"  # the original appends '.dict'
    return data


def _model_section(raw: dict[str, Any], source: str) -> dict[str, Any]:
    model: dict[str, Any] = {}
    if "basic_cell" in raw:
        cell = _text(raw, source, "basic_cell").lower()
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
        model["pretrained_embeddings"] = _text(raw, source, "pretrained_embeddings")
    return model


def _training_section(raw: dict[str, Any], source: str, notes: list[str]) -> dict[str, Any]:
    training: dict[str, Any] = {}
    for key in ("learning_rate", "lr_decay", "max_epoch", "max_max_epoch", "batch_size",
                "num_steps", "max_grad_norm", "early_stop"):
        if key in raw:
            value = raw[key]
            # the original's config reader yields ints for "1"; our floats accept them
            training[key] = float(value) if key in ("learning_rate", "lr_decay", "max_grad_norm") \
                and isinstance(value, int) and not isinstance(value, bool) else value
    if "optimizer" in raw:
        training["optimizer"] = _text(raw, source, "optimizer").lower()
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
        softmax = _text(raw, source, "softmax")
        if softmax not in ("full", "sampled"):
            raise _legacy_fail(source, "softmax", softmax,
                               "only 'full' and 'sampled' (32 samples) are supported")
        training["softmax"] = softmax
    return training


def _output_section(raw: dict[str, Any], source: str) -> dict[str, Any]:
    output: dict[str, Any] = {}
    if "save_path" in raw:
        output["save_path"] = _text(raw, source, "save_path")
    if "log_dir" in raw or "log" in raw:
        # the original: LOG_DIR/<basename of log, or of save_path>.log
        log_dir = _text(raw, source, "log_dir") if "log_dir" in raw else output.get("save_path", ".")
        base = os.path.basename(os.path.normpath(_text(raw, source, "log") if "log" in raw
                                                 else output.get("save_path", "train")))
        output["log_file"] = os.path.join(log_dir, f"{base}.log")
    if output.get("save_path") is None:
        raise ConfigError(f"{source}: save_path is required (the folder for the model)")
    return output


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


__all__ = [
    "GRADIENT_KEYS",
    "config_key_names",
    "LegacyRun",
    "convert_legacy_value",
    "is_toml",
    "legacy_to_run",
    "load_config",
    "load_legacy_config",
    "load_run",
    "parse_legacy_config",
]
