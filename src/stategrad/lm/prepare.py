"""What a run is made of, checked before any training time is spent: the device, the
vocabulary, the token ids of the splits, a freshly initialised model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..data import BOS, EOS, CorpusError, Vocabulary, iter_sentences, read_tokens
from .config import ConfigError, TrainConfig, data_files, require_file
from .models import ModelSpec, build_module

# --- vocabulary and data ------------------------------------------------------------------

def build_vocabulary(config: TrainConfig) -> Vocabulary:
    """From ``data.vocab_file`` (extended with unseen training words), or the training text."""
    d = config.data
    files = data_files(config)
    train = require_file(files.train, "train")
    opts = {"no_eos": d.no_eos, "encoding": d.encoding, "tokenization": d.tokenization}
    if d.vocab_file is not None:
        vocab = Vocabulary.load(d.vocab_file, encoding=d.encoding)
        words = list(vocab.words)
        known = set(words)
        for sentence in iter_sentences(train, **opts):
            for w in sentence:
                if w not in known:  # the original appends unseen words
                    known.add(w)
                    words.append(w)
        vocab = Vocabulary(tuple(words))
        if d.vocab_size is not None and len(vocab) > d.vocab_size:
            raise ConfigError(f"data.vocab_file {d.vocab_file} plus the unseen training words "
                              f"gives {len(vocab)} words, more than data.vocab_size={d.vocab_size}")
        return vocab
    return Vocabulary.build(train, max_size=d.vocab_size, **opts)


def read_split(config: TrainConfig, path: Path, vocab: Vocabulary) -> np.ndarray:
    return read_tokens(path, vocab, no_eos=config.data.no_eos, encoding=config.data.encoding,
                       tokenization=config.data.tokenization)


def _require_words(tokens: np.ndarray, vocab: Vocabulary, path: Path) -> None:
    """Empty lines give only <eos>: a 3-word vocabulary that cannot learn anything."""
    markers = [i for i in (vocab.get(EOS), vocab.get(BOS)) if i is not None]
    if not np.isin(tokens, markers, invert=True).any():
        raise CorpusError(f"train file {path} has no words (only empty lines): a language "
                          "model needs text to learn from")


def vocabulary_mismatch(expected: Vocabulary, found: Vocabulary) -> str | None:
    if expected.words == found.words:
        return None
    for i, (a, b) in enumerate(zip(expected.words, found.words, strict=False)):
        if a != b:
            return f"id {i} is {b!r} in the checkpoint but {a!r} now"
    return f"the checkpoint has {len(found)} words, the configuration gives {len(expected)}"


# --- device and model ---------------------------------------------------------------------

def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"--device / training.device: unknown device {name!r} (cpu, cuda, "
                          "cuda:N or auto)") from None
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"--device / training.device: {name!r} is not supported (cpu, cuda, "
                          "cuda:N or auto)")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} asked for, but this PyTorch has no usable CUDA "
                          "device; use --device cpu")
    return device


def build_model(config: TrainConfig, vocab: Vocabulary) -> torch.nn.Module:
    """A freshly initialised model (call after seeding)."""
    m = config.model
    spec = ModelSpec(vocab_size=len(vocab), embedding_size=m.emb_size, hidden_size=m.hidden_size,
                     num_layers=m.num_layers, cell=m.cell, dropout=m.dropout,
                     embedding_dropout=m.embedding_dropout, init_scale=m.init_scale,
                     forget_bias=m.forget_bias, tie_weights=m.tie_weights,
                     d_state=m.d_state, d_conv=m.d_conv, expand=m.expand)
    module = build_module(spec)
    if m.pretrained_embeddings is not None:
        # written elsewhere in the package; imported here so training works without it
        from ..data import load_embedding_matrix

        matrix = torch.as_tensor(load_embedding_matrix(m.pretrained_embeddings, vocab))
        if tuple(matrix.shape) != (len(vocab), spec.embedding_size):
            raise ConfigError(
                f"model.pretrained_embeddings {m.pretrained_embeddings}: matrix is "
                f"{tuple(matrix.shape)}, the model needs ({len(vocab)}, {spec.embedding_size}) "
                "(vocabulary size x model.embedding_size)")
        with torch.no_grad():
            module.embedding.weight.copy_(matrix)
    if m.fixed_embeddings:
        module.embedding.weight.requires_grad_(False)
    return module
