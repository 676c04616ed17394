"""State gradients of the Mamba-style LM: the engine against float64 autograd through the
sequence forward (an independent computation: batched projections, conv1d, scan loop)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stategrad import ClassSet, Vocabulary
from stategrad.gradients import compute_state_gradients
from stategrad.lm import LanguageModel, MambaLM, ModelSpec
from stategrad.lm.mamba import layer_sequence

torch.set_num_threads(1)
V, D_MODEL, T, DELAYS = 9, 4, 10, 5


def make_model(seed=0) -> MambaLM:
    """A float32 model, as users have them; the engine runs it in float64."""
    torch.manual_seed(seed)
    spec = ModelSpec(vocab_size=V, embedding_size=D_MODEL, hidden_size=D_MODEL, num_layers=2,
                     cell="mamba", d_state=3, d_conv=3, expand=2, init_scale=0.5)
    model = MambaLM(spec).eval()
    with torch.no_grad():
        for block in model.layers:
            block.mixer.A_log.add_(0.3 * torch.randn_like(block.mixer.A_log))
    return model


def reference_jacobian(model: MambaLM, tokens: np.ndarray, part: str, layer: int) -> np.ndarray:
    """J[k, :, t, :] = d part_k / d x_t from the sequence forward of every prefix x[:k+1]."""
    m64 = MambaLM(model.spec).double().eval()
    m64.load_state_dict(model.state_dict())
    x0 = m64.embedding.weight[torch.as_tensor(tokens)].detach().clone()[:, None]  # (T, 1, E)
    conv0, ssm0 = m64.init_state(1)

    def states(x: torch.Tensor) -> torch.Tensor:
        out = []
        for k in range(x.shape[0]):
            u = x[: k + 1]
            for i, block in enumerate(m64.layers):
                u, conv, ssm = layer_sequence(block, u, conv0[i], ssm0[i])
                if i == layer:
                    value = {"ssm": ssm, "conv": conv, "output": u[-1]}[part]
                    break
            out.append(value.reshape(-1))
        return torch.stack(out)

    return torch.autograd.functional.jacobian(states, x0)[:, :, :, 0].numpy()


@pytest.mark.parametrize(("part", "layer"), [("ssm", 1), ("ssm", 0), ("conv", 1), ("output", 1)])
def test_engine_matches_autograd_for_every_part(part, layer):
    model = make_model()
    tokens = np.random.default_rng(0).integers(0, V, T)
    words = tuple(f"w{i}" for i in range(V))
    member = np.zeros((V, 2), dtype=bool)
    member[:, 0] = True
    member[::2, 1] = True
    classes = ClassSet(["all", "even"], member)
    lm = LanguageModel(model, Vocabulary(words))
    result = compute_state_gradients(lm, tokens, max_delay=DELAYS, state=part, layer=layer,
                                     classes=classes, dtype=torch.float64, progress=False)
    J = reference_jacobian(model, tokens, part, layer)
    S = J.shape[1]
    sums = np.zeros((DELAYS, 2, S, D_MODEL))
    counts = np.zeros((DELAYS, 2), dtype=np.int64)
    for t in range(T):
        for d in range(min(DELAYS, T - t)):
            sums[d, member[tokens[t]]] += J[t + d, :, t, :]
            counts[d, member[tokens[t]]] += 1
    assert np.abs(sums).max() > 1e-3
    np.testing.assert_array_equal(result.counts, counts)
    np.testing.assert_allclose(result.sums, sums, rtol=1e-9, atol=1e-12)
