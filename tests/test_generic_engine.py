"""The generic engine (any model of the recurrent protocol) against an independent
float64 autograd Jacobian, on float32-stored models: a toy protocol model with a
structured state, an LSTM with projections, a stack of differently sized modules."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from stategrad import ClassSet
from stategrad.gradients import (
    EngineError,
    EngineOptions,
    InterruptedRun,
    StateGradientEngine,
    compute_state_gradients,
    compute_state_gradients_distributed,
    sentence_gradients,
)
from stategrad.lm import RNNLM, LayeredRNN, ModelSpec, RecurrentLM, adapt

V, E = 9, 3


class ToyLM(RecurrentLM):
    """A protocol model with a dict state holding a 2-d tensor: h' = tanh(W x + U h),
    m' = 0.5 m + outer-ish mix of h' (B, 2, 3)."""

    state_names = ("hidden", "memory")
    num_layers = 1
    vocab_size = V

    def __init__(self, H: int = 4):
        super().__init__()
        self.emb = nn.Embedding(V, E)
        self.W, self.U = nn.Linear(E, H), nn.Linear(H, H)
        self.M = nn.Linear(H, 6)
        self.out = nn.Linear(H, V)
        self.H = H
        for p in self.parameters():
            nn.init.uniform_(p, -0.7, 0.7)

    def embed(self, ids):
        return self.emb(ids)

    def initial_state(self, batch, device, dtype):
        return {"hidden": torch.zeros(batch, self.H, device=device, dtype=dtype),
                "memory": torch.zeros(batch, 2, 3, device=device, dtype=dtype)}

    def step(self, x, state):
        h = torch.tanh(self.W(x) + self.U(state["hidden"]))
        m = 0.5 * state["memory"] + torch.sigmoid(self.M(h)).view(-1, 2, 3) * state["memory"].sum()
        m = m + torch.tanh(self.M(h)).view(-1, 2, 3)
        return {"hidden": h, "memory": m}

    def select(self, state, name, layer):
        return state[name].reshape(state[name].shape[0], -1)

    def logits(self, state):
        return self.out(state["hidden"])


class ProjLM(nn.Module):
    """word_language_model's layout with an LSTM with projections."""

    def __init__(self, H=5, P=3, layers=2):
        super().__init__()
        self.encoder = nn.Embedding(V, E)
        self.rnn = nn.LSTM(E, H, layers, proj_size=P)
        self.decoder = nn.Linear(P, V)
        for p in self.parameters():
            nn.init.uniform_(p, -0.6, 0.6)


class StackLM(nn.Module):
    """AWD-LSTM's layout: one single-layer module per layer, of different sizes."""

    def __init__(self, kinds=("lstm", "lstm", "lstm"), sizes=(6, 5, 4)):
        super().__init__()
        self.encoder = nn.Embedding(V, E)
        ins = (E,) + tuple(sizes[:-1])
        make = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}
        self.rnns = nn.ModuleList([make[k](i, o) for k, i, o in
                                   zip(kinds, ins, sizes, strict=True)])
        self.decoder = nn.Linear(sizes[-1], V)
        for p in self.parameters():
            nn.init.uniform_(p, -0.6, 0.6)


# --- the independent reference: autograd through the models' own modules, float64 -------

def _protocol_states(model, state, layer):
    """Through the model's own step (float64 copy), as any user would run it."""
    m = copy.deepcopy(model).double()

    def run(x):
        s, out = m.initial_state(1, "cpu", torch.float64), []
        for k in range(x.shape[0]):
            s = m.step(x[k : k + 1], s)
            out.append(m.select(s, state, layer)[0])
        return torch.stack(out)
    return run, m.embed(torch.arange(V))


def _fused_states(model, state, layer):
    """Through nn.LSTM/GRU/RNN themselves, a token at a time."""
    m = copy.deepcopy(model).double()
    rnns = [m.rnn] if hasattr(m, "rnn") else list(m.rnns)
    per_module = [(r, k) for r in rnns for k in range(r.num_layers)]
    i_mod = rnns.index(per_module[layer][0])
    k_in = per_module[layer][1]

    def run(x):
        sts, out = [None] * len(rnns), []
        for k in range(x.shape[0]):
            inp = x[k].view(1, 1, -1)
            for i, r in enumerate(rnns):
                inp, sts[i] = r(inp, sts[i])
            st = sts[i_mod]
            s = (st[1] if state == "cell" else st[0]) if isinstance(st, tuple) else st
            out.append(s[k_in, 0])
        return torch.stack(out)
    return run, m.encoder.weight


def reference(model, tokens, state, layer, D, membership):
    run, emb = (_fused_states if hasattr(model, "decoder") else _protocol_states)(
        model, state, layer)
    x0 = emb[torch.as_tensor(tokens)].detach().clone()
    J = torch.autograd.functional.jacobian(run, x0).numpy()  # (T, H, T, E)
    T, H, C = len(tokens), J.shape[1], membership.shape[1]
    sums, counts = np.zeros((D, C, H, E)), np.zeros((D, C), dtype=np.int64)
    for t in range(T):
        for d in range(min(D, T - t)):
            m = membership[tokens[t]]
            sums[d, m] += J[t + d, :, t, :]
            counts[d, m] += 1
    return sums, counts, J


def classes() -> ClassSet:
    member = np.random.default_rng(1).random((V, 3)) < 0.5
    member[:, 0] = True
    return ClassSet(["all", "a", "b"], member)


def assert_close(ours, ref, tol=1e-9):
    err = np.abs(ours - ref).max() / np.abs(ref).max()
    assert err < tol, f"relative error {err:.2e}"


CASES = [
    (ToyLM, {}, "hidden", 0), (ToyLM, {}, "memory", 0),
    (ProjLM, {}, "hidden", 0), (ProjLM, {}, "cell", 1), (ProjLM, {}, "hidden", 1),
    (StackLM, {}, "cell", 0), (StackLM, {}, "hidden", 1), (StackLM, {}, "cell", 2),
    (StackLM, {"kinds": ("lstm", "gru", "rnn")}, "hidden", 1),
    (StackLM, {"kinds": ("gru", "lstm", "rnn")}, "cell", 1),
]


@pytest.mark.parametrize("make,kwargs,state,layer", CASES)
def test_matches_autograd(make, kwargs, state, layer):
    torch.manual_seed(layer)
    model = make(**kwargs).eval()  # float32, as users have them
    tokens = np.random.default_rng(layer).integers(0, V, size=14)
    cs = classes()
    for D in (1, 5):
        ref, ref_counts, _ = reference(model, tokens, state, layer, D, cs.membership)
        res = compute_state_gradients(model, tokens, max_delay=D, state=state, layer=layer,
                                      classes=cs, dtype=torch.float64)
        np.testing.assert_array_equal(res.counts, ref_counts)
        assert_close(res.sums, ref)
    assert res.metadata["state"] == state and res.metadata["layer"] == layer
    assert next(model.parameters()).dtype == torch.float32  # the user's model is untouched


def test_float32_run_is_close_to_float64():
    model = ProjLM().eval()
    tokens = np.random.default_rng(0).integers(0, V, size=20)
    a = compute_state_gradients(model, tokens, max_delay=4, state="cell", dtype=torch.float64)
    b = compute_state_gradients(model, tokens, max_delay=4, state="cell")
    assert_close(b.sums, a.sums, 1e-5)


def test_sentence_gradients_match_autograd():
    model = StackLM().eval()
    tokens = np.random.default_rng(4).integers(0, V, size=7)
    for layer, state in ((0, "hidden"), (2, "cell")):
        _, _, J = reference(model, tokens, state, layer, 1, np.ones((V, 1), dtype=bool))
        G = sentence_gradients(model, tokens, state=state, layer=layer)
        T = len(tokens)
        for t in range(T):
            for k in range(T):
                expected = J[k, :, t, :] if k >= t else 0 * J[k, :, t, :]
                np.testing.assert_allclose(G[t, k], expected, rtol=0, atol=1e-12)


def test_same_as_fused_path_with_blocks_sampling_and_classes():
    """The generic path on an RNNLM (through the adapter) equals the fused path, which
    test_engine checks against autograd, for every pass option; an adapted single fused
    module still takes the fused path."""
    torch.manual_seed(0)
    model = RNNLM(ModelSpec(vocab_size=V, embedding_size=E, hidden_size=4, num_layers=2,
                            init_scale=0.6)).eval()
    tokens = np.random.default_rng(2).integers(0, V, size=40)
    cs = classes()
    for kw in ({"block_size": 7}, {"sample_fraction": 0.5, "seed": 3}, {"sample_every": 3},
               {"semantics": "segment", "segment_length": 8}, {"start": 5, "stop": 30}):
        fused = compute_state_gradients(model, tokens, max_delay=6, classes=cs,
                                        dtype=torch.float64, **kw)
        generic = compute_state_gradients(model, tokens, max_delay=6, classes=cs,
                                          dtype=torch.float64, cells="generic", **kw)
        np.testing.assert_array_equal(generic.counts, fused.counts)
        assert_close(generic.sums, fused.sums, 1e-12)
        if "block_size" in kw:
            np.testing.assert_array_equal(generic.block_starts, fused.block_starts)
            assert_close(generic.block_sums[:], fused.block_sums[:], 1e-12)
        assert generic.metadata["coverage"] == fused.metadata["coverage"]
    engine = StateGradientEngine(adapt(model), tokens, EngineOptions(max_delay=2))
    assert type(engine.cells).__name__ == "FusedCells"
    with pytest.raises(EngineError, match="fused cells take"):
        StateGradientEngine(ProjLM(), tokens, EngineOptions(max_delay=2, cells="fused"))


def _engine(model, tokens, **kw):
    return StateGradientEngine(model, tokens, EngineOptions(max_delay=5, state="cell", layer=1,
                                                            dtype=torch.float64, window=4, **kw))


def test_resume_after_kill_is_bit_for_bit(tmp_path):
    model = StackLM().eval()
    tokens = np.random.default_rng(5).integers(0, V, size=30)
    whole = _engine(model, tokens, block_size=6).run(progress=False)
    ck = tmp_path / "run.ckpt"
    with pytest.raises(InterruptedRun):
        _engine(model, tokens, block_size=6).run(progress=False, checkpoint_path=ck,
                                                 stop_after_steps=9)
    assert ck.is_file()
    resumed = _engine(model, tokens, block_size=6).run(progress=False, checkpoint_path=ck)
    assert resumed.metadata["resumed"] and not ck.exists()
    np.testing.assert_array_equal(resumed.sums, whole.sums)
    np.testing.assert_array_equal(resumed.block_sums[:], whole.block_sums[:])
    # a checkpoint of this run is refused by a run of another model
    with pytest.raises(InterruptedRun):
        _engine(model, tokens).run(progress=False, checkpoint_path=ck, stop_after_steps=5)
    with pytest.raises(EngineError, match="different run"):
        _engine(StackLM().eval(), tokens).run(progress=False, checkpoint_path=ck)


def test_slices_add_up_with_states_before():
    model = ToyLM().eval()
    tokens = np.random.default_rng(6).integers(0, V, size=25)
    opts = EngineOptions(max_delay=4, state="memory", dtype=torch.float64)
    engine = StateGradientEngine(model, tokens, opts)
    whole = engine.run(progress=False)
    states = engine.states_before([0, 9, 17])
    parts = [engine.run(a, b, initial_state=states[a], progress=False)
             for a, b in ((0, 9), (9, 17), (17, 25))]
    assert_close(sum(p.sums for p in parts), whole.sums, 1e-12)
    np.testing.assert_array_equal(sum(p.counts for p in parts), whole.counts)


def test_distributed_run_in_one_process(tmp_path):
    model = ProjLM().eval()
    tokens = np.random.default_rng(7).integers(0, V, size=48)
    opts = EngineOptions(max_delay=3, state="hidden", dtype=torch.float64)
    whole = compute_state_gradients(model, tokens, max_delay=3, state="hidden",
                                    dtype=torch.float64)
    run = compute_state_gradients_distributed(model, tokens, opts, out_path=tmp_path / "r.h5",
                                              n_slices=3, echo=lambda m: None)
    assert len(run.slices) == 2  # no slice shorter than 8 x max_delay
    assert_close(run.result.sums, whole.sums, 1e-12)


def test_bad_state_and_layer_are_refused():
    tokens = np.arange(5)
    with pytest.raises(EngineError, match="not one of this model's states: hidden, memory"):
        compute_state_gradients(ToyLM(), tokens, max_delay=2, state="cell")
    with pytest.raises(EngineError, match="layer 3 does not exist"):
        compute_state_gradients(StackLM(), tokens, max_delay=2, state="hidden", layer=3)
    with pytest.raises(EngineError, match="has no cell state"):
        compute_state_gradients(StackLM(kinds=("lstm", "gru", "rnn")), tokens, max_delay=2,
                                state="cell", layer=1)
    with pytest.raises(EngineError, match="neither a recurrent LM"):
        compute_state_gradients(nn.Linear(2, 2), tokens, max_delay=2)


def test_adapter_logits_match_the_module():
    """The adapter's step and logits are the module's own (for eval and ablation)."""
    model = StackLM().eval()
    lm = adapt(model)
    assert isinstance(lm, LayeredRNN) and lm.num_layers == 3
    tokens = torch.as_tensor(np.random.default_rng(8).integers(0, V, size=6))
    with torch.no_grad():
        x = model.encoder(tokens).unsqueeze(1)
        for r in model.rnns:
            x, _ = r(x)
        expected = model.decoder(x[:, 0])
        state = lm.initial_state(1, "cpu", torch.float32)
        got = []
        for t in tokens:
            state = lm.step(lm.embed(t.view(1)), state)
            got.append(lm.logits(state)[0])
    torch.testing.assert_close(torch.stack(got), expected)


def test_the_readme_example_works():
    """The README's protocol example, run as written, against autograd."""
    from pathlib import Path

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    section = readme.split("### Any recurrent model", 1)[1]
    code = section.split("```python", 1)[1].split("```", 1)[0]
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    torch.manual_seed(0)
    model = namespace["ToyLM"](V, E, 4).eval()
    tokens = np.random.default_rng(9).integers(0, V, size=10)
    cs = classes()
    ref, counts, _ = reference(model, tokens, "hidden", 0, 4, cs.membership)
    res = compute_state_gradients(model, tokens, max_delay=4, state="hidden", classes=cs,
                                  dtype=torch.float64)
    np.testing.assert_array_equal(res.counts, counts)
    assert_close(res.sums, ref)
