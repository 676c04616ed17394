"""The Hugging Face Mamba adapter against the Hugging Face model itself (float64)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stategrad.lm import HFMamba, ModelError

transformers = pytest.importorskip(
    "transformers", reason="the Hugging Face adapter needs transformers: pip install 'stategrad[hf]'")

torch.set_num_threads(1)
T, V = 7, 40


def _hf_model(seed=0, layers=2, conv=4, **kw):
    torch.manual_seed(seed)
    config = transformers.MambaConfig(vocab_size=V, hidden_size=12, state_size=3,
                                      num_hidden_layers=layers, conv_kernel=conv, expand=2,
                                      residual_in_fp32=False, **kw)
    model = transformers.MambaForCausalLM(config).double().eval()
    with torch.no_grad():  # larger A_log, D, dt spread than the init, so the test sees them
        for p in model.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return model


def _hf_states(output, layer: int):
    """Hugging Face's own final (ssm, conv) of ``layer`` after a forward with use_cache."""
    cache = getattr(output, "cache", None) or getattr(output, "cache_params", None)
    if hasattr(cache, "get_recurrent_state"):
        return (cache.get_recurrent_state(layer, state_idx=0),
                cache.get_conv_state(layer, state_idx=0))
    return cache.ssm_states[layer], cache.conv_states[layer]  # transformers 4.x


def _adapter_run(adapter, embeds):
    state = adapter.initial_state(embeds.shape[0], "cpu", torch.float64)
    logits = []
    for t in range(embeds.shape[1]):
        state = adapter.step(embeds[:, t], state)
        logits.append(adapter.logits(state))
    return torch.stack(logits, 1), state


@pytest.mark.parametrize("conv", [2, 4])
def test_adapter_reproduces_hugging_face_logits_and_states(conv):
    model = _hf_model(conv=conv)
    adapter = HFMamba(model)
    ids = torch.randint(0, V, (2, T))
    with torch.no_grad():
        out = model(input_ids=ids, use_cache=True)
        logits, state = _adapter_run(adapter, adapter.embed(ids))
    # Hugging Face's RMSNorm and A, D run in float32 even in a float64 model: agreement
    # is to float32 rounding, not float64's
    torch.testing.assert_close(logits, out.logits.double(), rtol=1e-5, atol=1e-5)
    for layer in range(2):
        ssm, conv_state = _hf_states(out, layer)
        torch.testing.assert_close(state[layer]["ssm"], ssm.double(), rtol=1e-5, atol=1e-6)
        # Hugging Face keeps the last d_conv inputs; the oldest no longer matters
        torch.testing.assert_close(state[layer]["conv"], conv_state[..., 1:].double(),
                                   rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("part", ["ssm", "conv"])
def test_adapter_state_jacobian_matches_autograd_through_hugging_face(part):
    """d state_T / d x_t (every t) by forward-mode through the adapter's pure step against
    reverse-mode autograd through Hugging Face's own forward."""
    model = _hf_model(seed=1)
    adapter = HFMamba(model)
    embeds = adapter.embed(torch.randint(0, V, (1, T))).detach()
    layer = 1 if part == "ssm" else 0

    def hf_final(x):
        ssm, conv = _hf_states(model(inputs_embeds=x, use_cache=True), layer)
        part_value = ssm if part == "ssm" else conv[..., 1:]
        return part_value.reshape(-1)

    reference = torch.autograd.functional.jacobian(hf_final, embeds, vectorize=True)[:, 0]

    def adapter_final(x):
        state = adapter.initial_state(1, "cpu", torch.float64)
        for t in range(T):
            state = adapter.step(x[:, t], state)
        return adapter.select(state, part, layer)[0]

    forward = torch.func.jacfwd(adapter_final)(embeds)[:, 0]  # (H, T, E), forward mode
    assert forward.abs().max() > 1e-3  # the state depends on its inputs
    torch.testing.assert_close(forward, reference, rtol=1e-4, atol=1e-6)
    if part == "conv":  # the first layer's convolution holds only its last d_conv - 1 inputs
        assert forward[:, : T - 3].abs().max() == 0


def test_adapter_refuses_other_models():
    with pytest.raises(ModelError, match="not a Hugging Face Mamba model"):
        HFMamba(torch.nn.Linear(2, 2))
    config = transformers.MambaConfig(vocab_size=V, hidden_size=8, num_hidden_layers=1)
    with pytest.raises(ModelError, match="lm_head"):
        HFMamba(transformers.MambaModel(config))


def test_engine_on_the_adapter_matches_autograd_through_hugging_face():
    """compute_state_gradients on the wrapped model: every G(t, d) of the top layer's ssm
    state, summed per delay, against autograd through Hugging Face's forward of every prefix."""
    from stategrad.gradients import compute_state_gradients

    model = _hf_model(seed=2)
    adapter = HFMamba(model)
    tokens = torch.randint(0, V, (6,)).numpy()
    x0 = adapter.embed(torch.as_tensor(tokens))[None].detach()

    def prefix_states(x):
        return torch.stack([_hf_states(model(inputs_embeds=x[:, : k + 1], use_cache=True), 1)[0]
                            .reshape(-1) for k in range(x.shape[1])])

    J = torch.autograd.functional.jacobian(prefix_states, x0, vectorize=True)[:, :, 0]
    delays = 4
    expected = torch.stack([sum(J[t + d, :, t] for t in range(len(tokens) - d))
                            for d in range(delays)])
    result = compute_state_gradients(adapter, tokens, max_delay=delays, state="ssm", layer=1,
                                     dtype=torch.float64, progress=False)
    np.testing.assert_allclose(result.sums[:, 0], expected.numpy(), rtol=1e-4, atol=1e-7)


def test_gradients_command_takes_the_adapter_from_a_model_factory(tmp_path):
    from click.testing import CliRunner

    from stategrad.cli import main as cli
    from stategrad.gradients import load_result

    factory = tmp_path / "hf_factory.py"
    factory.write_text(
        "import torch, transformers\n"
        "from stategrad.lm import HFMamba\n"
        "def load():\n"
        "    torch.manual_seed(0)\n"
        f"    config = transformers.MambaConfig(vocab_size={V}, hidden_size=8, state_size=2,\n"
        "                                      num_hidden_layers=1, conv_kernel=3, expand=2)\n"
        f"    words = ['<unk>', '<eos>'] + [f'w{{i}}' for i in range({V - 2})]\n"
        "    return HFMamba(transformers.MambaForCausalLM(config)), words\n")
    text = tmp_path / "text.txt"
    text.write_text("w1 w2 w3 w4 w5\nw6 w7 w8\n")
    out = tmp_path / "r.h5"
    result = CliRunner().invoke(cli, ["gradients", "--model-factory", f"{factory}:load",
                                      "--text", str(text), "--state", "conv", "--max-delay", "4",
                                      "--out", str(out), "--no-progress", "--force"])
    assert result.exit_code == 0, result.output
    saved = load_result(out)
    assert saved.sums.shape == (4, 1, 16 * 2, 8)  # conv: d_inner x (d_conv - 1)
    # the first layer's convolution forgets an input after d_conv - 1 = 2 steps
    assert np.abs(saved.sums[1]).max() > 0 and np.abs(saved.sums[2:]).max() == 0
