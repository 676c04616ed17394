"""Models built by the user's own code: ``--model-factory file.py:function``.

The file is code the user names, so it counts as trusted: it is imported from its path
and ``function()`` is called with no arguments.  It returns ``(model, vocabulary)``, or a
model with a ``vocab`` attribute, where

- the model is an object of the recurrent protocol (:class:`.recurrent.RecurrentLM`), or
  an ``nn.Module`` that :func:`.adapters.adapt` takes (an ``rnn`` nn.LSTM/GRU/RNN, with
  or without ``proj_size``, or ``rnns`` a list of them, with an ``embedding``/``encoder``
  and a ``decoder``);
- the vocabulary is a list of words in id order, a :class:`stategrad.data.Vocabulary`, or
  the path of a vocabulary file (``word<TAB>id`` lines or one word per line).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

from torch import nn

from ..data import Vocabulary
from .adapters import adapt
from .models import LanguageModel, ModelError


def _split(spec: str) -> tuple[Path, str]:
    path, sep, function = str(spec).rpartition(":")
    if not sep or not path or not function.isidentifier():
        raise ModelError(f"--model-factory {spec!r}: expected FILE.py:FUNCTION")
    return Path(path), function


def _import(path: Path, spec: str):
    if not path.is_file():
        raise ModelError(f"--model-factory: file not found: {path}")
    name = "stategrad_factory_" + hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
    module_spec = importlib.util.spec_from_file_location(name, path)
    if module_spec is None or module_spec.loader is None:
        raise ModelError(f"--model-factory: {path} is not a Python file")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module  # dataclasses and pickling look their module up here
    try:
        module_spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001 - the user's code can raise anything
        sys.modules.pop(name, None)
        raise ModelError(f"--model-factory {spec}: importing {path} failed: "
                         f"{type(exc).__name__}: {_first_line(exc)}") from exc
    return module


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:200] if lines else ""


def _vocabulary(vocab: Any, spec: str) -> Vocabulary:
    if isinstance(vocab, Vocabulary):
        return vocab
    if isinstance(vocab, (str, os.PathLike)):
        return Vocabulary.load(vocab)
    try:
        words = tuple(vocab)
    except TypeError:
        raise ModelError(f"--model-factory {spec}: the vocabulary must be a list of words, a "
                         f"Vocabulary or a file path, not {type(vocab).__name__}") from None
    if not all(isinstance(w, str) for w in words):
        raise ModelError(f"--model-factory {spec}: the vocabulary must hold words (strings)")
    return Vocabulary(words)


def load_factory(spec: str) -> LanguageModel:
    """The model that ``FILE.py:FUNCTION`` builds, ready for analysis (in eval mode)."""
    path, function = _split(spec)
    module = _import(path, spec)
    make = getattr(module, function, None)
    if not callable(make):
        raise ModelError(f"--model-factory {spec}: {path} defines no function {function!r}")
    try:
        made = make()
    except Exception as exc:  # noqa: BLE001 - the user's code can raise anything
        raise ModelError(f"--model-factory {spec}: {function}() failed: "
                         f"{type(exc).__name__}: {_first_line(exc)}") from exc
    if isinstance(made, tuple) and len(made) == 2:
        model, vocab = made
    else:
        model, vocab = made, getattr(made, "vocab", None)
    if not isinstance(model, nn.Module):
        raise ModelError(f"--model-factory {spec}: {function}() must return (model, vocabulary) "
                         f"with model an nn.Module, got {type(model).__name__}")
    if vocab is None:
        raise ModelError(f"--model-factory {spec}: {function}() returned no vocabulary: return "
                         "(model, vocabulary) or give the model a 'vocab'")
    try:
        lm = adapt(model)
        vocabulary = _vocabulary(vocab, spec)
    except (ModelError, OSError) as exc:
        raise ModelError(f"--model-factory {spec}: {exc}") from exc
    if len(vocabulary) != int(lm.vocab_size):
        raise ModelError(f"--model-factory {spec}: the vocabulary has {len(vocabulary)} words, "
                         f"the model {lm.vocab_size}")
    lm.eval()
    return LanguageModel(lm, vocabulary, f"{path}:{function}", foreign=True)
