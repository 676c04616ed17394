"""Word-level recurrent language models: the spec, the module, a model with its vocabulary.

The model is deliberately the same shape as PyTorch's ``word_language_model``
example (an embedding, one fused ``nn.LSTM``/``nn.GRU``/``nn.RNN``, a linear
decoder), so the state gradient engine reads the same parameters whether the
model was trained here or there.  Its files are read and written in :mod:`.checkpoints`.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..data import Vocabulary
from .mamba import MambaLM

CELLS = ("lstm", "gru", "rnn_tanh", "rnn_relu")
#: Cells that are not a fused PyTorch RNN: built by :func:`build_module`.
STATE_SPACE_CELLS = ("mamba",)


class ModelError(ValueError):
    """A model or checkpoint that cannot be used as asked."""


def normalise_cell(name: str) -> str:
    """Accept the original's ``LSTM``/``GRU``/``RNN`` as well as our names."""
    key = name.strip().lower()
    aliases = {"lstm": "lstm", "gru": "gru", "rnn": "rnn_tanh", "rnn_tanh": "rnn_tanh",
               "tanh": "rnn_tanh", "rnn_relu": "rnn_relu", "relu": "rnn_relu", "mamba": "mamba"}
    if key not in aliases:
        raise ModelError(f"unknown cell type {name!r}; choose one of LSTM, GRU, RNN (tanh), "
                         "RNN_RELU, MAMBA")
    return aliases[key]


@dataclass(frozen=True)
class ModelSpec:
    vocab_size: int
    embedding_size: int
    hidden_size: int
    num_layers: int = 1
    cell: str = "lstm"
    dropout: float = 0.0  # drop probability (the original's config holds a keep probability)
    embedding_dropout: bool = True  # the original's ``no_emb_dropout`` turns this off
    init_scale: float = 0.05
    forget_bias: float = 0.0
    tie_weights: bool = False
    # Mamba only (cell "mamba"): state size per channel, convolution width, d_inner / d_model
    d_state: int = 16
    d_conv: int = 4
    expand: int = 2

    def __post_init__(self) -> None:
        object.__setattr__(self, "cell", normalise_cell(self.cell))
        for name in ("vocab_size", "embedding_size", "hidden_size", "num_layers", "d_state",
                     "d_conv", "expand"):
            if getattr(self, name) < 1:
                raise ModelError(f"{name} must be positive, got {getattr(self, name)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ModelError(f"dropout (drop probability) must be in [0, 1), got {self.dropout}")
        if self.tie_weights and self.embedding_size != self.hidden_size:
            raise ModelError("tie_weights needs embedding_size == hidden_size")
        if self.cell == "mamba" and self.embedding_size != self.hidden_size:
            # the embedding enters the residual stream of width d_model
            raise ModelError("a mamba model needs embedding_size == hidden_size (d_model)")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelSpec:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ModelError(f"checkpoint spec has unknown fields {sorted(unknown)}")
        return cls(**data)


class RNNLM(nn.Module):
    """Embedding -> dropout -> stacked RNN (dropout on every layer's output) -> linear."""

    def __init__(self, spec: ModelSpec):
        super().__init__()
        self.spec = spec
        self.embedding = nn.Embedding(spec.vocab_size, spec.embedding_size)
        rnn_dropout = spec.dropout if spec.num_layers > 1 else 0.0
        if spec.cell == "lstm":
            self.rnn: nn.RNNBase = nn.LSTM(spec.embedding_size, spec.hidden_size,
                                           spec.num_layers, dropout=rnn_dropout)
        elif spec.cell == "gru":
            self.rnn = nn.GRU(spec.embedding_size, spec.hidden_size, spec.num_layers,
                              dropout=rnn_dropout)
        else:
            nonlinearity = "tanh" if spec.cell == "rnn_tanh" else "relu"
            self.rnn = nn.RNN(spec.embedding_size, spec.hidden_size, spec.num_layers,
                              nonlinearity=nonlinearity, dropout=rnn_dropout)
        self.dropout = nn.Dropout(spec.dropout)
        self.decoder = nn.Linear(spec.hidden_size, spec.vocab_size)
        if spec.tie_weights:
            self.decoder.weight = self.embedding.weight
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Every weight uniform in [-init_scale, init_scale], as the original.

        TensorFlow's LSTM adds a constant ``forget_bias`` to one trainable bias.  Here
        the forget part of ``bias_ih`` starts at that offset and ``bias_hh`` is held
        at zero, which gives the same function and the same gradient steps.
        """
        scale = self.spec.init_scale
        for p in self.parameters():
            nn.init.uniform_(p, -scale, scale)
        H = self.spec.hidden_size
        for layer in range(self.spec.num_layers):
            b_hh = getattr(self.rnn, f"bias_hh_l{layer}")
            with torch.no_grad():
                b_hh.zero_()
                if self.spec.cell == "lstm":
                    getattr(self.rnn, f"bias_ih_l{layer}")[H : 2 * H] += self.spec.forget_bias
            b_hh.requires_grad_(False)

    def init_state(self, batch_size: int, device: torch.device | str | None = None):
        shape = (self.spec.num_layers, batch_size, self.spec.hidden_size)
        weight = self.decoder.weight
        zeros = torch.zeros(shape, dtype=weight.dtype, device=device or weight.device)
        if self.spec.cell == "lstm":
            return (zeros, zeros.clone())
        return zeros

    def forward(self, inputs: torch.Tensor, state=None, return_hidden: bool = False):
        """``inputs``: (steps, batch) ids.  Returns logits (steps, batch, V) and the new state,
        or the last layer's outputs instead of logits when ``return_hidden``."""
        emb = self.embedding(inputs)
        if self.spec.embedding_dropout:
            emb = self.dropout(emb)
        output, state = self.rnn(emb, state)
        output = self.dropout(output)
        if return_hidden:
            return output, state
        return self.decoder(output), state


def build_module(spec: ModelSpec) -> nn.Module:
    """The freshly initialised module of a spec: an :class:`RNNLM`, or a
    :class:`~stategrad.lm.mamba.MambaLM` for ``cell="mamba"``."""
    if spec.cell == "mamba":
        return MambaLM(spec)
    return RNNLM(spec)


def is_fused(module: nn.Module) -> bool:
    """Whether the module is one of the fused LSTM/GRU/RNN models the fast engine reads."""
    return isinstance(getattr(module, "rnn", None), nn.RNNBase)


def detach_state(state):
    if isinstance(state, tuple):
        return tuple(s.detach() for s in state)
    return state.detach()


@dataclass
class LanguageModel:
    """A model ready for analysis: the module, its vocabulary, and where it came from."""

    module: RNNLM
    vocab: Vocabulary
    source: str = ""
    config: dict[str, Any] = dataclasses.field(default_factory=dict)
    foreign: bool = False  # trained elsewhere: its vocabulary order is the user's word

    @property
    def spec(self) -> ModelSpec:
        return self.module.spec

    @property
    def tokenization(self) -> str:
        """How to read a text for this model by default: the rule a stategrad checkpoint
        was trained with (``original`` for checkpoints that predate the setting), ``plain``
        (word_language_model's) for a model from elsewhere."""
        if self.foreign:
            return "plain"
        data = self.config.get("data") if isinstance(self.config, dict) else None
        return (data or {}).get("tokenization") or "original"

    @property
    def embedding_size(self) -> int:
        """E, for this package's models and for models of the recurrent protocol alike."""
        spec = getattr(self.module, "spec", None)
        if spec is not None:
            return spec.embedding_size
        from .recurrent import embedding_matrix

        return int(embedding_matrix(self.module).shape[1])

    def identity(self) -> str:
        """SHA-256 of the parameters (names, shapes, float64 values) and the vocabulary."""
        return model_hash(self.module, self.vocab)


def model_hash(module: nn.Module, vocab: Vocabulary | None = None) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().to("cpu", torch.float64).contiguous().numpy().tobytes())
    if vocab is not None:
        digest.update("\n".join(vocab.words).encode())
    return digest.hexdigest()
