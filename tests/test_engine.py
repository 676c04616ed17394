"""The engine against an independent float64 autograd Jacobian of the model over the text."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stategrad import ClassSet, Vocabulary
from stategrad.gradients import (
    EngineError,
    EngineOptions,
    InterruptedRun,
    StateGradientEngine,
    compute_state_gradients,
    sentence_gradients,
)
from stategrad.lm import RNNLM, LanguageModel, ModelSpec

V, E, H = 11, 3, 5


def make_model(cell: str, layers: int = 1, seed: int = 0) -> RNNLM:
    torch.manual_seed(seed)
    spec = ModelSpec(vocab_size=V, embedding_size=E, hidden_size=H, num_layers=layers,
                     cell=cell, init_scale=0.6, forget_bias=0.5)
    model = RNNLM(spec).double().eval()
    with torch.no_grad():  # non-zero hidden biases, so that b_hh handling is exercised
        for name, p in model.rnn.named_parameters():
            if "bias_hh" in name:
                p.uniform_(-0.4, 0.4)
    return model


def reference_jacobian(model: RNNLM, tokens: np.ndarray, state: str, layer: int,
                       segment: int | None = None) -> np.ndarray:
    """J[k, :, t, :] = d s_k / d x_t, by autograd through the fused module run one
    step at a time (the state detached at segment boundaries)."""
    rnn = model.rnn
    x0 = model.embedding.weight[torch.as_tensor(tokens)].detach().clone()

    def states(x: torch.Tensor) -> torch.Tensor:
        out, st = [], None
        for k in range(x.shape[0]):
            if segment is not None and k % segment == 0 and st is not None:
                st = tuple(s.detach() for s in st) if isinstance(st, tuple) else st.detach()
            _, st = rnn(x[k].view(1, 1, -1), st)
            if isinstance(st, tuple):
                s = st[1] if state == "cell" else st[0]
            else:
                s = st
            out.append(s[layer, 0])
        return torch.stack(out)

    J = torch.autograd.functional.jacobian(states, x0)
    return J.numpy()


def reference_sums(J, tokens, membership, D, segment=None, n_usable=None):
    T = len(tokens) if n_usable is None else n_usable
    C = membership.shape[1]
    sums = np.zeros((D, C, H, E))
    counts = np.zeros((D, C), dtype=np.int64)
    for t in range(T):
        for d in range(D):
            k = t + d
            if k >= T:
                break
            if segment is not None and k // segment != t // segment:
                break
            m = membership[tokens[t]]
            sums[d, m] += J[k, :, t, :]
            counts[d, m] += 1
    return sums, counts


def random_classes(seed=1) -> ClassSet:
    rng = np.random.default_rng(seed)
    member = rng.random((V, 4)) < 0.4
    member[:, 0] = True
    return ClassSet(["all", "a", "b", "c"], member)


def assert_close(ours, ref):
    scale = np.abs(ref).max()
    err = np.abs(ours - ref).max() / scale
    assert err < 1e-9, f"relative error {err:.2e}"


CASES = [
    ("lstm", 1, "cell"), ("lstm", 1, "hidden"), ("lstm", 2, "cell"), ("lstm", 2, "hidden"),
    ("gru", 1, "hidden"), ("gru", 2, "hidden"), ("rnn_tanh", 1, "hidden"),
    ("rnn_tanh", 2, "hidden"), ("rnn_relu", 2, "hidden"),
]


@pytest.mark.parametrize("cell,layers,state", CASES)
@pytest.mark.parametrize("semantics", ["carry", "segment"])
def test_matches_autograd(cell, layers, state, semantics):
    model = make_model(cell, layers)
    rng = np.random.default_rng(3)
    tokens = rng.integers(0, V, size=23)
    D = 6
    seg = 5 if semantics == "segment" else None
    classes = random_classes()
    for layer in range(layers):
        J = reference_jacobian(model, tokens, state, layer, seg)
        usable = None if seg is None else (len(tokens) // seg - 1) * seg
        ref, ref_counts = reference_sums(J, tokens, classes.membership, D, seg, usable)
        res = compute_state_gradients(model, tokens, max_delay=D, state=state, layer=layer,
                                      classes=classes, semantics=semantics, segment_length=seg,
                                      dtype=torch.float64)
        np.testing.assert_array_equal(res.counts, ref_counts)
        assert_close(res.sums, ref)
        assert res.metadata["semantics"] == semantics and res.metadata["layer"] == layer


def test_without_classes_and_means():
    model = make_model("lstm")
    tokens = np.random.default_rng(0).integers(0, V, size=17)
    J = reference_jacobian(model, tokens, "cell", 0)
    ones = np.ones((V, 1), dtype=bool)
    ref, counts = reference_sums(J, tokens, ones, 4)
    res = compute_state_gradients(model, tokens, max_delay=4, dtype=torch.float64)
    assert res.classes == ["all"]
    for d in range(4):
        assert res.count(d, "all") == len(tokens) - d
        assert_close(res.mean(d, "all"), ref[d, 0] / counts[d, 0])


def test_window_and_chunk_sizes_do_not_change_the_result():
    model = make_model("lstm", 2)
    tokens = np.random.default_rng(5).integers(0, V, size=40)
    classes = random_classes()
    results = []
    for window, chunk in [(1, 7), (16, 4096), (5, 3)]:
        eng = StateGradientEngine(model, tokens, EngineOptions(max_delay=9, dtype=torch.float64,
                                                               window=window, chunk_size=chunk),
                                  classes)
        with torch.no_grad():
            results.append(eng.run(progress=False))
    for r in results[1:]:
        np.testing.assert_array_equal(r.counts, results[0].counts)
        assert_close(r.sums, results[0].sums)


def test_float32_is_close_to_float64():
    model = make_model("lstm")
    tokens = np.random.default_rng(2).integers(0, V, size=30)
    r64 = compute_state_gradients(model, tokens, max_delay=5, dtype=torch.float64)
    r32 = compute_state_gradients(model, tokens, max_delay=5, dtype=torch.float32)
    assert np.abs(r32.sums - r64.sums).max() / np.abs(r64.sums).max() < 1e-5
    assert model.decoder.weight.dtype == torch.float64  # the user's model is left as it was


@pytest.mark.parametrize("semantics", ["carry", "segment"])
def test_slices_merge_to_the_whole(semantics):
    model = make_model("gru", 2)
    tokens = np.random.default_rng(4).integers(0, V, size=50)
    classes = random_classes()
    kw = dict(max_delay=7, state="hidden", classes=classes, semantics=semantics,
              segment_length=6 if semantics == "segment" else None, dtype=torch.float64)
    whole = compute_state_gradients(model, tokens, **kw)
    usable = len(tokens) if semantics == "carry" else (len(tokens) // 6 - 1) * 6
    cuts = [0, 13, 14, 31, usable]
    parts = [compute_state_gradients(model, tokens, start=a, stop=b, **kw)
             for a, b in zip(cuts[:-1], cuts[1:], strict=True)]
    merged = parts[0]
    first_sums, first_counts = parts[0].sums.copy(), parts[0].counts.copy()
    for p in parts[1:]:
        merged = merged.merge(p)
    np.testing.assert_array_equal(merged.counts, whole.counts)
    assert_close(merged.sums, whole.sums)
    # merge returns a new result and leaves both operands as they were (README: res = res.merge)
    np.testing.assert_array_equal(parts[0].sums, first_sums)
    np.testing.assert_array_equal(parts[0].counts, first_counts)


def test_resume_after_interruption_gives_the_same_result(tmp_path):
    model = make_model("lstm", 2)
    tokens = np.random.default_rng(6).integers(0, V, size=60)
    classes = random_classes()
    opts = EngineOptions(max_delay=8, dtype=torch.float64, window=4, block_size=10)
    ck = tmp_path / "run.ckpt"
    with torch.no_grad():
        whole = StateGradientEngine(model, tokens, opts, classes).run(progress=False)
        with pytest.raises(InterruptedRun):
            StateGradientEngine(model, tokens, opts, classes).run(
                progress=False, checkpoint_path=ck, checkpoint_every=0, stop_after_steps=21)
        assert ck.is_file()
        blocks = tmp_path / "run.ckpt.blocks"
        assert sorted(p.name for p in blocks.iterdir())[:1] == ["block-0.npz"]  # closed early
        resumed = StateGradientEngine(model, tokens, opts, classes).run(
            progress=False, checkpoint_path=ck)
    assert not ck.exists() and not blocks.exists()
    assert resumed.metadata["resumed"] is True
    np.testing.assert_array_equal(resumed.counts, whole.counts)
    np.testing.assert_array_equal(resumed.sums, whole.sums)  # bit for bit
    np.testing.assert_array_equal(resumed.block_sums, whole.block_sums)


def test_checkpoint_of_another_run_is_refused(tmp_path):
    model = make_model("lstm")
    tokens = np.random.default_rng(6).integers(0, V, size=30)
    ck = tmp_path / "run.ckpt"
    with torch.no_grad(), pytest.raises(InterruptedRun):
        StateGradientEngine(model, tokens, EngineOptions(max_delay=4, window=2)).run(
            progress=False, checkpoint_path=ck, checkpoint_every=0, stop_after_steps=5)
    with torch.no_grad(), pytest.raises(EngineError, match="different run"):
        StateGradientEngine(model, tokens, EngineOptions(max_delay=5, window=2)).run(
            progress=False, checkpoint_path=ck)


def test_blocks_add_up_to_the_total():
    model = make_model("lstm")
    tokens = np.random.default_rng(7).integers(0, V, size=45)
    classes = random_classes()
    res = compute_state_gradients(model, tokens, max_delay=6, classes=classes, block_size=10,
                                  dtype=torch.float64)
    assert res.block_sums.shape == (5, 6, 4, H, E)
    np.testing.assert_array_equal(res.block_starts, [0, 10, 20, 30, 40])
    np.testing.assert_array_equal(res.block_counts.sum(0), res.counts)
    np.testing.assert_allclose(res.block_sums.sum(0), res.sums, rtol=1e-6, atol=1e-9)
    # Block b holds exactly the starts t in [10 b, 10 b + 10).
    J = reference_jacobian(model, tokens, "cell", 0)
    sub = tokens.copy()
    ref, _ = reference_sums(J, tokens, classes.membership, 6)
    ref_b1 = np.zeros_like(ref)
    for t in range(10, 20):
        for d in range(6):
            ref_b1[d, classes.membership[sub[t]]] += J[t + d, :, t, :]
    np.testing.assert_allclose(res.block_sums[1], ref_b1, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("every,fraction", [(3, None), (None, 0.4)])
def test_sampling_of_start_positions(every, fraction):
    model = make_model("lstm", 2)
    tokens = np.random.default_rng(8).integers(0, V, size=40)
    classes = random_classes()
    res = compute_state_gradients(model, tokens, max_delay=7, classes=classes, sample_every=every,
                                  sample_fraction=fraction, seed=11, dtype=torch.float64)
    if every:
        used = np.arange(0, 40, every)
    else:
        used = np.flatnonzero(np.random.default_rng(11).random(40) < fraction)
    J = reference_jacobian(model, tokens, "cell", 1)
    ref = np.zeros((7, 4, H, E))
    counts = np.zeros((7, 4), dtype=np.int64)
    for t in used:
        for d in range(min(7, 40 - t)):
            m = classes.membership[tokens[t]]
            ref[d, m] += J[t + d, :, t, :]
            counts[d, m] += 1
    np.testing.assert_array_equal(res.counts, counts)
    assert_close(res.sums, ref)
    assert res.metadata["sampling"]["starts_used"] == len(used)


def test_sentence_gradients_match_autograd():
    model = make_model("gru", 2)
    tokens = np.array([1, 4, 2, 9, 3, 3])
    J = reference_jacobian(model, tokens, "hidden", 1)
    G = sentence_gradients(model, tokens, state="hidden")
    for t in range(6):
        for k in range(6):
            expected = J[k, :, t, :] if k >= t else np.zeros((H, E))
            np.testing.assert_allclose(G[t, k], expected, rtol=1e-9, atol=1e-12)


def test_language_model_wrapper_records_vocab_and_identity():
    vocab = Vocabulary(tuple(f"w{i}" for i in range(V)))
    lm = LanguageModel(make_model("lstm"), vocab)
    res = compute_state_gradients(lm, [1, 2, 3, 4], max_delay=2)
    assert res.vocab == list(vocab.words)
    assert res.metadata["model_identity"] == lm.identity()
    assert res.metadata["text"]["tokens"] == 4


def test_bad_arguments_are_named():
    model = make_model("gru")
    with pytest.raises(EngineError, match="no cell state"):
        compute_state_gradients(model, [1, 2], max_delay=2, state="cell")
    with pytest.raises(EngineError, match="layer 3"):
        compute_state_gradients(model, [1, 2], max_delay=2, state="hidden", layer=3)
    with pytest.raises(EngineError, match="token ids"):
        compute_state_gradients(model, [1, 99], max_delay=2, state="hidden")
    with pytest.raises(EngineError, match="segment_length"):
        compute_state_gradients(model, [1, 2], max_delay=2, state="hidden", semantics="segment")
