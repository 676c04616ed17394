"""The parts of a language model the ablation runs: the fused RNN (or a model of the
recurrent protocol, stepped one token at a time), the embedding and the decoder, in the
compute dtype, and the log-probabilities it predicts.

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

from ..lm import (
    LanguageModel,
    embedding_matrix,
    flatten_state,
    is_recurrent_lm,
    model_hash,
    unflatten_state,
)
from .errors import AblationError

# A state as the fused module takes it: h (L, B, H), or (h, c) for an LSTM; a protocol
# model's own state (batch first) otherwise.
State = torch.Tensor | tuple[torch.Tensor, torch.Tensor] | object


class ProtocolRunner:
    """A model of the recurrent protocol run as a fused ``nn.RNN`` is: inputs (T, B, E)
    from a state -> (what its output layer reads at each step (T, B, H), the state after).

    What the output layer reads: ``features(state)`` where the model has it and its
    ``decoder`` is linear (logits = decoder(features)), so that the ablation keeps H
    numbers a prediction, not V; otherwise the logits themselves (an identity decoder)."""

    def __init__(self, module: torch.nn.Module):
        self.module = module
        linear = isinstance(getattr(module, "decoder", None), torch.nn.Linear)
        self.reads_features = linear and callable(getattr(module, "features", None))
        self.features = module.features if self.reads_features else module.logits
        self.num_layers = int(getattr(module, "num_layers", 1))

    def __call__(self, inputs: torch.Tensor, state) -> tuple[torch.Tensor, object]:
        outs = []
        for x in inputs:
            state = self.module.step(x, state)
            outs.append(self.features(state))
        if not outs:
            return inputs.new_zeros((0, inputs.shape[1], 0)), state
        return torch.stack(outs), state


@dataclass
class ModelParts:
    """What the ablation needs of a model; ``vocab`` is None for a bare module."""

    rnn: torch.nn.RNNBase | ProtocolRunner
    embedding: torch.Tensor  # (V, E)
    decoder_weight: torch.Tensor | None  # (V, H); None: the runner's outputs are logits
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
        return self.vocab_size if self.decoder_weight is None else self.decoder_weight.shape[1]

    @property
    def protocol(self) -> bool:
        return isinstance(self.rnn, ProtocolRunner)

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
    device = torch.device(device)
    if is_recurrent_lm(module):
        return _protocol_parts(module, vocab, identity, device, dtype)
    try:
        emb = module.embedding if hasattr(module, "embedding") else module.encoder
        rnn, dec = module.rnn, module.decoder
    except AttributeError as exc:
        raise AblationError(f"the model lacks an embedding, rnn or decoder ({exc})") from exc
    if getattr(rnn, "batch_first", False):
        raise AblationError("batch_first RNN modules are not supported")
    with torch.no_grad():
        rnn = copy.deepcopy(rnn).to(device, dtype).eval()
        return ModelParts(
            rnn=rnn,
            embedding=emb.weight.detach().to(device, dtype).clone(),
            decoder_weight=dec.weight.detach().to(device, dtype).clone(),
            decoder_bias=None if dec.bias is None else dec.bias.detach().to(device, dtype).clone(),
            lstm=isinstance(rnn, torch.nn.LSTM), vocab=vocab, identity=identity,
            device=device, dtype=dtype)


def _protocol_parts(module, vocab, identity, device, dtype) -> ModelParts:
    with torch.no_grad():
        runner = ProtocolRunner(copy.deepcopy(module).to(device, dtype).eval())
        dec = runner.module.decoder if runner.reads_features else None
        return ModelParts(
            rnn=runner, embedding=embedding_matrix(runner.module).clone(),
            decoder_weight=None if dec is None else dec.weight.detach().clone(),
            decoder_bias=None if dec is None or dec.bias is None else dec.bias.detach().clone(),
            lstm=False, vocab=vocab, identity=identity, device=device, dtype=dtype)


def zero_state(parts: ModelParts, batch: int) -> State:
    if parts.protocol:
        return parts.rnn.module.initial_state(batch, parts.device, parts.dtype)
    h = torch.zeros(parts.n_layers, batch, parts.hidden_size, device=parts.device,
                    dtype=parts.dtype)
    return (h, h.clone()) if parts.lstm else h


def top_h(parts: ModelParts, state: State) -> torch.Tensor:
    """The top layer's h of a state (a protocol model: what its output layer reads), (B, H)."""
    if parts.protocol:
        return parts.rnn.features(state)
    return (state[0] if parts.lstm else state)[-1]


def cat_states(parts: ModelParts, states: list[State]) -> State:
    """Batch-1 states joined along the batch dimension."""
    if parts.protocol:  # batch first, any structure
        flat = [flatten_state(s) for s in states]
        leaves = [torch.cat(parts_, 0) for parts_ in zip(*(f[0] for f in flat), strict=True)]
        return unflatten_state(leaves, flat[0][1])
    if parts.lstm:
        return (torch.cat([s[0] for s in states], 1), torch.cat([s[1] for s in states], 1))
    return torch.cat(states, 1)


def log_probs(parts: ModelParts, h: torch.Tensor) -> torch.Tensor:
    """``log softmax(decoder(h))`` of rows h (..., H) -> (..., V), in float64 whatever the
    compute dtype: the sums over the vocabulary behind a KL lose ~1e-5 nats in float32
    (a 22% error at distance 50 for an LSTM-128 on PTB), far more than the states do."""
    return torch.log_softmax(logits_of(parts, h).double(), dim=-1)


def logits_of(parts: ModelParts, h: torch.Tensor) -> torch.Tensor:
    if parts.decoder_weight is None:
        return h
    logits = h @ parts.decoder_weight.T
    if parts.decoder_bias is not None:
        logits += parts.decoder_bias
    return logits


def check_tokens(parts: ModelParts, tokens: np.ndarray) -> np.ndarray:
    tokens = np.ascontiguousarray(np.asarray(tokens, dtype=np.int64))
    if tokens.ndim != 1:
        raise AblationError("tokens must be a 1-d sequence of ids")
    V = parts.vocab_size
    if len(tokens) and (tokens.min() < 0 or tokens.max() >= V):
        raise AblationError(f"token ids must lie in 0..{V - 1} (the model's vocabulary); found "
                            f"{tokens.min()}..{tokens.max()}")
    return tokens
