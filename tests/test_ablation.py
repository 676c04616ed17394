"""Context ablation: exact against a direct float64 computation, sums, blocks, merge,
resume, the result file."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stategrad.ablation import (
    AblationError,
    InterruptedAblation,
    compute_ablation,
    compute_context_length,
    load_ablation,
)
from stategrad.data import ClassSet, Vocabulary
from stategrad.lm import RNNLM, LanguageModel, ModelSpec

torch.set_num_threads(1)  # tiny models: threads only add overhead on a busy machine

V = 23


def _model(cell="lstm", layers=2, seed=0) -> LanguageModel:
    torch.manual_seed(seed)
    module = RNNLM(ModelSpec(V, 7, 9, num_layers=layers, cell=cell, init_scale=0.5)).eval()
    words = ["<unk>", "<eos>"] + [f"w{i}" for i in range(V - 2)]
    return LanguageModel(module, Vocabulary(words))


def _classes() -> ClassSet:
    m = np.zeros((V, 3), dtype=bool)
    m[:, 0] = True
    m[2:12, 1] = True
    m[8:20, 2] = True  # overlapping classes: a word counts for each
    return ClassSet(["all", "a", "b"], m, {"all": "every word", "a": "2-11", "b": "8-19"})


def _tokens(n=70, seed=1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, V, n)


def _direct_logp(module, inputs: torch.Tensor) -> torch.Tensor:
    """log p of the next word after the input embeddings (steps, E), float64, from zeros."""
    m = module.double()
    if len(inputs) == 0:
        h = torch.zeros(m.spec.hidden_size, dtype=torch.float64)
    else:
        out, _ = m.rnn(inputs[:, None])
        h = out[-1, 0]
    return torch.log_softmax(m.decoder(h), -1)


def _direct(lm, tokens, t, d, replace, repl_word=None):
    """Loss increase and KL at distance d for start t, from runs over the whole prefix."""
    module = lm.module
    E = module.embedding.weight.double()
    true = E[torch.as_tensor(tokens[: t + d])]
    if replace == "drop":
        abl = torch.cat([true[:t], true[t + 1:]])
    else:
        x = E.mean(0) if replace == "mean" else E[repl_word]
        abl = torch.cat([true[:t], x[None], true[t + 1:]])
    with torch.no_grad():
        lo, la = _direct_logp(module, true), _direct_logp(module, abl)
    w = tokens[t + d]
    return float(lo[w] - la[w]), float((lo.exp() * (lo - la)).sum()), float(-la[w])


@pytest.mark.parametrize("cell,replace", [("lstm", "unk"), ("lstm", "drop"), ("gru", "mean"),
                                          ("rnn_tanh", "random"), ("lstm", "random")])
def test_sums_match_direct_float64_runs(cell, replace):
    lm = _model(cell)
    tokens = _tokens()
    classes = _classes()
    D = 4
    res = compute_ablation(lm, tokens, max_distance=D, replace=replace, classes=classes,
                           seed=5, start=3, stop=30, batch=7)
    want = np.zeros((3, D, 3))
    counts = np.zeros((D, 3), dtype=int)
    for t in range(3, min(30, len(tokens) - D)):
        word = None
        if replace == "unk":
            word = 0
        elif replace == "random":
            # the replacement the run drew, recomputed the way the docstring says
            rng = np.random.default_rng([5, t])
            member = classes.membership[tokens[t]]
            col = next((c for c in (1, 2) if member[c]), 0)
            pool = np.flatnonzero(classes.membership[:, col])
            j = int(rng.integers(len(pool) - 1))
            j += j >= int(np.searchsorted(pool, tokens[t]))
            word = int(pool[j])
            assert word != tokens[t]
        for d in range(1, D + 1):
            inc, kl, loss = _direct(lm, tokens, t, d, replace, word)
            for c in np.flatnonzero(classes.membership[tokens[t]]):
                want[:, d - 1, c] += (loss, inc, kl)
                counts[d - 1, c] += 1
    np.testing.assert_array_equal(res.counts, counts)
    np.testing.assert_allclose(res.values, want, rtol=2e-4, atol=2e-4)


def test_context_length_matches_direct_runs_from_the_initial_state():
    lm = _model("lstm")
    tokens = _tokens(50)
    classes = _classes()
    C = 4
    res = compute_context_length(lm, tokens, max_context=C, classes=classes, start=2, stop=30,
                                 batch=5)
    assert res.axis_name == "context" and list(res.axis) == list(range(C + 1))
    want = np.zeros((3, C + 1, 3))
    counts = np.zeros((C + 1, 3), dtype=int)
    E = lm.module.embedding.weight.double()
    for i in range(C, 30):  # every position i >= C in the slice
        with torch.no_grad():
            full = _direct_logp(lm.module, E[torch.as_tensor(tokens[:i])])
            for k in range(C + 1):
                cut = _direct_logp(lm.module, E[torch.as_tensor(tokens[i - k: i])])
                w = tokens[i]
                row = (-cut[w], full[w] - cut[w], (full.exp() * (full - cut)).sum())
                for c in np.flatnonzero(classes.membership[w]):
                    want[:, k, c] += [float(x) for x in row]
                    counts[k, c] += 1
    np.testing.assert_array_equal(res.counts, counts)
    np.testing.assert_allclose(res.values, want, rtol=2e-4, atol=2e-4)


def test_blocks_slices_and_sampling_add_up(tmp_path):
    lm = _model("gru", layers=1)
    tokens = _tokens(120, seed=4)
    kw = dict(max_distance=3, replace="random", classes=_classes(), seed=2)
    whole = compute_ablation(lm, tokens, block_size=10, **kw)
    np.testing.assert_allclose(whole.block_values.sum(0), whole.values, atol=1e-9)
    np.testing.assert_array_equal(whole.block_counts.sum(0), whole.counts)
    assert list(whole.block_starts) == list(range(0, 120 - 3, 10))
    a = compute_ablation(lm, tokens, block_size=10, stop=40, batch=9, **kw)
    b = compute_ablation(lm, tokens, block_size=10, start=40, batch=16, **kw)
    a.save(tmp_path / "a.h5")
    b.save(tmp_path / "b.h5")
    merged = load_ablation(tmp_path / "a.h5").merge(load_ablation(tmp_path / "b.h5"))
    np.testing.assert_allclose(merged.values, whole.values, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(merged.counts, whole.counts)
    np.testing.assert_array_equal(merged.block_starts, whole.block_starts)
    with pytest.raises(AblationError, match="overlapping"):
        merged.merge(a)
    other = compute_ablation(lm, tokens, block_size=10, start=40, **{**kw, "replace": "unk"})
    with pytest.raises(AblationError, match="replace differs"):
        a.merge(other)
    sampled = compute_ablation(lm, tokens, sample_every=3, **kw)
    assert sampled.counts[0, 0] == len(range(0, 117, 3))
    assert sampled.metadata["coverage"][0]["sampling"] == {"rule": "every", "every": 3}


def test_a_killed_run_resumes_to_the_same_sums(tmp_path):
    lm = _model("lstm")
    tokens = _tokens(150, seed=7)
    ck = tmp_path / "run.partial"
    kw = dict(max_distance=3, replace="unk", classes=_classes(), block_size=20, batch=8,
              checkpoint_path=ck)
    with pytest.raises(InterruptedAblation):
        compute_ablation(lm, tokens, stop_after_chunks=6, **kw)
    assert ck.is_file()
    resumed = compute_ablation(lm, tokens, **kw)
    assert resumed.metadata["resumed"]
    fresh = compute_ablation(lm, tokens, **{**kw, "checkpoint_path": None})
    np.testing.assert_array_equal(resumed.values, fresh.values)  # bit for bit
    np.testing.assert_array_equal(resumed.block_values, fresh.block_values)
    with pytest.raises(AblationError, match="different run"):
        compute_ablation(lm, tokens, **{**kw, "replace": "mean"})
    ck.write_bytes(b"garbage")
    again = compute_ablation(lm, tokens, **kw)  # a damaged state is set aside
    assert not again.metadata["resumed"] and (tmp_path / "run.partial.damaged").is_file()


def test_bad_arguments_are_refused(tmp_path):
    lm = _model("lstm")
    tokens = _tokens(30)
    with pytest.raises(AblationError, match="replacement"):
        compute_ablation(lm, tokens, max_distance=2, replace="zero")
    with pytest.raises(AblationError, match="token ids"):
        compute_ablation(lm, np.array([0, 1, V]), max_distance=1)
    with pytest.raises(AblationError, match="at least 1"):
        compute_ablation(lm, tokens, max_distance=0)
    with pytest.raises(AblationError, match="<unk>"):
        compute_ablation(lm.module, tokens, max_distance=2, replace="unk")
    (tmp_path / "x.h5").write_text("not hdf5")
    with pytest.raises(AblationError, match="not a readable"):
        load_ablation(tmp_path / "x.h5")


def test_table_intervals_are_the_block_jackknife_of_the_means():
    from stategrad.analysis import ablation_table

    lm = _model("lstm", layers=1)
    tokens = _tokens(200, seed=9)
    res = compute_ablation(lm, tokens, max_distance=2, replace="mean", classes=_classes(),
                           block_size=25)
    table = ablation_table(res, interval="jackknife", level=0.9)
    row = next(r for r in table.rows if r["class"] == "a" and r["distance"] == 2)
    assert set(row) == {"class", "distance", "count", "loss_increase", "kl", "loss_increase_lower",
                        "loss_increase_upper", "kl_lower", "kl_upper"}
    # the jackknife by hand: leave-one-block-out means of the class-"a" cell at d = 2
    c, d = 1, 1
    S, n = res.values[1, d, c], res.counts[d, c]
    bs, bn = res.block_values[:, 1, d, c], res.block_counts[:, d, c]
    ok = bn > 0
    loo = (S - bs[ok]) / (n - bn[ok])
    B = ok.sum()
    se = np.sqrt((B - 1) / B * ((loo - loo.mean()) ** 2).sum())
    from scipy.stats import t as student_t
    z = student_t.ppf(0.95, B - 1)  # Student t with B' - 1 degrees of freedom
    assert row["count"] == n
    assert row["loss_increase"] == pytest.approx(S / n)
    assert row["loss_increase_lower"] == pytest.approx(S / n - z * se)
    assert row["loss_increase_upper"] == pytest.approx(S / n + z * se)
    assert row["kl"] == pytest.approx(res.values[2, d, c] / n)
    plain = ablation_table(res)
    assert "kl_lower" not in plain.rows[0] and "jackknife" not in plain.format()


@pytest.mark.parametrize("replace", ["unk", "drop"])
def test_sentence_ablation_matches_the_pass_and_direct_runs(replace):
    from stategrad.ablation import sentence_ablation

    lm = _model("lstm")
    tokens = _tokens(9, seed=3)
    got = sentence_ablation(lm, tokens, replace=replace)
    T = len(tokens)
    E = lm.module.embedding.weight.double()
    for t in range(T):
        for k in range(t, T):
            true = E[torch.as_tensor(tokens[: k + 1])]
            if replace == "drop":
                abl = torch.cat([true[:t], true[t + 1:]])
            else:
                abl = torch.cat([true[:t], E[0][None], true[t + 1:]])
            if replace == "drop" and k == t:
                assert np.isnan(got.kl[t, k])
                continue
            with torch.no_grad():
                lo, la = _direct_logp(lm.module, true), _direct_logp(lm.module, abl)
            assert got.kl[t, k] == pytest.approx(float((lo.exp() * (lo - la)).sum()), abs=1e-9)
            if k + 1 < T:
                w = tokens[k + 1]
                assert got.loss_increase[t, k] == pytest.approx(float(lo[w] - la[w]), abs=1e-9)
    assert np.isnan(got.kl[np.tril_indices(T, -1)]).all()


def test_shuffled_context_matches_direct_runs_of_the_documented_order():
    lm = _model("gru", layers=1)
    tokens = _tokens(40, seed=6)
    classes = _classes()
    C = 4
    res = compute_context_length(lm, tokens, max_context=C, classes=classes, order="shuffle",
                                 seed=7, start=5, stop=25, batch=11)
    cut = compute_context_length(lm, tokens, max_context=C, classes=classes, start=5, stop=25)
    want = np.zeros((3, C + 1, 3))
    E = lm.module.embedding.weight.double()
    shuffled_somewhere = False
    for i in range(5, 25):
        window = tokens[i - C: i]
        with torch.no_grad():
            full = _direct_logp(lm.module, E[torch.as_tensor(tokens[:i])])
            for k in range(C + 1):
                far = window[: C - k]
                order = np.random.default_rng([7, i, k]).permutation(len(far))
                shuffled_somewhere |= bool((order != np.arange(len(far))).any())
                seq = np.concatenate([far[order], window[C - k:]])
                got = _direct_logp(lm.module, E[torch.as_tensor(seq)])
                w = tokens[i]
                row = [float(x) for x in (-got[w], full[w] - got[w],
                                          (full.exp() * (full - got)).sum())]
                for c in np.flatnonzero(classes.membership[w]):
                    want[:, k, c] += row
    assert shuffled_somewhere
    np.testing.assert_allclose(res.values, want, rtol=2e-4, atol=2e-4)
    np.testing.assert_array_equal(res.counts, cut.counts)
    # all C words in order is the cut run of C words
    np.testing.assert_allclose(res.values[:, C], cut.values[:, C], rtol=1e-5, atol=1e-5)


def test_float32_runs_resolve_small_kl_as_float64_does():
    """The sums over the vocabulary behind each KL are taken in float64 whatever the
    compute dtype: with 4,000 words, KL values down to 1e-10 nats agree with a float64
    run (float32 sums left them at a roundoff level of ~3e-8, 500 times too large)."""
    Vb = 4000
    torch.manual_seed(0)
    module = RNNLM(ModelSpec(Vb, 16, 32, num_layers=1, cell="lstm", init_scale=0.3)).eval()
    lm = LanguageModel(module, Vocabulary(["<unk>", "<eos>"] + [f"w{i}" for i in range(Vb - 2)]))
    tokens = np.random.default_rng(0).integers(0, Vb, 400)
    f32 = compute_ablation(lm, tokens, max_distance=25, dtype=torch.float32)
    f64 = compute_ablation(lm, tokens, max_distance=25, dtype=torch.float64)
    kl32, kl64 = (r.values[2, :, 0] / r.counts[:, 0] for r in (f32, f64))
    assert kl64[-1] < 1e-9  # the regime where float32 sums fail
    np.testing.assert_allclose(kl32, kl64, rtol=1e-3)
