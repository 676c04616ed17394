"""State-side whitening: the covariance of a model's recurrent state over a text, and
``W_s = Cov(s)^{-1/2}``, so that statistics of ``W_s Gbar_d L`` do not depend on the
state's scale.

Why.  ``G = d s / d x`` carries the units of the state: a cell state whose entries
range over +-10 has larger gradients than a hidden state bounded by 1, and two models
trained differently have states of different spread.  Comparing the sums of singular
values of cell against hidden, LSTM against GRU, or model against model then compares
scales as much as memory.  With ``W_s`` (the symmetric inverse square root of the
state's covariance over the text) the state side is in units of its own spread in every
direction, as ``L`` makes the embedding side: ``W_s G L`` is the change of the whitened
state per whitened input.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import write_bytes_atomic
from ..gradients import GradientResult, json_default
from .embeddings import file_identity
from .errors import AnalysisError

STATE_STATS_FORMAT = "stategrad-state-stats"
STATE_STATS_VERSION = 1
STATES = ("cell", "hidden")


class StateStatsError(AnalysisError):
    """State statistics that cannot be computed, read or used as asked."""


@dataclass
class StateStats:
    """Mean and covariance of one layer's state (``cell`` or ``hidden``) over a text."""

    mean: np.ndarray  # (H,)
    covariance: np.ndarray  # (H, H)
    n_tokens: int
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def state(self) -> str:
        return str(self.metadata.get("state"))

    @property
    def layer(self) -> int:
        return int(self.metadata.get("layer", -1))

    @property
    def whitening(self) -> np.ndarray:
        """``Cov^{-1/2}`` (symmetric, from the eigendecomposition); an error where the
        covariance is singular (a state direction that never moves cannot be scaled)."""
        vals, vecs = np.linalg.eigh(self.covariance)
        if not vals[0] > 1e-12 * max(vals[-1], 1e-300):
            raise StateStatsError(
                f"the {self.state} state's covariance is singular (smallest eigenvalue "
                f"{vals[0]:.3g}, largest {vals[-1]:.3g}): some state direction does not vary "
                "over the text; use a longer text or compare without --whiten-state")
        return (vecs / np.sqrt(vals)) @ vecs.T

    def save(self, path: str | os.PathLike) -> Path:
        buffer = io.BytesIO()
        np.savez(buffer, format=np.array(STATE_STATS_FORMAT),
                 version=np.array(STATE_STATS_VERSION), mean=self.mean,
                 covariance=self.covariance, n_tokens=np.array(self.n_tokens),
                 metadata=np.array(json.dumps(self.metadata, sort_keys=True,
                                              default=json_default)))
        try:
            return write_bytes_atomic(path, buffer.getvalue())
        except OSError as exc:
            raise StateStatsError(f"could not write state statistics {path}: "
                                  f"{exc.strerror or exc}") from exc


def load_state_stats(path: str | os.PathLike) -> StateStats:
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            if "format" not in data or str(data["format"]) != STATE_STATS_FORMAT:
                raise StateStatsError(f"{path} is not a stategrad state-stats file")
            if int(data["version"]) != STATE_STATS_VERSION:
                raise StateStatsError(f"{path} has state-stats version {int(data['version'])}; "
                                      f"this stategrad reads {STATE_STATS_VERSION}")
            return StateStats(np.asarray(data["mean"], np.float64),
                              np.asarray(data["covariance"], np.float64),
                              int(data["n_tokens"]), json.loads(str(data["metadata"])))
    except (ValueError, KeyError, EOFError, OSError) as exc:
        if isinstance(exc, StateStatsError):
            raise
        if isinstance(exc, OSError) and not path.is_file():
            raise
        raise StateStatsError(f"{path} is not a readable state-stats file ({exc})") from exc


def state_stats_for_model(model: Any, text: str | os.PathLike | np.ndarray, *,
                          state: str = "cell", layer: int = -1) -> StateStats:
    """Mean and covariance of ``state`` of ``layer`` (-1: the last) over a text (a file,
    read as for the gradients, or an array of token ids) run through the model in one
    stream from a zero state."""
    from ..data import read_tokens

    spec = model.module.spec
    if state not in STATES:
        raise StateStatsError(f"state must be one of {STATES}, got {state!r}")
    if state == "cell" and spec.cell != "lstm":
        raise StateStatsError(f"a {spec.cell} has no cell state; use --state hidden")
    if not -spec.num_layers <= layer < spec.num_layers:
        raise StateStatsError(f"the model has {spec.num_layers} layer(s); no layer {layer}")
    layer %= spec.num_layers
    if isinstance(text, np.ndarray):
        tokens, text_meta = text, {"source": "token array"}
    else:
        tokens, text_meta = read_tokens(text, model.vocab), file_identity(text)
    tokens = np.asarray(tokens, dtype=np.int64)
    text_meta["tokens"] = n = int(len(tokens))
    if n < 2:
        raise StateStatsError("state statistics need a text of at least two tokens")
    total, outer = np.zeros(spec.hidden_size), np.zeros((spec.hidden_size,) * 2)
    for S in _LayerStates(model.module, layer, state).run(tokens):
        total += S.sum(axis=0)
        outer += S.T @ S
    mean = total / n
    cov = (outer - n * np.outer(mean, mean)) / (n - 1)
    meta = {"model": {"identity": model.identity(), "source": str(getattr(model, "source", ""))},
            "state": state, "layer": layer, "text": text_meta}
    return StateStats(mean, (cov + cov.T) / 2, n, meta)


class _LayerStates:
    """The states of one layer over a text, in chunks, in one stream from zero.

    Each layer runs over a chunk in one call of a one-layer float64 copy of itself
    (stepping the stacked module token by token is thousands of times slower).  The cell
    state, which torch does not return per step, follows from the hidden states: the
    gates of step t depend only on the layer's input at t and h_{t-1}, and then
    ``c_t = f_t c_{t-1} + i_t g_t`` is a cheap elementwise recurrence."""

    CHUNK = 8192  # tokens per call: bounds the (CHUNK, H) arrays

    def __init__(self, module: Any, layer: int, state: str) -> None:
        import torch

        spec = module.spec
        kind = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}.get(spec.cell, torch.nn.RNN)
        extra = {} if kind is not torch.nn.RNN else \
            {"nonlinearity": "tanh" if spec.cell == "rnn_tanh" else "relu"}
        self.layers = []
        with torch.no_grad():
            for k in range(layer + 1):
                size = spec.embedding_size if k == 0 else spec.hidden_size
                one = kind(size, spec.hidden_size, 1, **extra).double()
                for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                    getattr(one, f"{name}_l0").copy_(getattr(module.rnn, f"{name}_l{k}"))
                self.layers.append(one)
        self.embedding = module.embedding.weight.detach().double()
        self.state, self.H = state, spec.hidden_size

    def run(self, tokens: np.ndarray):
        import torch

        carry = [None] * len(self.layers)
        c_prev = np.zeros(self.H)
        with torch.no_grad():
            for start in range(0, len(tokens), self.CHUNK):
                x = self.embedding[torch.as_tensor(tokens[start:start + self.CHUNK])]
                h_before = None
                for k, one in enumerate(self.layers):
                    layer_in = x
                    h_before = torch.zeros(self.H, dtype=x.dtype) if carry[k] is None else \
                        (carry[k][0] if isinstance(carry[k], tuple) else carry[k])[0, 0]
                    out, carry[k] = one(x[:, None], carry[k])
                    x = out[:, 0]
                if self.state == "hidden":
                    yield x.numpy()
                    continue
                one = self.layers[-1]
                h_prev = torch.cat([h_before[None], x[:-1]])
                z = (layer_in @ one.weight_ih_l0.T + one.bias_ih_l0
                     + h_prev @ one.weight_hh_l0.T + one.bias_hh_l0).numpy()
                c = _cell_states(z, c_prev)
                c_prev = c[-1]
                yield c


def _cell_states(z: np.ndarray, c0: np.ndarray) -> np.ndarray:
    """LSTM cell states from the pre-activations ``z`` (T, 4H; torch's i, f, g, o)."""
    H = z.shape[1] // 4
    sig = 1.0 / (1.0 + np.exp(-z[:, :2 * H]))
    i, f, g = sig[:, :H], sig[:, H:], np.tanh(z[:, 2 * H:3 * H])
    c = np.empty_like(g)
    prev = c0
    for t in range(len(g)):
        prev = c[t] = f[t] * prev + i[t] * g[t]
    return c


def check_state_stats(stats: StateStats, result: GradientResult, name: str, path: str,
                      force: bool = False) -> list[str]:
    """Refuse state statistics of another state, layer or size than the result's; of
    another model unless ``force`` (then a warning, returned).  Names both files."""
    H = stats.covariance.shape[0]
    if H != result.hidden_size:
        raise StateStatsError(f"{path} is for a state of size {H}; {name} has "
                              f"{result.hidden_size}")
    for key in ("state", "layer"):
        theirs = result.metadata.get(key)
        if theirs is not None and stats.metadata.get(key) != theirs:
            raise StateStatsError(f"{path} is of {key} {stats.metadata.get(key)!r}, {name} of "
                                  f"{key} {theirs!r}")
    mine = (stats.metadata.get("model") or {}).get("identity")
    theirs = result.metadata.get("model_identity")
    if mine and theirs and mine != theirs:
        what = (f"{path} was made from another model (identity {mine[:12]}...) than {name} "
                f"({theirs[:12]}...)")
        if not force:
            raise StateStatsError(f"{what}: the whitened numbers would be wrong; use that "
                                  "model's state-stats, or --force")
        return [f"--force: {what}; the whitened numbers do NOT describe {name}"]
    if not theirs:
        return [f"{name} records no model identity: cannot check that {path} belongs to it"]
    return []


def state_whitened(statistic: Callable[[np.ndarray], np.ndarray],
                   W: np.ndarray | None) -> Callable[[np.ndarray], np.ndarray]:
    """The statistic of ``W m`` for each mean matrix ``m`` (``None``: of ``m``)."""
    if W is None:
        return statistic
    W = np.asarray(W, dtype=np.float64)

    def stat(m: np.ndarray) -> np.ndarray:
        return statistic(W @ m)

    return stat


class _WhitenedBlocks:
    """Block sums ``W S_b`` read one delay at a time, as the interval code reads blocks
    (``blocks[:, d]``), so that a result on disk is never loaded whole."""

    ndim = 5

    def __init__(self, blocks: Any, W: np.ndarray) -> None:
        self.blocks, self.W = blocks, W
        self.shape = tuple(blocks.shape)
        self.dtype = np.dtype(np.float64)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key: Any) -> np.ndarray:
        if not (isinstance(key, tuple) and len(key) == 2 and key[0] == slice(None)
                and isinstance(key[1], (int, np.integer))):
            raise StateStatsError("whitened block sums are read one delay at a time")
        return self.W @ _one_delay(self.blocks, int(key[1])).astype(np.float64)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = np.stack([self[:, d] for d in range(self.shape[1])], axis=1)
        return out if dtype is None else out.astype(dtype)


def _one_delay(blocks: Any, d: int) -> np.ndarray:
    return blocks.delay(d) if hasattr(blocks, "delay") else np.asarray(blocks[:, d])


def whiten_result(result: GradientResult, W: np.ndarray | None) -> GradientResult:
    """The result with every sum ``S`` replaced by ``W S`` (block sums lazily): every
    mean, and so every statistic, becomes that of ``W Gbar_d``.  ``None``: the result."""
    if W is None:
        return result
    W = np.asarray(W, dtype=np.float64)
    if W.shape != (result.hidden_size,) * 2:
        raise StateStatsError(f"a state whitening of shape {W.shape} for states of size "
                              f"{result.hidden_size}")
    blocks = None if result.block_sums is None else _WhitenedBlocks(result.block_sums, W)
    meta = dict(result.metadata, state_whitened=True)
    return GradientResult(sums=W @ result.sums, counts=result.counts, classes=result.classes,
                          vocab=result.vocab, metadata=meta, block_sums=blocks,
                          block_counts=result.block_counts, block_starts=result.block_starts)
