"""A Mamba-style selective state-space language model in plain PyTorch.

Embedding -> ``num_layers`` Mamba blocks -> RMSNorm -> linear softmax.  A block is
(Gu & Dao 2023, as in Hugging Face's ``MambaMixer``)::

    h = RMSNorm(u);  x, z = in_proj(h)                      # d_inner = expand * d_model
    xc = SiLU(causal depthwise conv1d of width d_conv over x)
    dt, B, C = x_proj(xc);  dt = softplus(dt_proj(dt))      # input-dependent, per step
    s_t = exp(dt A) * s_(t-1) + dt B xc                      # A = -exp(A_log), s: d_inner x d_state
    y = (C s_t + D xc) * SiLU(z);  u' = u + out_proj(y)

The recurrent state of one layer is two named tensors: ``ssm`` (d_inner x d_state), the
selective scan's state, and ``conv`` (d_inner x (d_conv - 1)), the last inputs of the
convolution.  :func:`layer_step` is the pure one-step map of a layer; the sequence
forward computes the same function with the projections done for all steps at once and
a loop over time only for the scan (:mod:`stategrad.lm.mamba_scan`, a custom autograd
function: training speed).  Both read their parameters through the attribute names of
Hugging Face's ``MambaBlock`` (``norm``, ``mixer.in_proj``, ...), so the same code runs
a ``transformers`` model (see :mod:`stategrad.lm.hf_mamba`).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .mamba_scan import selective_scan

MambaState = tuple[torch.Tensor, torch.Tensor]  # (conv, ssm), each (layers, batch, d_inner, .)

#: The parts of a layer's state one can analyse.  ``output`` is the block's output at the
#: step just taken (the residual stream the next layer and the softmax read); it does not
#: feed back, but it is what ``logits`` needs besides ``ssm`` and ``conv``.
STATE_NAMES = ("ssm", "conv", "output")


class RMSNorm(nn.Module):
    """``x / rms(x) * weight`` (``nn.RMSNorm`` is newer than the torch this package needs)."""

    def __init__(self, size: int, eps: float = 1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.variance_epsilon = eps  # Hugging Face's attribute name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return rms_norm(x, self)


def rms_norm(x: torch.Tensor, norm: Any) -> torch.Tensor:
    """The RMSNorm of ``norm`` (ours or Hugging Face's ``MambaRMSNorm``), in ``x``'s dtype."""
    variance = x.pow(2).mean(-1, keepdim=True)
    return x * torch.rsqrt(variance + norm.variance_epsilon) * norm.weight.to(x.dtype)


class MambaMixer(nn.Module):
    """The parameters of one block's mixer, named as Hugging Face names them."""

    def __init__(self, d_model: int, d_inner: int, d_state: int, d_conv: int, dt_rank: int):
        super().__init__()
        self.intermediate_size, self.ssm_state_size, self.time_step_rank = d_inner, d_state, dt_rank
        self.in_proj = nn.Linear(d_model, 2 * d_inner, bias=False)
        self.conv1d = nn.Conv1d(d_inner, d_inner, d_conv, groups=d_inner, padding=d_conv - 1)
        self.x_proj = nn.Linear(d_inner, dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(dt_rank, d_inner, bias=True)
        self.A_log = nn.Parameter(torch.log(torch.arange(1, d_state + 1, dtype=torch.float32))
                                  .repeat(d_inner, 1))
        self.D = nn.Parameter(torch.ones(d_inner))
        self.out_proj = nn.Linear(d_inner, d_model, bias=False)
        self.act = nn.SiLU()


class MambaBlock(nn.Module):
    def __init__(self, d_model: int, d_inner: int, d_state: int, d_conv: int, dt_rank: int):
        super().__init__()
        self.norm = RMSNorm(d_model)
        self.mixer = MambaMixer(d_model, d_inner, d_state, d_conv, dt_rank)


# --- the computation, shared by the step and the sequence forward ------------------------

def _selective_inputs(mixer: Any, xc: torch.Tensor):
    """dt (., d_inner), B and C (., d_state) from the convolved inputs ``xc`` (., d_inner)."""
    r, n = mixer.time_step_rank, mixer.ssm_state_size
    dt, b, c = torch.split(mixer.x_proj(xc), [r, n, n], dim=-1)
    return F.softplus(mixer.dt_proj(dt)), b, c


def _normalised(x: torch.Tensor, eps: float) -> torch.Tensor:
    """``x / rms(x)`` without the weight (one fused op where this torch has it)."""
    if hasattr(F, "rms_norm"):
        return F.rms_norm(x, (x.shape[-1],), eps=eps)
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)


def _per_channel(v: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """``v[..., i, None] * p[i]`` for ``v`` (..., d_inner) and ``p`` (d_inner, k), as a batched
    matrix product (..., d_inner, k)."""
    return (v.unsqueeze(-1).unsqueeze(-1) @ p.unsqueeze(-2)).squeeze(-2)


def layer_step(block: Any, u: torch.Tensor, conv: torch.Tensor, ssm: torch.Tensor):
    """One step of one block: ``u`` (batch, d_model), ``conv`` (batch, d_inner, d_conv-1),
    ``ssm`` (batch, d_inner, d_state) -> (block output, new conv, new ssm).  Pure.

    Written for ``torch.func.jvp``: forward-mode AD runs a slow decomposed product for an
    elementwise product of a dual tensor and a parameter (about 10x the cost of the
    product itself), so every such product is folded into a weight (the norm's) or done
    as a matrix product (the convolution, Δ A, D x); products of two duals are fast."""
    mixer = block.mixer
    w_in = mixer.in_proj.weight * block.norm.weight.to(u.dtype)  # RMSNorm's weight folded in
    h = F.linear(_normalised(u, block.norm.variance_epsilon), w_in, mixer.in_proj.bias)
    x, z = h.chunk(2, dim=-1)
    window = torch.cat([conv, x.unsqueeze(-1)], dim=-1)  # (batch, d_inner, d_conv)
    kernel = mixer.conv1d.weight[:, 0, :]
    if mixer.conv1d.bias is not None:  # the bias as one more tap on a constant input 1
        window_1 = torch.cat([window, torch.ones_like(window[..., :1])], dim=-1)
        kernel = torch.cat([kernel, mixer.conv1d.bias.unsqueeze(-1)], dim=-1)
    else:
        window_1 = window
    xc = mixer.act((window_1.unsqueeze(-2) @ kernel.unsqueeze(-1))[..., 0, 0])
    dt, b, c = _selective_inputs(mixer, xc)
    decay = torch.exp(_per_channel(dt, -torch.exp(mixer.A_log)))
    ssm = decay * ssm + (dt * xc).unsqueeze(-1) * b.unsqueeze(-2)
    y = (ssm * c.unsqueeze(-2)).sum(-1) + _per_channel(xc, mixer.D.unsqueeze(-1))[..., 0]
    out = u + mixer.out_proj(y * mixer.act(z))
    return out, window[..., 1:], ssm


def layer_sequence(block: Any, u: torch.Tensor, conv: torch.Tensor, ssm: torch.Tensor):
    """The same as :func:`layer_step` over ``u`` (steps, batch, d_model): projections and
    convolution for all steps at once, a loop over time for the scan only
    (:func:`~stategrad.lm.mamba_scan.selective_scan`, with its own backward)."""
    mixer = block.mixer
    x, z = mixer.in_proj(rms_norm(u, block.norm)).chunk(2, dim=-1)
    seq = torch.cat([conv, x.permute(1, 2, 0)], dim=-1)  # (batch, d_inner, width-1+steps)
    w = mixer.conv1d.weight
    xc = mixer.act(F.conv1d(seq, w, mixer.conv1d.bias, groups=w.shape[0]).permute(2, 0, 1))
    dt, b, c = _selective_inputs(mixer, xc)
    y, ssm = selective_scan(dt, -torch.exp(mixer.A_log), b, c, xc, ssm)
    out = u + mixer.out_proj((y + mixer.D * xc) * mixer.act(z))
    new_conv = seq[..., seq.shape[-1] - conv.shape[-1]:]
    return out, new_conv, ssm


# --- the language model -------------------------------------------------------------------

def dt_rank_for(d_model: int) -> int:
    """Mamba's (and Hugging Face's ``time_step_rank="auto"``) rank of the dt projection."""
    return math.ceil(d_model / 16)


class MambaLM(nn.Module):
    """Embedding -> dropout -> Mamba blocks -> RMSNorm -> dropout -> linear.

    Same calling convention as :class:`~stategrad.lm.models.RNNLM`: ``forward(inputs,
    state)`` with ``inputs`` (steps, batch) returns logits and the new state, here the
    tuple ``(conv, ssm)`` stacked over layers, so training carries and detaches it like
    an LSTM's ``(h, c)``.  ``spec.hidden_size`` is d_model (the residual width).
    """

    def __init__(self, spec: Any):
        super().__init__()
        self.spec = spec
        d_model, d_inner = spec.hidden_size, spec.expand * spec.hidden_size
        self.embedding = nn.Embedding(spec.vocab_size, d_model)
        self.layers = nn.ModuleList(
            MambaBlock(d_model, d_inner, spec.d_state, spec.d_conv, dt_rank_for(d_model))
            for _ in range(spec.num_layers))
        self.norm_f = RMSNorm(d_model)
        self.dropout = nn.Dropout(spec.dropout)
        self.decoder = nn.Linear(d_model, spec.vocab_size)
        if spec.tie_weights:
            self.decoder.weight = self.embedding.weight
        self.reset_parameters()

    @property
    def d_inner(self) -> int:
        return self.spec.expand * self.spec.hidden_size

    def reset_parameters(self) -> None:
        """Linear and embedding weights uniform in [-init_scale, init_scale] as the RNNs;
        the state-space parameters as Mamba initialises them: A_log = log(1..d_state),
        D = 1, norms 1, and dt_proj's bias so that softplus(bias) is log-uniform in
        [0.001, 0.1] (slow and fast channels from the start)."""
        scale = self.spec.init_scale
        for name, p in self.named_parameters():
            if name.split(".")[-1] in ("A_log", "D") or ".norm." in name or name.startswith("norm_f"):
                continue
            nn.init.uniform_(p, -scale, scale)
        with torch.no_grad():
            for block in self.layers:
                m = block.mixer
                dt = torch.exp(torch.rand(self.d_inner) * (math.log(0.1) - math.log(1e-3))
                               + math.log(1e-3))
                m.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # softplus^-1

    def init_state(self, batch_size: int, device: torch.device | str | None = None) -> MambaState:
        s, weight = self.spec, self.decoder.weight
        shape = (s.num_layers, batch_size, self.d_inner)
        opts = {"dtype": weight.dtype, "device": device or weight.device}
        return (torch.zeros(*shape, s.d_conv - 1, **opts), torch.zeros(*shape, s.d_state, **opts))

    def forward(self, inputs: torch.Tensor, state: MambaState | None = None,
                return_hidden: bool = False):
        """``inputs``: (steps, batch) ids.  Returns logits (steps, batch, V) and the new
        state, or the final normed outputs instead of logits when ``return_hidden``."""
        if state is None:
            state = self.init_state(inputs.shape[1], inputs.device)
        u = self.embedding(inputs)
        if self.spec.embedding_dropout:
            u = self.dropout(u)
        convs, ssms = [], []
        for i, block in enumerate(self.layers):
            u, conv, ssm = layer_sequence(block, u, state[0][i], state[1][i])
            convs.append(conv)
            ssms.append(ssm)
        hidden = self.dropout(rms_norm(u, self.norm_f))
        new_state = (torch.stack(convs), torch.stack(ssms))
        if return_hidden:
            return hidden, new_state
        return self.decoder(hidden), new_state

    # --- the recurrent-model protocol (what the state gradient engine runs) --------------
    state_names = STATE_NAMES

    @property
    def num_layers(self) -> int:
        return self.spec.num_layers

    @property
    def vocab_size(self) -> int:
        return self.spec.vocab_size

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self.embedding(ids)

    def initial_state(self, batch: int, device=None, dtype=None) -> tuple[dict, ...]:
        return protocol_state(self.init_state(batch, device), self.spec.hidden_size, dtype)

    def step(self, x: torch.Tensor, state: tuple[dict, ...]) -> tuple[dict, ...]:
        return protocol_step(self.layers, x, state)

    def select(self, state: tuple[dict, ...], name: str, layer: int) -> torch.Tensor:
        return select_part(state, name, layer)

    def features(self, state: tuple[dict, ...]) -> torch.Tensor:
        """What the linear decoder reads: the top block's output, normalised."""
        return rms_norm(state[-1]["output"], self.norm_f)

    def logits(self, state: tuple[dict, ...]) -> torch.Tensor:
        return self.decoder(self.features(state))


# --- the protocol's state: per layer {"ssm", "conv", "output"}, batch first ------------------

def protocol_state(state: MambaState, d_model: int, dtype=None) -> tuple[dict, ...]:
    """The training state ``(conv, ssm)`` (layers first) as the protocol's per-layer dicts,
    with a zero ``output``."""
    conv, ssm = state
    dtype = dtype or conv.dtype
    return tuple({"ssm": ssm[i].to(dtype), "conv": conv[i].to(dtype),
                  "output": ssm.new_zeros(ssm.shape[1], d_model, dtype=dtype)}
                 for i in range(conv.shape[0]))


def protocol_step(blocks: Any, x: torch.Tensor, state: tuple[dict, ...]) -> tuple[dict, ...]:
    """One step of a stack of blocks from the embedded input ``x`` (batch, d_model).  Pure."""
    u, new = x, []
    for block, s in zip(blocks, state, strict=True):
        u, conv, ssm = layer_step(block, u, s["conv"], s["ssm"])
        new.append({"ssm": ssm, "conv": conv, "output": u})
    return tuple(new)


def select_part(state: tuple[dict, ...], name: str, layer: int) -> torch.Tensor:
    """One named part of one layer, flattened to (batch, size): ``ssm`` is d_inner x
    d_state, row-major (entry ``i * d_state + n`` is channel i, state dimension n)."""
    part = state[layer][name]
    return part.reshape(part.shape[0], -1)
