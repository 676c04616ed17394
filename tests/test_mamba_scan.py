"""The Mamba LM's sequence forward (with its hand-written scan backward) is the same
function as its pure one-step map: values and gradients, in float64."""

import pytest
import torch
import torch.nn.functional as F

from stategrad.lm import MambaLM, ModelSpec
from stategrad.lm.mamba import protocol_state
from stategrad.lm.mamba_scan import selective_scan

torch.set_num_threads(1)


def _scan_inputs(steps=6, batch=2, d_inner=3, d_state=4, seed=0, dt_scale=1.0):
    g = torch.Generator().manual_seed(seed)

    def r(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    dt = F.softplus(r(steps, batch, d_inner)) * dt_scale
    A = -torch.exp(r(d_inner, d_state))
    ins = (dt, A, r(steps, batch, d_state), r(steps, batch, d_state), r(steps, batch, d_inner),
           r(batch, d_inner, d_state))
    return tuple(t.requires_grad_() for t in ins)


def _reference_scan(dt, A, b, c, x, s):
    """The recurrence written out step by step with plain tensor ops (autograd's backward)."""
    ys = []
    for t in range(dt.shape[0]):
        s = torch.exp(dt[t].unsqueeze(-1) * A) * s + (dt[t] * x[t]).unsqueeze(-1) * b[t].unsqueeze(-2)
        ys.append((s * c[t].unsqueeze(-2)).sum(-1))
    return torch.stack(ys), s


def test_scan_backward_matches_finite_differences():
    assert torch.autograd.gradcheck(selective_scan, _scan_inputs())


@pytest.mark.parametrize("use", ["both", "y", "last"])
def test_scan_matches_the_step_by_step_recurrence(use):
    # large steps too: decays down to exp(-100), where a cumulative-product scan would fail
    ins = _scan_inputs(steps=40, batch=3, d_inner=5, d_state=7, seed=1, dt_scale=8.0)
    g = torch.Generator().manual_seed(2)
    wy = torch.randn(40, 3, 5, generator=g, dtype=torch.float64) * (use != "last")
    ws = torch.randn(3, 5, 7, generator=g, dtype=torch.float64) * (use != "y")
    results = []
    for fn in (selective_scan, _reference_scan):
        y, last = fn(*ins)
        loss = (y * wy).sum() + (last * ws).sum()
        results.append((y, last, torch.autograd.grad(loss, ins)))
    (y, last, grads), (y_ref, last_ref, grads_ref) = results
    torch.testing.assert_close(y, y_ref, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(last, last_ref, rtol=1e-12, atol=1e-14)
    for got, want in zip(grads, grads_ref, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-13)


def test_scan_without_graph_equals_scan_with_graph():
    ins = _scan_inputs(seed=3)
    y, last = selective_scan(*ins)
    with torch.no_grad():
        y0, last0 = selective_scan(*ins)
    assert torch.equal(y, y0) and torch.equal(last, last0)


def _model(seed=0):
    torch.manual_seed(seed)
    spec = ModelSpec(vocab_size=11, embedding_size=6, hidden_size=6, num_layers=2, cell="mamba",
                     d_state=4, d_conv=3, expand=2, init_scale=0.4)
    model = MambaLM(spec).double().eval()
    with torch.no_grad():
        for block in model.layers:  # channels of different speeds, not Mamba's init only
            block.mixer.A_log.add_(torch.randn_like(block.mixer.A_log))
            block.mixer.dt_proj.bias.add_(torch.randn_like(block.mixer.dt_proj.bias))
    return model


def _stepwise_loss(model, ids, start):
    """The training loss run through the pure one-step map (layer_step), token by token."""
    state = protocol_state(start, model.spec.hidden_size)
    logits = []
    for t in range(ids.shape[0] - 1):
        state = model.step(model.embed(ids[t]), state)
        logits.append(model.logits(state))
    last = (torch.stack([s["conv"] for s in state]), torch.stack([s["ssm"] for s in state]))
    return torch.stack(logits), last


def test_training_loss_and_gradients_match_the_pure_step():
    """What ``stategrad train`` differentiates: the loss of a batch from a carried state,
    and its gradient in every parameter and in the start state."""
    model = _model()
    ids = torch.randint(0, 11, (13, 3), generator=torch.Generator().manual_seed(4))
    start = tuple(torch.randn_like(s) for s in model.init_state(3))
    params = [p for _, p in sorted(model.named_parameters())]
    results = []
    for forward in (lambda s: model(ids[:-1], s), lambda s: _stepwise_loss(model, ids, s)):
        s0 = tuple(s.clone().requires_grad_() for s in start)
        logits, (conv, ssm) = forward(s0)
        loss = F.cross_entropy(logits.reshape(-1, 11), ids[1:].reshape(-1), reduction="sum")
        loss = loss + (ssm ** 2).sum() + conv.sum()  # the carried state's gradient path too
        results.append((loss, torch.autograd.grad(loss, [*params, *s0])))
    (loss, grads), (loss_ref, grads_ref) = results
    torch.testing.assert_close(loss, loss_ref, rtol=1e-12, atol=0)
    assert max(g.abs().max() for g in grads_ref) > 1e-3
    for got, want in zip(grads, grads_ref, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
