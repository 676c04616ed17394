"""Context ablation on the synthetic language, whose memory is known: ablating a trigger
raises the loss only at its planted target distance, ablating a filler changes nothing
beyond noise, and a target needs the context back to its trigger.  Judged by block
intervals (Bonferroni over the distances), on small models trained here for two seeds."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stategrad.ablation import compute_ablation, compute_context_length
from stategrad.analysis import ablation_table
from stategrad.data import Vocabulary, read_tokens
from stategrad.lm import RNNLM, LanguageModel, ModelSpec
from stategrad.synth import SynthConfig, TriggerClass, generate_corpus

torch.set_num_threads(1)

D = 6
DELAYS = {"trigger_k2": 2, "trigger_k4": 4}
LEVEL = 1 - 0.05 / D  # every distance of a class at once


def _train(seed: int, tmp) -> tuple[LanguageModel, np.ndarray, object]:
    config = SynthConfig(triggers=(TriggerClass("k2", 2, n_triggers=3, rate=0.1),
                                   TriggerClass("k4", 4, n_triggers=3, rate=0.1)),
                         n_fillers=6, end_prob=0.1, train_tokens=20_000, valid_tokens=4_000,
                         test_tokens=100, seed=seed)
    corpus = generate_corpus(config, tmp)
    vocab = Vocabulary.build(corpus.path("train"))
    train = torch.as_tensor(read_tokens(corpus.path("train"), vocab)).long()
    torch.manual_seed(seed)
    module = RNNLM(ModelSpec(len(vocab), 16, 32, init_scale=0.1))
    opt = torch.optim.Adam(module.parameters(), lr=0.01)
    batch, steps = 20, 25
    n = len(train) // batch
    data = train[: n * batch].view(batch, n).T.contiguous()
    for _ in range(5):  # truncated BPTT, the state carried between windows
        state = None
        for i in range(0, n - 1, steps):
            y = data[i + 1: i + 1 + steps]
            logits, state = module(data[i: i + len(y)], state)
            state = tuple(s.detach() for s in state)
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                                     y.reshape(-1))
            opt.zero_grad()
            loss.backward()
            opt.step()
    module.eval()
    return LanguageModel(module, vocab), read_tokens(corpus.path("valid"), vocab), \
        corpus.class_set(vocab)


@pytest.fixture(scope="module", params=[1, 2])
def trained(request, tmp_path_factory):
    return _train(request.param, tmp_path_factory.mktemp(f"synth{request.param}"))


def _rows(result, name):
    table = ablation_table(result, interval="jackknife", level=LEVEL)
    return {r[result.axis_name]: r for r in table.rows if r["class"] == name}


def test_a_trigger_matters_only_at_its_target_distance(trained):
    lm, tokens, classes = trained
    res = compute_ablation(lm, tokens, max_distance=D, replace="unk", classes=classes,
                           block_size=250)
    for name, k in DELAYS.items():
        rows = _rows(res, name)
        at_target = rows[k]["loss_increase_lower"]
        assert at_target > 0, (name, rows[k])
        for d, row in rows.items():
            if d != k:  # the effect elsewhere is clearly below the one at the target
                assert row["loss_increase_upper"] < at_target, (name, d, row, rows[k])
                assert row["kl_upper"] < rows[k]["kl_lower"], (name, d, row, rows[k])


def test_a_filler_changes_nothing_beyond_noise(trained):
    lm, tokens, classes = trained
    # Another filler: the language draws every filler independently of the others.
    res = compute_ablation(lm, tokens, max_distance=D, replace="random", classes=classes,
                           block_size=250, seed=3)
    for d, row in _rows(res, "filler").items():
        assert row["loss_increase_lower"] <= 0 <= row["loss_increase_upper"], (d, row)


def test_a_target_needs_the_context_back_to_its_trigger(trained):
    lm, tokens, classes = trained
    res = compute_context_length(lm, tokens, max_context=D, classes=classes, block_size=250)
    rows = _rows(res, "target")
    # With fewer words than the shortest delay no trigger is in view; with D all are.
    assert rows[1]["loss_increase_lower"] > rows[D]["loss_increase_upper"]
    assert rows[1]["loss_increase_lower"] > 0
