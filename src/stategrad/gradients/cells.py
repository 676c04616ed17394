"""One step of an LSTM, GRU or tanh/ReLU RNN, forward, and its tangent maps.

The forward values of a step do not depend on the tangents, so the engine runs the
forward pass a window of steps ahead and folds the coefficients of all those steps
into their matrices with a few large element-wise operations instead of many small
ones.  Every gate coefficient scales a *column* of ``W^T``, which is why a step's
tangent map is a sum of column-scaled weight blocks (see the engine's docstring)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..lm import RNNLM
from .options import EngineError

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



# --- the forward pass and its tangent maps, a window of steps at a time ------------------------

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


def forward_window(layers: list[_Layer], k: int, n: int, hs: list, cs: list,
                   input_projection) -> list[_WindowMaps]:
    """Run the forward pass over positions k .. k+n-1 (updating ``hs``/``cs`` in place)
    and return every layer's tangent maps for those steps."""
    maps = []
    # Layer 0's input projections; each layer's outputs give the next one's, at once.
    inputs = torch.stack([input_projection(k + i) for i in range(n)])
    for l, layer in enumerate(layers):
        forward = _FORWARD[layer.cell]
        hseq, coefs = [], []
        h, c = hs[l], cs[l]
        for i in range(n):
            h, c, co = forward(layer, inputs[i], h, c)
            hseq.append(h)
            coefs.append(co)
        hs[l], cs[l] = h, c
        maps.append(_fold(layer, torch.stack(coefs)))
        if l + 1 < len(layers):
            above = layers[l + 1]
            inputs = torch.addmm(above.bias, torch.stack(hseq), above.w_ih_t)
    return maps
