"""The parts of a language model the ablation runs: the fused RNN, the embedding and the
decoder, in the compute dtype, and the log-probabilities it predicts.

Notation used throughout the package: ``w_0 .. w_{N-1}`` is the text, ``s_j`` the
recurrent state after reading ``w_0 .. w_j`` (``s_{-1}`` the initial state, zeros) and
``p(. | s_{j-1}) = softmax(decoder(top h of s_{j-1}))`` the prediction of ``w_j``: the
*loss at position j* is ``-log p(w_j | s_{j-1})``, the prediction of w_j from the
context up to j - 1.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch

from ..lm import LanguageModel, model_hash
from .errors import AblationError

# A state as the fused module takes it: h (L, B, H), or (h, c) for an LSTM.
State = torch.Tensor | tuple[torch.Tensor, torch.Tensor]


@dataclass
class ModelParts:
    """What the ablation needs of a model; ``vocab`` is None for a bare module."""

    rnn: torch.nn.RNNBase
    embedding: torch.Tensor  # (V, E)
    decoder_weight: torch.Tensor  # (V, H)
    decoder_bias: torch.Tensor | None
    lstm: bool
    vocab: list[str] | None
    identity: str
    device: torch.device
    dtype: torch.dtype

    @property
    def vocab_size(self) -> int:
        return self.embedding.shape[0]

    @property
    def hidden_size(self) -> int:
        return self.decoder_weight.shape[1]

    @property
    def n_layers(self) -> int:
        return self.rnn.num_layers


def model_parts(model, device: str | torch.device = "cpu",
                dtype: torch.dtype = torch.float32) -> ModelParts:
    """The parts of a :class:`LanguageModel` or a bare RNNLM-like module (``embedding`` or
    ``encoder``, ``rnn``, ``decoder``), copied to ``device`` and ``dtype`` in eval mode, so
    the user's module keeps its own."""
    if isinstance(model, LanguageModel):
        module, vocab, identity = model.module, list(model.vocab.words), model.identity()
    else:
        module, vocab, identity = model, None, model_hash(model)
    try:
        emb = module.embedding if hasattr(module, "embedding") else module.encoder
        rnn, dec = module.rnn, module.decoder
    except AttributeError as exc:
        raise AblationError(f"the model lacks an embedding, rnn or decoder ({exc})") from exc
    if getattr(rnn, "batch_first", False):
        raise AblationError("batch_first RNN modules are not supported")
    device = torch.device(device)
    with torch.no_grad():
        rnn = copy.deepcopy(rnn).to(device, dtype).eval()
        return ModelParts(
            rnn=rnn,
            embedding=emb.weight.detach().to(device, dtype).clone(),
            decoder_weight=dec.weight.detach().to(device, dtype).clone(),
            decoder_bias=None if dec.bias is None else dec.bias.detach().to(device, dtype).clone(),
            lstm=isinstance(rnn, torch.nn.LSTM), vocab=vocab, identity=identity,
            device=device, dtype=dtype)


def zero_state(parts: ModelParts, batch: int) -> State:
    h = torch.zeros(parts.n_layers, batch, parts.hidden_size, device=parts.device,
                    dtype=parts.dtype)
    return (h, h.clone()) if parts.lstm else h


def top_h(parts: ModelParts, state: State) -> torch.Tensor:
    """The top layer's h of a state, (B, H)."""
    return (state[0] if parts.lstm else state)[-1]


def cat_states(parts: ModelParts, states: list[State]) -> State:
    """Batch-1 states joined along the batch dimension."""
    if parts.lstm:
        return (torch.cat([s[0] for s in states], 1), torch.cat([s[1] for s in states], 1))
    return torch.cat(states, 1)


def log_probs(parts: ModelParts, h: torch.Tensor) -> torch.Tensor:
    """``log softmax(decoder(h))`` of rows h (..., H) -> (..., V)."""
    logits = h @ parts.decoder_weight.T
    if parts.decoder_bias is not None:
        logits += parts.decoder_bias
    return torch.log_softmax(logits, dim=-1)


def check_tokens(parts: ModelParts, tokens: np.ndarray) -> np.ndarray:
    tokens = np.ascontiguousarray(np.asarray(tokens, dtype=np.int64))
    if tokens.ndim != 1:
        raise AblationError("tokens must be a 1-d sequence of ids")
    V = parts.vocab_size
    if len(tokens) and (tokens.min() < 0 or tokens.max() >= V):
        raise AblationError(f"token ids must lie in 0..{V - 1} (the model's vocabulary); found "
                            f"{tokens.min()}..{tokens.max()}")
    return tokens
