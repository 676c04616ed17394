"""The selective scan of a Mamba block over a sequence, with a hand-written backward.

    s_t = exp(dt_t A) * s_(t-1) + (dt_t x_t) B_t,    y_t = s_t C_t

``dt``, ``x`` (steps, batch, d_inner), ``B``, ``C`` (steps, batch, d_state), ``A``
(d_inner, d_state), ``s`` (batch, d_inner, d_state).  This is the same function as the
loop over time in :func:`~stategrad.lm.mamba.layer_step`; what differs is the cost.

Why a custom autograd function: written with tensor ops, the scan materialises the decay
``exp(dt A)``, the drive ``dt x B`` and the states as (steps, batch, d_inner, d_state)
tensors (65 MB each at 200 x 20 x 256 x 16) and autograd adds as many gradients of that
size, so training is bound by memory traffic; indexing them per step (``decay[t]``) even
makes the backward quadratic in the steps (each index's gradient is a full-size zero
tensor).  Here each step works on (batch, d_inner, d_state) slices that stay in cache:
the forward keeps only the states (the backward needs s_(t-1)), and the backward runs the
adjoint recurrence g_(t-1) = exp(dt_t A) * g_t + C_(t-1) dy_(t-1) backwards in time,
recomputing the decay rather than storing it.  No approximation: no cumulative products
or divisions by decays (which underflow), the same exp of the same products as the step.
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable


def selective_scan(dt: torch.Tensor, A: torch.Tensor, b: torch.Tensor, c: torch.Tensor,
                   x: torch.Tensor, ssm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``y`` (steps, batch, d_inner) and the last state (batch, d_inner, d_state).
    Differentiable in every input (reverse mode, once)."""
    xd = dt * x  # the drive's per-channel factor; autograd takes this product's gradient
    if torch.is_grad_enabled() and any(t.requires_grad for t in (dt, A, b, c, xd, ssm)):
        return _SelectiveScan.apply(dt, A, b, c, xd, ssm)
    y, states = _forward(dt, A, b, c, xd, ssm, keep_states=False)
    return y, states[-1]


def _forward(dt, A, b, c, xd, s0, keep_states: bool):
    """The scan; all states (steps, batch, d_inner, d_state) if ``keep_states``, else only
    the last one (a rolling buffer: evaluation needs no more)."""
    steps = dt.shape[0]
    states = torch.empty((steps if keep_states else 1, *s0.shape), dtype=s0.dtype,
                         device=s0.device)
    y = torch.empty_like(xd)
    s = s0
    for t in range(steps):
        decay = torch.exp(dt[t].unsqueeze(-1) * A)
        out = states[t if keep_states else 0]
        # decay * s first, then the drive: the order of layer_step's expression
        s = torch.addcmul(decay * s, xd[t].unsqueeze(-1), b[t].unsqueeze(-2), out=out)
        torch.matmul(s, c[t].unsqueeze(-1), out=y[t].unsqueeze(-1))
    return y, states


class _SelectiveScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, dt, A, b, c, xd, s0):
        y, states = _forward(dt, A, b, c, xd, s0, keep_states=True)
        ctx.save_for_backward(dt, A, b, c, xd, s0, states)
        return y, states[-1].clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, dy, ds_last):
        dt, A, b, c, xd, s0, states = ctx.saved_tensors
        g = ds_last.clone()  # dL/ds_t (autograd passes zeros for an unused output)
        d_dt, d_b, d_c, d_xd = (torch.empty_like(t) for t in (dt, b, c, xd))
        d_z_dt = torch.zeros_like(s0)  # sum over time of dL/d(dt_t A) * dt_t, for A
        for t in range(dt.shape[0] - 1, -1, -1):
            s = states[t]
            prev = states[t - 1] if t else s0
            g.addcmul_(dy[t].unsqueeze(-1), c[t].unsqueeze(-2))
            torch.matmul(dy[t].unsqueeze(-2), s, out=d_c[t].unsqueeze(-2))
            torch.matmul(g, b[t].unsqueeze(-1), out=d_xd[t].unsqueeze(-1))
            torch.matmul(xd[t].unsqueeze(-2), g, out=d_b[t].unsqueeze(-2))
            g.mul_(torch.exp(dt[t].unsqueeze(-1) * A))  # now dL/ds_(t-1) through the decay
            d_z = g * prev  # dL/d(dt_t A) = dL/ds_t * exp(dt_t A) * s_(t-1)
            torch.sum(d_z * A, dim=-1, out=d_dt[t])
            d_z_dt.addcmul_(d_z, dt[t].unsqueeze(-1))
        return d_dt, d_z_dt.sum(0), d_b, d_c, d_xd, g
