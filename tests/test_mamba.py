"""The Mamba-style LM: its one-step recurrence is the sequence forward, exactly."""

import pytest
import torch

from stategrad.lm import MambaLM, ModelError, ModelSpec, build_module
from stategrad.lm.mamba import protocol_state


def _model(seed=0, layers=2, d_conv=4, dtype=torch.float64, **kw):
    torch.manual_seed(seed)
    spec = ModelSpec(vocab_size=13, embedding_size=8, hidden_size=8, num_layers=layers,
                     cell="mamba", d_state=5, d_conv=d_conv, expand=2, init_scale=0.3, **kw)
    return MambaLM(spec).to(dtype).eval()


def _stepwise(model, ids, start):
    """The protocol's pure step, one token at a time; the final state as (conv, ssm)."""
    state = protocol_state(start, model.spec.hidden_size)
    outs = []
    for t in range(ids.shape[0]):
        state = model.step(model.embed(ids[t]), state)
        outs.append(model.logits(state))
    conv = torch.stack([s["conv"] for s in state])
    ssm = torch.stack([s["ssm"] for s in state])
    return torch.stack(outs), (conv, ssm)


@pytest.mark.parametrize("d_conv", [1, 2, 4])
def test_step_recurrence_reproduces_sequence_forward(d_conv):
    model = _model(d_conv=d_conv)
    ids = torch.randint(0, 13, (11, 3))
    start = tuple(torch.randn_like(s) for s in model.init_state(3))
    with torch.no_grad():
        logits, (conv, ssm) = model(ids, start)
        step_logits, (conv_s, ssm_s) = _stepwise(model, ids, start)
    assert conv.shape == (2, 3, 16, d_conv - 1) and ssm.shape == (2, 3, 16, 5)
    torch.testing.assert_close(step_logits, logits, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(conv_s, conv, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ssm_s, ssm, rtol=1e-12, atol=1e-12)


def test_carried_state_equals_one_long_sequence():
    """Cutting a text into segments and carrying the state changes nothing (training)."""
    model = _model(seed=1)
    ids = torch.randint(0, 13, (12, 2))
    with torch.no_grad():
        whole, end = model(ids)
        first, state = model(ids[:5])
        second, end2 = model(ids[5:], state)
    torch.testing.assert_close(torch.cat([first, second]), whole, rtol=1e-12, atol=1e-12)
    for a, b in zip(end, end2, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_output_depends_on_the_past_only_through_the_state():
    """A direct check of causality and of the state: changing an early token changes the
    state and later logits; changing a later one leaves the earlier logits alone."""
    model = _model(seed=2)
    ids = torch.randint(0, 13, (9, 1))
    other = ids.clone()
    other[6] = (ids[6] + 1) % 13
    with torch.no_grad():
        a, _ = model(ids)
        b, _ = model(other)
    torch.testing.assert_close(a[:6], b[:6], rtol=0, atol=0)
    assert not torch.allclose(a[6:], b[6:])


def test_spec_checks_mamba_shape():
    with pytest.raises(ModelError, match="embedding_size == hidden_size"):
        ModelSpec(vocab_size=5, embedding_size=4, hidden_size=8, cell="mamba")
    module = build_module(ModelSpec(vocab_size=5, embedding_size=8, hidden_size=8, cell="Mamba"))
    assert isinstance(module, MambaLM) and module.spec.cell == "mamba"


def test_protocol_members_and_select():
    model = _model(seed=3)
    state = model.initial_state(2, "cpu", torch.float64)
    assert model.state_names == ("ssm", "conv", "output") and model.num_layers == 2
    state = model.step(model.embed(torch.tensor([1, 2])), state)
    ssm = model.select(state, "ssm", 1)
    assert ssm.shape == (2, 16 * 5)
    # row-major: entry i * d_state + n is channel i, state dimension n
    assert ssm[1, 3 * 5 + 2] == state[1]["ssm"][1, 3, 2]
    assert model.select(state, "conv", 0).shape == (2, 16 * 3)
    assert model.logits(state).shape == (2, 13)
