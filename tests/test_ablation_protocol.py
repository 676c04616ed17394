"""Context ablation of models of the recurrent protocol (a Mamba-style LM): exact against
the model's own sequence forward in float64 (a different code path from the one-step
recurrence the ablation runs), and resumable from its running state."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stategrad.ablation import (
    AblationResult,
    InterruptedAblation,
    compute_ablation,
    resolution_note,
)
from stategrad.ablation.model import model_parts
from stategrad.data import ClassSet, Vocabulary
from stategrad.lm import LanguageModel, MambaLM, ModelSpec

torch.set_num_threads(1)

V = 17


def _model(seed=0) -> LanguageModel:
    torch.manual_seed(seed)
    spec = ModelSpec(vocab_size=V, embedding_size=8, hidden_size=8, num_layers=2, cell="mamba",
                     d_state=4, d_conv=3, expand=2, init_scale=0.5)
    words = ["<unk>", "<eos>"] + [f"w{i}" for i in range(V - 2)]
    return LanguageModel(MambaLM(spec).eval(), Vocabulary(words))


def _classes() -> ClassSet:
    m = np.zeros((V, 2), dtype=bool)
    m[:, 0] = True
    m[3:10, 1] = True
    return ClassSet(["all", "a"], m, {"all": "every word", "a": "3-9"})


def _logp(module, ids: list[int]) -> torch.Tensor:
    """log p of the word after ``ids`` from the sequence forward, float64, from zeros."""
    logits, _ = module.double()(torch.as_tensor(ids)[:, None])
    return torch.log_softmax(logits[-1, 0], -1)


@pytest.mark.parametrize("replace", ["unk", "drop"])
def test_mamba_ablation_matches_the_sequence_forward(replace):
    lm = _model()
    tokens = np.random.default_rng(1).integers(0, V, 40)
    D, start, stop = 4, 2, 25
    res = compute_ablation(lm, tokens, max_distance=D, replace=replace, classes=_classes(),
                           start=start, stop=stop, batch=5)
    module = lm.module
    want = np.zeros((3, D, 2))
    for t in range(start, min(stop, len(tokens) - D)):
        true = [int(x) for x in tokens]
        abl = true[:t] + true[t + 1:] if replace == "drop" else true[:t] + [0] + true[t + 1:]
        for d in range(1, D + 1):
            with torch.no_grad():
                lo = _logp(module, true[: t + d])
                la = _logp(module, abl[: t + d - (replace == "drop")])
            w = tokens[t + d]
            row = (float(-la[w]), float(lo[w] - la[w]), float((lo.exp() * (lo - la)).sum()))
            for c in np.flatnonzero(_classes().membership[tokens[t]]):
                want[:, d - 1, c] += row
    np.testing.assert_allclose(res.values, want, rtol=2e-4, atol=2e-4)
    assert res.values[2].min() > 0  # KL: the models do react to the word


def test_protocol_parts_keep_the_features_not_the_logits():
    parts = model_parts(_model())
    assert parts.protocol and parts.hidden_size == 8 and parts.decoder_weight.shape == (V, 8)


def test_a_killed_mamba_run_resumes_to_the_same_sums(tmp_path):
    lm, tokens = _model(), np.random.default_rng(2).integers(0, V, 60)
    ck = tmp_path / "run.partial"
    kw = dict(max_distance=3, replace="unk", classes=_classes(), batch=4, block_size=20,
              checkpoint_path=ck)
    with pytest.raises(InterruptedAblation):
        compute_ablation(lm, tokens, stop_after_chunks=3, **kw)
    assert ck.is_file()
    resumed = compute_ablation(lm, tokens, **kw)
    assert resumed.metadata["resumed"]
    fresh = compute_ablation(lm, tokens, **{**kw, "checkpoint_path": None})
    np.testing.assert_array_equal(resumed.values, fresh.values)  # bit for bit
    np.testing.assert_array_equal(resumed.block_values, fresh.block_values)


def test_a_float32_run_that_cannot_resolve_its_kl_says_so():
    lm, tokens = _model(), np.random.default_rng(3).integers(0, V, 40)
    exact = compute_ablation(lm, tokens, max_distance=6, classes=_classes(), dtype=torch.float64)
    assert (exact.values[2] >= 0).all()  # KL is never negative: float64 resolves it
    assert resolution_note(exact) is None
    # the same sums with one cell's KL pushed below zero, as float32 roundoff does
    values = exact.values.copy()
    values[2, -1, 1] = -3e-6 * exact.counts[-1, 1]
    fake = AblationResult(values, exact.counts, exact.axis, exact.axis_name, exact.classes,
                          exact.vocab, {**exact.metadata, "dtype": "float32"})
    note = resolution_note(fake)
    assert note.startswith("1 mean KL value(s) are negative (down to -3e-06)")
    assert "--dtype float64" in note
