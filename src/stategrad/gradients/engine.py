"""The state gradient engine: ``G(t, d) = d s_{t+d} / d x_t`` for every t and d < D in one pass.

How it works (see ``docs/engine.md`` for the derivation):

Forward-mode differentiation along the text.  For every start position t still
"in flight" (t > k - D at step k) the engine carries the E tangent columns of
``d state_k / d x_t`` for every layer up to the analysed one.  One step of the
RNN is a linear map on those tangents.  For an LSTM,

    dc' = dpre_i a_i + dpre_f a_f + dpre_g a_g + f * dc,   dh' = dpre_o a_o + tau * dc',
    dpre = dx W_ih^T + dh W_hh^T,

and because every gate coefficient ``a_*`` scales a *column* of ``W^T``, the
coefficients fold into two H x H matrices built once per step (``M_c``, ``M_h``):
the whole step for all D*E tangents is one (D E x H) @ (H x 2H) product plus two
element-wise terms.  That is half the 8 E H^2 flops per Jacobian of the plain
(H x 4H) product.  GRU and tanh/ReLU RNN cells fold the same way.

Finished matrices are gathered over a window of steps and added into their
(delay, class) sums with one batched matrix product, so per-class accumulation
costs a small fraction of the recurrence even for a dozen classes.  Sums are
kept in the compute dtype per chunk of start positions and folded into float64.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import __version__
from ..data import ClassSet
from ..lm import RNNLM, LanguageModel, model_hash, torch_save_atomic
from .result import BlockSpill, GradientResult, coverage_record, sampling_rule

SEMANTICS = ("carry", "segment")
# The running-state file (``--checkpoint``): plain tensors and a JSON string, read with
# ``torch.load(weights_only=True)`` so that no file at that path can run code.
RUNNING_STATE_FORMAT = "stategrad-engine-state"
RUNNING_STATE_VERSION = 2
STATES = ("cell", "hidden")

# A pair callback receives (step k, start positions of the rows, tangents (A, E, H)
# of the analysed state: row a is d s_k / d x_{starts[a]} transposed).
PairCallback = Callable[[int, np.ndarray, torch.Tensor], None]


class EngineError(ValueError):
    """Arguments the engine cannot work with."""


class _DamagedState(Exception):
    """A running-state file (or one of its block files) that cannot be used."""


def _unreadable(exc: BaseException) -> str:
    """Why ``torch.load(weights_only=True)`` refused a running-state file, in our words
    (torch's own advice is to load it unsafely)."""
    import pickle

    if isinstance(exc, pickle.UnpicklingError):
        return ("holds objects other than plain tensors (not loaded: unpickling could run "
                "code), so it is damaged or from an older stategrad")
    if isinstance(exc, EOFError):
        return "is empty or truncated"
    return f"is damaged or truncated ({type(exc).__name__})"


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return (lines[0] if lines else type(exc).__name__)[:200]


# --- the model's parameters, per layer ------------------------------------------------------

@dataclass
class _Layer:
    cell: str
    w_ih_t: torch.Tensor  # (in, G*H)
    w_hh_t: torch.Tensor  # (H, G*H)
    bias: torch.Tensor  # (G*H,): b_ih + b_hh (GRU n block: b_in only)
    b_hn: torch.Tensor | None = None  # GRU: the hidden bias of the n gate


def _param(rnn: torch.nn.Module, name: str, layer: int, device, dtype) -> torch.Tensor:
    return getattr(rnn, f"{name}_l{layer}").detach().to(device, dtype)


def _layers(module: RNNLM | torch.nn.Module, upto: int, device, dtype) -> list[_Layer]:
    rnn = module.rnn
    if isinstance(rnn, torch.nn.LSTM):
        cell = "lstm"
        if getattr(rnn, "proj_size", 0):
            raise EngineError("LSTMs with projections (proj_size > 0) are not supported")
    elif isinstance(rnn, torch.nn.GRU):
        cell = "gru"
    elif isinstance(rnn, torch.nn.RNN):
        cell = "rnn_relu" if rnn.nonlinearity == "relu" else "rnn_tanh"
    else:
        raise EngineError(f"unsupported recurrent module {type(rnn).__name__}")
    layers = []
    for l in range(upto + 1):
        # Every parameter is cast to the engine's dtype before any arithmetic, so that a
        # float64 run of a float32 model is exact for the float32 values it stores.
        w_ih, w_hh = (_param(rnn, name, l, device, dtype) for name in ("weight_ih", "weight_hh"))
        H = w_hh.shape[1]
        if rnn.bias:
            b_ih, b_hh = (_param(rnn, name, l, device, dtype) for name in ("bias_ih", "bias_hh"))
        else:
            b_ih = b_hh = torch.zeros(w_ih.shape[0], device=device, dtype=dtype)
        bias = b_ih + b_hh
        b_hn = None
        if cell == "gru":
            # b_hn sits inside the reset gate's product: the n block takes b_in alone
            # (no sum taken back out by subtraction), and b_hn is kept apart.
            bias[2 * H :] = b_ih[2 * H :]
            b_hn = b_hh[2 * H :].clone()
        layers.append(_Layer(cell, w_ih.t().contiguous(), w_hh.t().contiguous(), bias, b_hn))
    return layers


def _unwrap(model: LanguageModel | RNNLM | torch.nn.Module) -> tuple[torch.nn.Module, list[str] | None, str]:
    if isinstance(model, LanguageModel):
        return model.module, list(model.vocab.words), model.identity()
    vocab = None
    return model, vocab, model_hash(model)


# --- the forward pass and its tangent maps, a window of steps at a time ------------------------
#
# The forward values of a step do not depend on the tangents, so the engine runs the forward
# pass a window of steps ahead and folds the coefficients of all those steps into their
# matrices with a few large element-wise operations instead of many small ones.

@dataclass
class _WindowMaps:
    """Tangent maps of ``n`` consecutive steps of one layer.

    ``m_in[i]`` (in x S*H) and ``m_rec[i]`` (H x S*H) map the input and previous-hidden
    tangents of step i to [dc' | dh'] (LSTM, S=2) or dh' (GRU/RNN, S=1); ``diag_c[i]`` and
    ``diag_h[i]`` scale the previous cell tangent (LSTM) or hidden tangent (GRU) element-wise.
    """

    m_in: torch.Tensor
    m_rec: torch.Tensor
    diag_c: torch.Tensor | None
    diag_h: torch.Tensor | None


def _lstm_forward(layer: _Layer, x_proj: torch.Tensor, h: torch.Tensor, c: torch.Tensor):
    """One step; returns (h', c', coefficients (6, H): a_i, a_f, a_g, a_o, tau, f)."""
    H = h.shape[-1]
    pre = x_proj + h @ layer.w_hh_t
    i = torch.sigmoid(pre[:H])
    f = torch.sigmoid(pre[H : 2 * H])
    g = torch.tanh(pre[2 * H : 3 * H])
    o = torch.sigmoid(pre[3 * H :])
    c_new = f * c + i * g
    tc = torch.tanh(c_new)
    h_new = o * tc
    coefs = torch.stack([i * (1 - i) * g, f * (1 - f) * c, i * (1 - g * g), o * (1 - o) * tc,
                         o * (1 - tc * tc), f])
    return h_new, c_new, coefs


def _gru_forward(layer: _Layer, x_proj: torch.Tensor, h: torch.Tensor, c=None):
    """PyTorch's GRU: r, z = sigma(.), n = tanh(W_in x + b_in + r * (W_hn h + b_hn)).
    Returns (h', None, coefficients (4, H): c_r, c_z, q, z)."""
    H = h.shape[-1]
    hh = h @ layer.w_hh_t  # without biases
    b_hn = layer.b_hn
    r = torch.sigmoid(x_proj[:H] + hh[:H])
    z = torch.sigmoid(x_proj[H : 2 * H] + hh[H : 2 * H])
    hn = hh[2 * H :] + b_hn
    # x_proj's n block holds b_in only (see _layers), so no bias is taken back out.
    n = torch.tanh(x_proj[2 * H :] + r * hn)
    h_new = (1 - z) * n + z * h
    q = (1 - z) * (1 - n * n)
    coefs = torch.stack([q * hn * r * (1 - r), z * (1 - z) * (h - n), q, z, r])
    return h_new, None, coefs


def _rnn_forward(layer: _Layer, x_proj: torch.Tensor, h: torch.Tensor, c=None):
    """Returns (h', None, coefficients (1, H): the activation's slope)."""
    pre = x_proj + h @ layer.w_hh_t
    if layer.cell == "rnn_relu":
        return torch.relu(pre), None, (pre > 0).to(pre.dtype).unsqueeze(0)
    h_new = torch.tanh(pre)
    return h_new, None, (1 - h_new * h_new).unsqueeze(0)


_FORWARD = {"lstm": _lstm_forward, "gru": _gru_forward, "rnn_tanh": _rnn_forward,
            "rnn_relu": _rnn_forward}


def _fold(layer: _Layer, coefs: torch.Tensor) -> _WindowMaps:
    """Fold the coefficients of n steps (n, K, H) into the weights: every coefficient scales
    a column of W^T, so each map is a sum of column-scaled weight blocks."""
    H = coefs.shape[-1]
    if layer.cell == "lstm":
        a_i, a_f, a_g, a_o, tau, f = (coefs[:, j, None, :] for j in range(6))

        def fold(w_t: torch.Tensor) -> torch.Tensor:
            out = torch.empty(coefs.shape[0], w_t.shape[0], 2 * H, dtype=w_t.dtype, device=w_t.device)
            m_c, m_h = out[..., :H], out[..., H:]
            torch.mul(w_t[:, :H], a_i, out=m_c)
            m_c.addcmul_(w_t[:, H : 2 * H], a_f)
            m_c.addcmul_(w_t[:, 2 * H : 3 * H], a_g)
            torch.mul(m_c, tau, out=m_h)
            m_h.addcmul_(w_t[:, 3 * H :], a_o)
            return out

        return _WindowMaps(fold(layer.w_ih_t), fold(layer.w_hh_t), coefs[:, 5],
                           coefs[:, 4] * coefs[:, 5])
    if layer.cell == "gru":
        c_r, c_z, q, z, r = (coefs[:, j, None, :] for j in range(5))

        def fold_gru(w_t: torch.Tensor, n_coef: torch.Tensor) -> torch.Tensor:
            out = torch.mul(w_t[:, :H], c_r)
            out.addcmul_(w_t[:, H : 2 * H], c_z)
            out.addcmul_(w_t[:, 2 * H :], n_coef)
            return out

        return _WindowMaps(fold_gru(layer.w_ih_t, q), fold_gru(layer.w_hh_t, q * r), None,
                           coefs[:, 3])
    slope = coefs[:, 0, None, :]
    return _WindowMaps(layer.w_ih_t * slope, layer.w_hh_t * slope, None, None)


# --- the engine ------------------------------------------------------------------------------

@dataclass
class EngineOptions:
    max_delay: int
    state: str = "cell"
    layer: int = -1
    semantics: str = "carry"
    segment_length: int | None = None
    device: str = "cpu"
    dtype: torch.dtype = torch.float32
    block_size: int | None = None
    sample_every: int | None = None
    sample_fraction: float | None = None
    seed: int = 0
    window: int = 16  # steps gathered per batched accumulation
    chunk_size: int = 4096  # start positions per compute-dtype accumulator


def _resolve_layer(module, layer: int) -> int:
    n = module.rnn.num_layers
    resolved = layer if layer >= 0 else n + layer
    if not 0 <= resolved < n:
        raise EngineError(f"layer {layer} does not exist: the model has layers 0..{n - 1}")
    return resolved


def _text_identity(tokens: np.ndarray, extra: dict[str, Any] | None) -> dict[str, Any]:
    ident = {
        "tokens": int(len(tokens)),
        "sha256": hashlib.sha256(np.ascontiguousarray(tokens, dtype=np.int32).tobytes()).hexdigest(),
    }
    if extra:
        ident.update(extra)
    return ident


def _sample_mask(n: int, opts: EngineOptions) -> np.ndarray | None:
    if opts.sample_every is not None and opts.sample_fraction is not None:
        raise EngineError("choose one of sample_every and sample_fraction, not both")
    if opts.sample_every is not None:
        if opts.sample_every < 1:
            raise EngineError(f"sample_every must be >= 1, got {opts.sample_every}")
        if opts.sample_every == 1:
            return None
        mask = np.zeros(n, dtype=bool)
        mask[:: opts.sample_every] = True
        return mask
    if opts.sample_fraction is not None:
        if not 0 < opts.sample_fraction <= 1:
            raise EngineError(f"sample_fraction must be in (0, 1], got {opts.sample_fraction}")
        if opts.sample_fraction == 1:
            return None
        return np.random.default_rng(opts.seed).random(n) < opts.sample_fraction
    return None


class _Accumulator:
    """Per (delay, class) sums for a range of start positions, in the compute dtype."""

    def __init__(self, D: int, C: int, H: int, E: int, device, dtype):
        self.sums = torch.zeros(D, C, E * H, device=device, dtype=dtype)
        self.counts = np.zeros((D, C), dtype=np.int64)


class StateGradientEngine:
    """One pass over ``tokens`` accumulating state gradients; resumable and sliceable.

    Most users call :func:`compute_state_gradients`.  The class exists so that a run
    can be checkpointed, resumed, and split into slices of start positions.
    """

    def __init__(
        self,
        model: LanguageModel | RNNLM | torch.nn.Module,
        tokens: Sequence[int] | np.ndarray,
        options: EngineOptions,
        classes: ClassSet | None = None,
    ):
        self.module, self.vocab, self.model_identity = _unwrap(model)
        self.tokens = np.ascontiguousarray(np.asarray(tokens, dtype=np.int64))
        if self.tokens.ndim != 1:
            raise EngineError("tokens must be a 1-d sequence of ids")
        self.opts = options
        o = options
        if o.max_delay < 1:
            raise EngineError(f"max_delay must be at least 1, got {o.max_delay}")
        if o.semantics not in SEMANTICS:
            raise EngineError(f"semantics must be one of {SEMANTICS}, got {o.semantics!r}")
        if o.state not in STATES:
            raise EngineError(f"state must be one of {STATES}, got {o.state!r}")
        if o.semantics == "segment" and not o.segment_length:
            raise EngineError("segment semantics needs segment_length (the model's num_steps)")
        if o.block_size is not None and o.block_size < 1:
            raise EngineError(f"block_size must be positive, got {o.block_size}")
        try:
            self.device = torch.device(o.device)
        except (RuntimeError, TypeError) as exc:
            raise EngineError(f"unknown device {o.device!r}: use cpu, cuda or cuda:N") from exc
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise EngineError("device 'cuda' asked for, but PyTorch sees no CUDA device")
        if self.device.type == "cuda" and (self.device.index or 0) >= torch.cuda.device_count():
            raise EngineError(f"device {o.device!r} does not exist: PyTorch sees "
                              f"{torch.cuda.device_count()} CUDA device(s)")
        self.layer = _resolve_layer(self.module, o.layer)
        self.layers = _layers(self.module, self.layer, self.device, o.dtype)
        self.cell = self.layers[0].cell
        if o.state == "cell" and self.cell != "lstm":
            raise EngineError(f"a {self.cell.upper()} has no cell state; use state='hidden'")
        emb = self.module.embedding if hasattr(self.module, "embedding") else self.module.encoder
        self.embedding = emb.weight.detach().to(self.device, o.dtype)
        V = self.embedding.shape[0]
        if len(self.tokens) and (self.tokens.min() < 0 or self.tokens.max() >= V):
            raise EngineError(
                f"token ids must lie in 0..{V - 1} (the model's vocabulary); found "
                f"{self.tokens.min()}..{self.tokens.max()}: was the text read with another vocabulary?"
            )
        self.classes = classes if classes is not None else ClassSet.only_all(V)
        if self.classes.vocab_size != V:
            raise EngineError(
                f"classes are defined over {self.classes.vocab_size} words, the model has {V}"
            )
        self.E = self.embedding.shape[1]
        self.H = self.layers[0].w_hh_t.shape[0]
        self.C = len(self.classes)
        self.D = o.max_delay
        self.sample_mask = _sample_mask(len(self.tokens), o)
        self._membership = self.classes.membership

    # -- positions -----------------------------------------------------------------------
    def _last_input(self) -> int:
        """One past the last position that takes part (segment mode keeps the original's
        whole segments: ``len // num_steps - 1`` of them)."""
        T = len(self.tokens)
        if self.opts.semantics == "segment":
            n = self.opts.segment_length
            return max(T // n - 1, 0) * n
        return T

    def _max_rows(self) -> int:
        D = self.D
        if self.sample_mask is None:
            return D
        csum = np.concatenate([[0], np.cumsum(self.sample_mask)])
        k = np.arange(len(self.sample_mask))
        lo = np.maximum(k - D + 1, 0)
        return int(max((csum[k + 1] - csum[lo]).max(initial=0), 1))

    def initial_state(self, start: int) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
        """The recurrent state before position ``start``: a cheap no-grad forward pass
        (the fused module) over the tokens before it, or zeros at 0; in segment mode,
        the state carried into ``start``'s segment is what the model computed."""
        L = self.layer + 1
        zeros = torch.zeros(self.H, device=self.device, dtype=self.opts.dtype)
        if start == 0:
            return [(zeros.clone(), zeros.clone() if self.cell == "lstm" else None) for _ in range(L)]
        with torch.no_grad():
            # A copy, so that the user's module keeps its device and dtype.
            rnn = copy.deepcopy(self.module.rnn).to(self.device, self.opts.dtype).eval()
            ids = torch.as_tensor(self.tokens[:start], device=self.device)
            _, state = rnn(self.embedding[ids].unsqueeze(1))
        if self.cell == "lstm":
            h, c = state
            return [(h[l, 0].clone(), c[l, 0].clone()) for l in range(L)]
        return [(state[l, 0].clone(), None) for l in range(L)]

    # -- the pass ------------------------------------------------------------------------
    def run(
        self,
        start: int = 0,
        stop: int | None = None,
        *,
        initial_state=None,
        progress: bool | str = True,
        on_pairs: PairCallback | None = None,
        checkpoint_path: str | os.PathLike | None = None,
        checkpoint_every: float = 300.0,
        text_info: dict[str, Any] | None = None,
        stop_after_steps: int | None = None,
        keep_checkpoint: bool = False,
    ) -> GradientResult:
        """Accumulate G(t, d) for start positions ``start <= t < stop`` and every d < D
        (pairs run past ``stop`` up to D - 1 steps, so slices add up to the whole).

        ``progress``: True draws a progress bar, ``"log"`` prints a line to standard error
        every minute instead (runs without a terminal), False is silent.
        ``checkpoint_path``: the running state is saved there every ``checkpoint_every``
        seconds and, if the file exists, the run resumes from it; a damaged one is renamed
        to ``<checkpoint>.damaged`` and the run starts afresh, one of another run is refused.
        ``keep_checkpoint`` leaves the running state in place at the end, for a caller that
        stores the result first and then calls :meth:`remove_running_state`.
        ``stop_after_steps`` ends early (after a checkpoint) -- used to test interruption.
        """
        o = self.opts
        last_input = self._last_input()
        stop = last_input if stop is None else min(stop, last_input)
        if not 0 <= start <= stop:
            raise EngineError(f"bad slice [{start}, {stop}) of a text of {last_input} usable positions")
        end = min(stop + self.D - 1, last_input) if stop > start else start  # last step + 1
        if o.semantics == "segment" and stop > start:
            seg = o.segment_length
            end = min(end, ((stop - 1) // seg + 1) * seg)

        D, E, H, C = self.D, self.E, self.H, self.C
        dev, dt = self.device, o.dtype
        A_max = self._max_rows()
        W = max(1, o.window)
        lstm = self.cell == "lstm"
        comps = ("h", "c") if lstm else ("h",)
        chosen = (self.layer, "c" if o.state == "cell" else "h")
        # Tangent buffers: (slots, rows, E, H).  The analysed state keeps W+1 slots (one
        # per step of the accumulation window); the others ping-pong between two.
        bufs: dict[tuple[int, str], torch.Tensor] = {}
        for l in range(self.layer + 1):
            for comp in comps:
                slots = W + 1 if (l, comp) == chosen else 2
                bufs[(l, comp)] = torch.zeros(slots, A_max, E, H, device=dev, dtype=dt)
        # Scratch for the matmul output [dc | dh] or dh.
        width = 2 * H if lstm else H
        scratch = torch.empty(A_max * E, width, device=dev, dtype=dt) if lstm else None

        state = initial_state if initial_state is not None else self.initial_state(start)
        hs = [s[0].to(dev, dt).clone() for s in state]
        cs = [s[1].to(dev, dt).clone() if s[1] is not None else None for s in state]

        starts = np.zeros(0, dtype=np.int64)  # start positions of the rows, newest first
        window_starts: list[np.ndarray] = []  # per window slot
        window_steps: list[int] = []
        total = torch.zeros(D, C, E * H, dtype=torch.float64, device=dev)
        total_counts = np.zeros((D, C), dtype=np.int64)
        accs: dict[int, _Accumulator] = {}
        closed_blocks: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        # Closed blocks go to disk as they close (memory would grow with their number);
        # the result reads them from there when it is written.
        spill = BlockSpill(D, C, H, E) if o.block_size else None
        chunk = o.block_size or o.chunk_size
        k = start
        slot = 0  # current slot of the analysed buffer (0 = last step of previous window)

        resumed = False
        self._blocks_on_disk: set[int] = set()  # block files known to hold this run's sums
        ck = self._resume_point(checkpoint_path, start, stop, end, A_max) if checkpoint_path else None
        if ck is not None:
            k = ck["k"]
            hs = [h.to(dev, dt) for h in ck["hs"]]
            cs = [c.to(dev, dt) if c is not None else None for c in ck["cs"]]
            starts = ck["starts"]
            for key, value in ck["bufs"].items():
                bufs[key][0, : value.shape[0]] = value.to(dev, dt)
            total = ck["total"].to(dev)
            total_counts = ck["total_counts"]
            for b, (s, n) in ck["accs"].items():
                acc = _Accumulator(D, C, H, E, dev, dt)
                acc.sums.copy_(s)
                acc.counts = n
                accs[b] = acc
            for b in ck["closed_blocks"]:  # one at a time into the spill (checked in restore)
                sums, counts = self._load_blocks(checkpoint_path, [b])[b]
                closed_blocks[b] = (self._spill_block(spill, b, sums), counts)
            self._blocks_on_disk = set(closed_blocks)
            resumed = True

        x_proj_cache: dict[int, torch.Tensor] = {}

        def input_projection(pos: int) -> torch.Tensor:
            # Layer 0's input projections for a span of positions at once.
            base = pos - pos % 1024
            if base not in x_proj_cache:
                x_proj_cache.clear()
                ids = torch.as_tensor(self.tokens[base : base + 1024], device=dev)
                x_proj_cache[base] = self.embedding[ids] @ self.layers[0].w_ih_t + self.layers[0].bias
            return x_proj_cache[base][pos - base]

        def flush(final: bool = False) -> None:
            nonlocal slot
            if window_steps:
                self._accumulate(bufs[chosen], window_steps, window_starts, accs, chunk, C, H, E)
            if on_pairs is None:
                pass
            # Close chunks whose every pair is done: all starts < the oldest row in flight.
            oldest_open = starts[-1] if len(starts) and not final else k if not final else math.inf
            for b in sorted(accs):
                if (b + 1) * chunk <= oldest_open:
                    acc = accs.pop(b)
                    total.add_(acc.sums.to(torch.float64))
                    total_counts[...] += acc.counts
                    if o.block_size:
                        closed_blocks[b] = (self._spill_block(spill, b, acc.sums.to(torch.float32)
                                                              .cpu().numpy()), acc.counts)
            # The last step of this window becomes slot 0 of the next.
            if slot != 0:
                bufs[chosen][0].copy_(bufs[chosen][slot])
            slot = 0
            window_steps.clear()
            window_starts.clear()

        bar = None
        log_every = 60.0 if progress == "log" else None  # lines instead of a bar (no terminal)
        last_log = time.monotonic()
        began = last_log
        if progress is True:
            from tqdm.auto import tqdm

            bar = tqdm(total=end - start, initial=k - start, unit="pos", desc="state gradients",
                       dynamic_ncols=True, smoothing=0.05)
        last_ck = time.monotonic()
        steps_done = 0
        cur = {key: 0 for key in bufs}  # current slot per buffer (ping-pong ones)
        cur[chosen] = 0
        seg = o.segment_length if o.semantics == "segment" else None

        while k < end:
            # Which rows go on: drop the oldest if its delay would reach D, all at a
            # segment boundary; add a row for k if k is a start position of this slice.
            if seg is not None and k % seg == 0:
                keep = 0
            else:
                keep = len(starts)
                if keep and k - starts[keep - 1] >= D:
                    keep -= 1
            inject = start <= k < stop and (self.sample_mask is None or self.sample_mask[k])
            shift = 1 if inject else 0
            n_rows = keep + shift
            new_starts = np.concatenate([[k], starts[:keep]]) if inject else starts[:keep]

            if slot == 0:  # a new window: its forward pass and tangent maps, all at once
                window_maps = self._forward_window(k, min(W, end - k), hs, cs, input_projection)
            below_dh_new = None  # the new dh tangent of the layer below
            for l in range(len(self.layers)):
                wm = window_maps[l]
                maps = _WindowMaps(wm.m_in[slot], wm.m_rec[slot],
                                   None if wm.diag_c is None else wm.diag_c[slot],
                                   None if wm.diag_h is None else wm.diag_h[slot])
                old_h, new_h = self._slots(bufs, cur, chosen, slot, (l, "h"))
                if lstm:
                    old_c, new_c = self._slots(bufs, cur, chosen, slot, (l, "c"))
                if n_rows:
                    # GRU/RNN tangents are written straight into their buffer; an LSTM's
                    # [dc | dh] product goes to scratch and is combined on the way out.
                    out = scratch[: n_rows * E] if lstm else new_h[:n_rows].view(-1, H)
                    rec_out = out[shift * E :]
                    if l == 0:
                        if keep:
                            torch.mm(old_h[:keep].view(-1, H), maps.m_rec, out=rec_out)
                        if inject:
                            out[:E].copy_(maps.m_in)
                    else:
                        torch.mm(below_dh_new[:n_rows].view(-1, H), maps.m_in, out=out)
                        if keep:
                            rec_out.addmm_(old_h[:keep].view(-1, H), maps.m_rec)
                    if lstm:
                        nc = new_c[:n_rows].view(-1, H)
                        nh = new_h[:n_rows].view(-1, H)
                        lo = shift * E
                        if shift:
                            nc[:lo].copy_(out[:lo, :H])
                            nh[:lo].copy_(out[:lo, H:])
                        if keep:
                            prev_c = old_c[:keep].view(-1, H)
                            torch.addcmul(out[lo:, :H], prev_c, maps.diag_c, out=nc[lo:])
                            torch.addcmul(out[lo:, H:], prev_c, maps.diag_h, out=nh[lo:])
                    elif keep and maps.diag_h is not None:
                        rec_out.addcmul_(old_h[:keep].view(-1, H), maps.diag_h)
                below_dh_new = new_h
                for comp in comps:
                    key = (l, comp)
                    if key != chosen:
                        cur[key] = 1 - cur[key]
            starts = new_starts
            slot += 1
            window_steps.append(k)
            window_starts.append(starts)
            if on_pairs is not None and n_rows:
                on_pairs(k, starts, bufs[chosen][slot][:n_rows])
            k += 1
            steps_done += 1
            if bar is not None:
                bar.update(1)
            elif log_every is not None and time.monotonic() - last_log >= log_every:
                last_log = time.monotonic()
                rate = steps_done / (last_log - began)
                print(f"state gradients: step {k - start:,} of {end - start:,} "
                      f"({rate:,.1f} positions/s, about {(end - k) / rate / 60:,.1f} min left)",
                      file=sys.stderr, flush=True)
            if slot == W or k == end:
                flush(final=k == end)
                if checkpoint_path is not None and k < end and (
                    time.monotonic() - last_ck >= checkpoint_every
                    or (stop_after_steps is not None and steps_done >= stop_after_steps)
                ):
                    self._save_checkpoint(checkpoint_path, k, hs, cs, starts, bufs, cur, chosen,
                                          total, total_counts, accs, closed_blocks, start, stop)
                    last_ck = time.monotonic()
                if stop_after_steps is not None and steps_done >= stop_after_steps and k < end:
                    if bar is not None:
                        bar.close()
                    raise InterruptedRun(k)
            # Keep the ping-pong buffers' "current" slot as slot 0 when a window starts so
            # that checkpoints store one consistent slot per buffer.
        if bar is not None:
            bar.close()
        flush(final=True)
        if checkpoint_path is not None and not keep_checkpoint:
            self.remove_running_state(checkpoint_path)

        sums = total.view(D, C, E, H).transpose(2, 3).cpu().numpy()
        block_kwargs: dict[str, Any] = {}
        if o.block_size:
            order = sorted(closed_blocks)
            if order:
                block_kwargs = dict(
                    block_sums=spill.blocks(order),  # on disk, written delay by delay
                    block_counts=np.stack([closed_blocks[b][1] for b in order]),
                    block_starts=np.array([b * o.block_size for b in order], dtype=np.int64),
                )
        text_identity = _text_identity(self.tokens, text_info)
        metadata = {
            "semantics": o.semantics,
            "segment_length": o.segment_length,
            "state": o.state,
            "layer": self.layer,
            "cell": self.cell,
            "max_delay": D,
            "model_identity": self.model_identity,
            "text": text_identity,
            "slice": {"start": int(start), "stop": int(stop)},
            "coverage": coverage_record(
                text_identity["sha256"], text_identity["tokens"], start, stop,
                sampling_rule(o.sample_every, o.sample_fraction, o.seed)),
            "class_definitions": self.classes.definitions,
            "sampling": {
                "every": o.sample_every,
                "fraction": o.sample_fraction,
                "seed": o.seed if o.sample_fraction is not None else None,
                "starts_used": int(total_counts[0, 0]),
            },
            "block_size": o.block_size,
            "dtype": str(o.dtype).replace("torch.", ""),
            "dtype_family": "float",
            "device": str(dev),
            "stategrad_version": __version__,
            "torch_version": torch.__version__,
            "resumed": resumed,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        return GradientResult(
            sums=sums,
            counts=total_counts,
            classes=list(self.classes.names),
            vocab=self.vocab or [],
            metadata=metadata,
            **block_kwargs,
        )

    # -- accumulation ----------------------------------------------------------------------
    def _accumulate(self, buf, window_steps, window_starts, accs, chunk, C, H, E) -> None:
        """Add the window's finished matrices into their (delay, class) sums.

        For every delay d the window's rows with that delay are summed with class
        weights by one batched product (delays, C, n) @ (delays, n, E*H).  In the
        steady state of a full pass row a holds delay a in every slot, so the window
        is used as a strided view; otherwise (start, sampling, segments) the rows are
        gathered first.
        """
        n_slots = len(window_steps)
        A_max = buf.shape[1]
        dev, dt = buf.device, buf.dtype
        # Rows hold delays 0, 1, 2, ... whenever every position of the slice so far was a
        # start (no sampling, not past ``stop``): then the window is a strided view.
        aligned = all(len(st) == 0 or (st[0] == k and st[0] - st[-1] == len(st) - 1)
                      for k, st in zip(window_steps, window_starts, strict=True))
        if aligned:
            steps = np.asarray(window_steps)
            n_rows = np.array([len(st) for st in window_starts])
            R = int(n_rows.max())
            if R == 0:
                return
            pair_start = steps[None, :] - np.arange(R)[:, None]  # (R, n_slots)
            valid = np.arange(R)[:, None] < n_rows[None, :]
            member = self._membership[self.tokens[np.where(valid, pair_start, 0)]] & valid[:, :, None]
            chunk_of = np.where(valid, pair_start, -1) // chunk
            view = buf[1 : n_slots + 1, :R].reshape(n_slots, R, E * H).transpose(0, 1)
            for b in np.unique(chunk_of[valid]):
                acc = self._acc(accs, int(b), C, H, E, dev, dt)
                mem = member & (chunk_of == b)[:, :, None]
                acc.counts[:R] += mem.sum(axis=1)
                weights = torch.as_tensor(mem.transpose(0, 2, 1), dtype=dt).to(dev)
                acc.sums[:R].baddbmm_(weights, view)
            return

        slot_idx, row_idx, pair_start, pair_delay = [], [], [], []
        for s, (k, st) in enumerate(zip(window_steps, window_starts, strict=True)):
            if len(st):
                slot_idx.append(np.full(len(st), s + 1))
                row_idx.append(np.arange(len(st)))
                pair_start.append(st)
                pair_delay.append(k - st)
        if not slot_idx:
            return
        rows_all = np.concatenate(slot_idx) * A_max + np.concatenate(row_idx)
        pair_start = np.concatenate(pair_start)
        pair_delay = np.concatenate(pair_delay)
        member_all = self._membership[self.tokens[pair_start]]  # (P, C)
        chunk_of = pair_start // chunk
        flat = buf.view(-1, E * H)
        for b in np.unique(chunk_of):
            sel = np.flatnonzero(chunk_of == b)
            acc = self._acc(accs, int(b), C, H, E, dev, dt)
            order = sel[np.argsort(pair_delay[sel], kind="stable")]
            delays = pair_delay[order]
            mem = member_all[order]
            np.add.at(acc.counts, delays, mem.astype(np.int64))
            present, first, per_delay = np.unique(delays, return_index=True, return_counts=True)
            group = np.repeat(np.arange(len(present)), per_delay)
            pos = np.arange(len(delays)) - first[group]
            gather = np.zeros((len(present), int(per_delay.max())), dtype=np.int64)
            gather[group, pos] = rows_all[order]
            weights = torch.zeros(len(present), C, gather.shape[1], dtype=dt)
            weights[torch.as_tensor(group), :, torch.as_tensor(pos)] = torch.as_tensor(mem, dtype=dt)
            gathered = flat[torch.as_tensor(gather.reshape(-1), device=dev)]
            gathered = gathered.view(len(present), gather.shape[1], E * H)
            idx = torch.as_tensor(present, device=dev)
            acc.sums.index_add_(0, idx, torch.bmm(weights.to(dev), gathered))

    def _forward_window(self, k: int, n: int, hs: list, cs: list, input_projection) -> list[_WindowMaps]:
        """Run the forward pass over positions k .. k+n-1 (updating ``hs``/``cs`` in place)
        and return every layer's tangent maps for those steps."""
        maps = []
        # Layer 0's input projections; each layer's outputs give the next one's, at once.
        inputs = torch.stack([input_projection(k + i) for i in range(n)])
        for l, layer in enumerate(self.layers):
            forward = _FORWARD[layer.cell]
            hseq, coefs = [], []
            h, c = hs[l], cs[l]
            for i in range(n):
                h, c, co = forward(layer, inputs[i], h, c)
                hseq.append(h)
                coefs.append(co)
            hs[l], cs[l] = h, c
            maps.append(_fold(layer, torch.stack(coefs)))
            if l + 1 < len(self.layers):
                above = self.layers[l + 1]
                inputs = torch.addmm(above.bias, torch.stack(hseq), above.w_ih_t)
        return maps

    @staticmethod
    def _slots(bufs, cur, chosen, slot, key):
        """(previous, next) tangent slot of one buffer: the analysed state walks through
        its window slots, the others alternate between two."""
        buf = bufs[key]
        if key == chosen:
            return buf[slot], buf[slot + 1]
        return buf[cur[key]], buf[1 - cur[key]]

    def _acc(self, accs, b, C, H, E, dev, dt) -> _Accumulator:
        acc = accs.get(b)
        if acc is None:
            acc = accs[b] = _Accumulator(self.D, C, H, E, dev, dt)
        return acc

    # -- checkpoints -------------------------------------------------------------------------
    def _fingerprint(self, start: int, stop: int) -> dict[str, Any]:
        o = self.opts
        return {
            "model": self.model_identity,
            "text": _text_identity(self.tokens, None)["sha256"],
            "options": repr((o.max_delay, o.state, self.layer, o.semantics, o.segment_length,
                             str(o.dtype), o.block_size, o.sample_every, o.sample_fraction,
                             o.seed, o.window, o.chunk_size, len(self.classes),
                             self.classes.names)),
            "class_membership": hashlib.sha256(self._membership.tobytes()).hexdigest(),
            "slice": (int(start), int(stop)),
        }

    def _check_checkpoint(self, ck: dict[str, Any], start: int, stop: int, path=None) -> None:
        # Compared as stored: through JSON (tuples become lists).
        mine = json.loads(json.dumps(self._fingerprint(start, stop)))
        theirs = ck.get("fingerprint", {})
        theirs = theirs if isinstance(theirs, dict) else {}
        diff = [k for k in mine if mine[k] != theirs.get(k)]
        if diff:
            where = f" {path}" if path is not None else ""
            raise EngineError(
                f"the checkpoint{where} belongs to a different run (differs in: " + ", ".join(diff) +
                "); delete it or point --checkpoint elsewhere"
            )

    @staticmethod
    def _spill_block(spill: BlockSpill, b: int, sums: np.ndarray):
        try:
            return spill.add(b, sums)
        except OSError as exc:
            raise EngineError(f"could not keep block {b} on disk in {spill.folder}: "
                              f"{exc.strerror or exc}; set TMPDIR to a folder with room") from exc

    @staticmethod
    def _blocks_dir(path) -> Path:
        return Path(str(path) + ".blocks")

    @classmethod
    def remove_running_state(cls, path) -> None:
        """Delete a running-state file and its block files: only once the result is stored.
        The file goes first, so that a kill in between leaves block files that no running
        state lists (and the next run clears them)."""
        Path(path).unlink(missing_ok=True)
        shutil.rmtree(cls._blocks_dir(path), ignore_errors=True)
        # A write killed half-way leaves its temp file (see torch_save_atomic).
        Path(str(path) + ".tmp").unlink(missing_ok=True)

    def _set_aside(self, path: Path, reason: str) -> None:
        """Rename a damaged running state (and its block files) to ``*.damaged``, kept for
        inspection, so that the run can start afresh instead of failing on every rerun."""
        aside = Path(str(path) + ".damaged")
        blocks = self._blocks_dir(path)
        blocks_aside = Path(str(blocks) + ".damaged")
        try:
            os.replace(path, aside)
            if blocks.exists():
                shutil.rmtree(blocks_aside, ignore_errors=True)
                os.replace(blocks, blocks_aside)
        except OSError as exc:
            raise EngineError(f"running-state file {path} {reason}, and could not be set aside "
                              f"({exc}); move it away to start afresh") from exc
        print(f"warning: running-state file {path} {reason}; set aside as {aside.name}, "
              "starting afresh", file=sys.stderr, flush=True)

    def _resume_point(self, path, start: int, stop: int, end: int, A_max: int) -> dict | None:
        """The running state to resume from, or None to start afresh.  Another run's state
        is refused (it may be the user's work, pointed at by mistake); a damaged one is
        set aside."""
        path = Path(path)
        if not path.is_file():
            # Block files that no running state lists (a run killed before its first
            # checkpoint, perhaps with other options) must never be taken for this run's.
            shutil.rmtree(self._blocks_dir(path), ignore_errors=True)
            return None
        try:
            # weights_only: a pickle that would run code is refused like any damaged file.
            ck = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # truncated, random bytes, pickled objects, older formats
            self._set_aside(path, _unreadable(exc))
            return None
        if not isinstance(ck, dict) or ck.get("format") != RUNNING_STATE_FORMAT:
            raise EngineError(f"{path} is a readable file but not a stategrad running state; "
                              "move it away or point --checkpoint elsewhere")
        try:
            if ck.get("version") != RUNNING_STATE_VERSION:
                raise _DamagedState(f"has version {ck.get('version')!r}, this stategrad "
                                    f"writes {RUNNING_STATE_VERSION}")
            try:
                meta = json.loads(ck["meta"])
                if not isinstance(meta, dict):
                    raise TypeError("metadata is not a mapping")
            except (KeyError, TypeError, ValueError) as exc:
                raise _DamagedState(f"has unreadable metadata ({_first_line(exc)})") from exc
            self._check_checkpoint(meta, start, stop, path)
            return self._unpack(path, ck, meta, start, end, A_max)
        except _DamagedState as exc:
            self._set_aside(path, str(exc))
            return None

    def _unpack(self, path, ck: dict, meta: dict, start: int, end: int, A_max: int) -> dict:
        """The saved arrays, checked against this run's shapes; _DamagedState if they are not."""
        D, C, E, H, L = self.D, self.C, self.E, self.H, self.layer + 1
        comps = ("h", "c") if self.cell == "lstm" else ("h",)
        keys = [(l, comp) for l in range(L) for comp in comps]
        try:
            k = int(meta["k"])
            starts = ck["starts"].numpy()
            bufs = dict(zip([tuple(key) for key in meta["bufs"]], ck["bufs"], strict=True))
            accs = {int(b): (s, n.numpy()) for b, s, n in
                    zip(meta["accs"], ck["acc_sums"], ck["acc_counts"], strict=True)}
            state = {
                "k": k, "hs": list(ck["hs"]), "cs": list(ck["cs"]), "starts": starts,
                "bufs": bufs, "total": ck["total"], "total_counts": ck["total_counts"].numpy(),
                "accs": accs,
            }
            closed = [int(b) for b in meta["closed_blocks"]]
            fits = (
                start <= k < end
                and len(state["hs"]) == L and all(h.shape == (H,) for h in state["hs"])
                and len(state["cs"]) == L
                and all((c is None) if len(comps) == 1 else c.shape == (H,) for c in state["cs"])
                and starts.ndim == 1 and starts.dtype == np.int64 and len(starts) <= A_max
                and sorted(bufs) == sorted(keys)
                and all(v.shape == (len(starts), E, H) for v in bufs.values())
                and state["total"].shape == (D, C, E * H) and state["total"].dtype == torch.float64
                and state["total_counts"].shape == (D, C)
                and all(s.shape == (D, C, E * H) and n.shape == (D, C) for s, n in accs.values())
            )
        except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as exc:
            raise _DamagedState(f"lacks part of a running state ({_first_line(exc)})") from exc
        if not fits:
            raise _DamagedState("holds arrays that do not fit this run")
        for b in closed:  # every block file is checked here, one at a time (memory)
            self._load_blocks(path, [b])
        state["closed_blocks"] = closed
        return state

    def _save_blocks(self, path, closed_blocks) -> list[int]:
        folder = self._blocks_dir(path)
        folder.mkdir(parents=True, exist_ok=True)
        for b, (sums, counts) in closed_blocks.items():
            if b in self._blocks_on_disk:
                continue
            target = folder / f"block-{b}.npz"
            tmp = folder / f"block-{b}.tmp.npz"
            try:
                np.savez(tmp, sums=sums, counts=counts)
                os.replace(tmp, target)
            except OSError as exc:
                tmp.unlink(missing_ok=True)
                raise OSError(f"block file {target.name}: {exc.strerror or exc}") from exc
            self._blocks_on_disk.add(b)
        return sorted(closed_blocks)

    def _load_blocks(self, path, ids) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        folder = self._blocks_dir(path)
        blocks = {}
        for b in ids:
            try:
                with np.load(folder / f"block-{b}.npz", allow_pickle=False) as data:
                    sums, counts = data["sums"], data["counts"]
            except Exception as exc:  # missing, truncated, not an npz: many exception types
                raise _DamagedState(f"lists block {b}, which is missing or unreadable in "
                                    f"{folder.name} ({_first_line(exc)})") from exc
            if sums.shape != (self.D, self.C, self.E * self.H) or counts.shape != (self.D, self.C):
                raise _DamagedState(f"lists block {b}, whose arrays do not fit this run")
            blocks[b] = (sums, counts)
        return blocks

    def _save_checkpoint(self, path, k, hs, cs, starts, bufs, cur, chosen, total, total_counts,
                         accs, closed_blocks, start, stop) -> None:
        n = len(starts)
        keys = sorted(bufs)
        saved_bufs = []
        for key in keys:
            idx = 0 if key == chosen else cur[key]
            saved_bufs.append(bufs[key][idx, :n].cpu().clone())
        acc_ids = sorted(accs)
        try:
            # Closed blocks never change: each is written once beside the checkpoint,
            # which only lists them, so the checkpoint does not grow with the text.
            meta = {
                "fingerprint": self._fingerprint(start, stop),
                "k": int(k),
                "bufs": [list(key) for key in keys],
                "accs": acc_ids,
                "closed_blocks": self._save_blocks(path, closed_blocks),
            }
            ck = {
                "format": RUNNING_STATE_FORMAT,
                "version": RUNNING_STATE_VERSION,
                "meta": json.dumps(meta),
                "hs": [h.cpu() for h in hs],
                "cs": [c.cpu() if c is not None else None for c in cs],
                "starts": torch.from_numpy(np.array(starts, dtype=np.int64)),
                "bufs": saved_bufs,
                "total": total.cpu(),
                "total_counts": torch.from_numpy(np.array(total_counts, dtype=np.int64)),
                "acc_sums": [accs[b].sums.cpu() for b in acc_ids],
                "acc_counts": [torch.from_numpy(np.array(accs[b].counts, dtype=np.int64))
                               for b in acc_ids],
            }
            torch_save_atomic(ck, path)
        except OSError as exc:
            raise EngineError(f"could not write the running state {path}: {exc}") from exc
        # Ping-pong buffers were saved from their current slot; restore puts them in slot 0.
        for key in cur:
            if key != chosen and cur[key] != 0:
                bufs[key][0, :n].copy_(bufs[key][cur[key], :n])
                cur[key] = 0


class InterruptedRun(RuntimeError):
    """Raised when a run stops early on purpose (``stop_after_steps``); resumable."""

    def __init__(self, position: int):
        super().__init__(f"stopped at position {position}; rerun with the same checkpoint to resume")
        self.position = position


def compute_state_gradients(
    model: LanguageModel | RNNLM | torch.nn.Module,
    tokens: Sequence[int] | np.ndarray,
    *,
    max_delay: int,
    state: str = "cell",
    layer: int = -1,
    classes: ClassSet | None = None,
    semantics: str = "carry",
    segment_length: int | None = None,
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
    block_size: int | None = None,
    sample_every: int | None = None,
    sample_fraction: float | None = None,
    seed: int = 0,
    start: int = 0,
    stop: int | None = None,
    initial_state=None,
    checkpoint_path: str | os.PathLike | None = None,
    checkpoint_every: float = 300.0,
    progress: bool = False,
    on_pairs: PairCallback | None = None,
    text_info: dict[str, Any] | None = None,
) -> GradientResult:
    """Sums and counts of ``G(t, d) = d s_{t+d} / d x_t`` per delay d < ``max_delay`` and class.

    ``semantics="carry"`` differentiates the model run over the whole text (exact);
    ``"segment"`` reproduces the original code: segments of ``segment_length`` tokens
    whose initial state is a constant.  ``layer`` counts from 0 (-1: the top layer).
    ``block_size`` keeps sums per block of that many start positions for confidence
    intervals.  ``sample_every``/``sample_fraction`` use a subset of start positions.
    """
    with torch.no_grad():
        engine = StateGradientEngine(
            model,
            tokens,
            EngineOptions(max_delay=max_delay, state=state, layer=layer, semantics=semantics,
                          segment_length=segment_length, device=device, dtype=dtype,
                          block_size=block_size, sample_every=sample_every,
                          sample_fraction=sample_fraction, seed=seed),
            classes,
        )
        return engine.run(start, stop, initial_state=initial_state, progress=progress,
                          on_pairs=on_pairs, checkpoint_path=checkpoint_path,
                          checkpoint_every=checkpoint_every, text_info=text_info)


def sentence_gradients(
    model: LanguageModel | RNNLM | torch.nn.Module,
    tokens: Sequence[int] | np.ndarray,
    *,
    state: str = "cell",
    layer: int = -1,
    dtype: torch.dtype = torch.float64,
    initial_state=None,
) -> np.ndarray:
    """Every G for a short text: array (T, T, H, E) with ``[t, k] = d s_k / d x_t``
    (zero where k < t), from the zero state unless ``initial_state`` is given."""
    tokens = np.asarray(tokens, dtype=np.int64)
    T = len(tokens)
    if T == 0:
        raise EngineError("empty sentence")
    engine_holder: dict[str, Any] = {}

    def collect(k: int, starts: np.ndarray, tangents: torch.Tensor) -> None:
        out = engine_holder["out"]
        out[starts, k] = tangents.transpose(1, 2).cpu().numpy()

    with torch.no_grad():
        engine = StateGradientEngine(
            model, tokens, EngineOptions(max_delay=T, state=state, layer=layer, dtype=dtype), None
        )
        engine_holder["out"] = np.zeros((T, T, engine.H, engine.E))
        engine.run(0, T, initial_state=initial_state, progress=False, on_pairs=collect)
    return engine_holder["out"]
