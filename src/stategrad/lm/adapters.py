"""Built-in adapters from PyTorch's recurrent modules to the :mod:`.recurrent` protocol.

``LayeredRNN`` runs a list of layers, each one layer of an ``nn.LSTM``/``nn.GRU``/``nn.RNN``
(of any sizes, an LSTM with or without ``proj_size``), one step at a time with the
module's own weights.  It covers the two layouts the fused engine cannot take: LSTMs with
projections and stacks of single-layer modules of different sizes (AWD-LSTM's
``rnns = ModuleList([LSTM(400, 1150), LSTM(1150, 1150), LSTM(1150, 400)])``).
Its state is a tuple over layers of ``{"hidden": (B, H_out), "cell": (B, H)}`` (no
``cell`` for a GRU or RNN layer); any layer's hidden or cell state can be analysed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .models import ModelError
from .recurrent import RecurrentLM, is_recurrent_lm


def _cell_kind(rnn: nn.RNNBase) -> str:
    if isinstance(rnn, nn.LSTM):
        return "lstm"
    if isinstance(rnn, nn.GRU):
        return "gru"
    if isinstance(rnn, nn.RNN):
        return "rnn_relu" if rnn.nonlinearity == "relu" else "rnn_tanh"
    raise ModelError(f"unsupported recurrent module {type(rnn).__name__}")


class LayeredRNN(RecurrentLM):
    """An embedding, layers taken from recurrent modules, an optional linear decoder."""

    def __init__(self, embedding: nn.Embedding, rnns: list[nn.RNNBase],
                 decoder: nn.Module | None = None):
        super().__init__()
        for rnn in rnns:
            _cell_kind(rnn)
            if rnn.bidirectional:
                raise ModelError("bidirectional RNNs are not language models; not supported")
        self.embedding = embedding
        self.rnns = nn.ModuleList(rnns)
        self.decoder = decoder
        # (module index, layer inside it) for every layer, bottom first
        self.layout = [(i, k) for i, rnn in enumerate(rnns) for k in range(rnn.num_layers)]
        self.num_layers = len(self.layout)
        self.vocab_size = embedding.num_embeddings
        kinds = {_cell_kind(r) for r in rnns}
        self.state_names = ("cell", "hidden") if "lstm" in kinds else ("hidden",)
        self.cell_name = kinds.pop() if len(kinds) == 1 else "mixed"

    @property
    def fused_model(self) -> nn.Module | None:
        """This model as the fused engine takes it (``embedding``, ``rnn``), when it is one
        fused module without projections; None otherwise."""
        if len(self.rnns) != 1 or getattr(self.rnns[0], "proj_size", 0):
            return None
        view = nn.Module()
        view.embedding, view.rnn = self.embedding, self.rnns[0]
        return view

    def _weights(self, layer: int):
        i, k = self.layout[layer]
        rnn = self.rnns[i]
        get = lambda name: getattr(rnn, f"{name}_l{k}", None)  # noqa: E731
        return rnn, get("weight_ih"), get("weight_hh"), get("bias_ih"), get("bias_hh"), get("weight_hr")

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self.embedding(ids)

    def initial_state(self, batch: int, device, dtype):
        state = []
        for layer in range(self.num_layers):
            rnn, *_ = self._weights(layer)
            out = getattr(rnn, "proj_size", 0) or rnn.hidden_size
            s = {"hidden": torch.zeros(batch, out, device=device, dtype=dtype)}
            if isinstance(rnn, nn.LSTM):
                s["cell"] = torch.zeros(batch, rnn.hidden_size, device=device, dtype=dtype)
            state.append(s)
        return tuple(state)

    def step(self, x: torch.Tensor, state):
        new = []
        for layer, s in enumerate(state):
            rnn, w_ih, w_hh, b_ih, b_hh, w_hr = self._weights(layer)
            gi, gh = F.linear(x, w_ih, b_ih), F.linear(s["hidden"], w_hh, b_hh)
            kind = _cell_kind(rnn)
            if kind == "lstm":
                i, f, g, o = (gi + gh).chunk(4, dim=-1)
                c = torch.sigmoid(f) * s["cell"] + torch.sigmoid(i) * torch.tanh(g)
                h = torch.sigmoid(o) * torch.tanh(c)
                if w_hr is not None:
                    h = F.linear(h, w_hr)
                new.append({"hidden": h, "cell": c})
            elif kind == "gru":
                i_r, i_z, i_n = gi.chunk(3, dim=-1)
                h_r, h_z, h_n = gh.chunk(3, dim=-1)
                r, z = torch.sigmoid(i_r + h_r), torch.sigmoid(i_z + h_z)
                n = torch.tanh(i_n + r * h_n)
                new.append({"hidden": (1 - z) * n + z * s["hidden"]})
            else:
                act = torch.relu if kind == "rnn_relu" else torch.tanh
                new.append({"hidden": act(gi + gh)})
            x = new[-1]["hidden"]
        return tuple(new)

    def select(self, state, name: str, layer: int) -> torch.Tensor:
        if name not in state[layer]:
            raise ModelError(f"layer {layer} ({_cell_kind(self._weights(layer)[0]).upper()}) "
                             f"has no {name} state; it has {sorted(state[layer])}")
        return state[layer][name]

    def features(self, state) -> torch.Tensor:
        """What the decoder reads: the top layer's hidden state."""
        return state[-1]["hidden"]

    def logits(self, state) -> torch.Tensor:
        if self.decoder is None:
            raise ModelError("this model has no decoder: it gives states, not word probabilities")
        return self.decoder(self.features(state))


def _embedding_of(module: nn.Module) -> nn.Embedding:
    for name in ("embedding", "encoder", "embed", "emb"):
        emb = getattr(module, name, None)
        if isinstance(emb, nn.Embedding):
            return emb
    raise ModelError(f"{type(module).__name__} has no nn.Embedding named embedding or encoder")


def adapt(module: nn.Module) -> nn.Module:
    """``module`` as a protocol model: itself if it implements the protocol, else a
    ``LayeredRNN`` over its ``rnn`` (one fused module) or ``rnns`` (a list of them), with
    its ``embedding``/``encoder`` and its ``decoder``."""
    if is_recurrent_lm(module):
        return module
    rnn = getattr(module, "rnn", None)
    rnns = getattr(module, "rnns", None)
    if isinstance(rnn, nn.RNNBase):
        layers = [rnn]
    elif isinstance(rnns, (nn.ModuleList, list, tuple)) and rnns and all(
            isinstance(r, nn.RNNBase) for r in rnns):
        layers = list(rnns)
    else:
        raise ModelError(
            f"{type(module).__name__} is neither a recurrent LM (embed, initial_state, step, "
            "select, logits, state_names) nor a module with an 'rnn' (nn.LSTM/GRU/RNN) or "
            "'rnns' (a list of them) and an embedding")
    decoder = getattr(module, "decoder", None)
    return LayeredRNN(_embedding_of(module), layers, decoder if isinstance(decoder, nn.Module) else None)


def needs_generic(module: nn.Module) -> bool:
    """Whether the fused engine cannot take ``module`` (the generic one can)."""
    if getattr(module, "fused_model", None) is not None:
        return False
    rnn = getattr(module, "rnn", None)
    if is_recurrent_lm(module) or not isinstance(rnn, nn.RNNBase):
        return True
    return bool(getattr(rnn, "proj_size", 0))
