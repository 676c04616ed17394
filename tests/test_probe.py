"""The POS probe: examples, held-out accuracy, confusion matrix, per-tag means."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from stategrad.analysis import (
    ProbeData,
    ProbeError,
    class_means,
    read_tag_map,
    repeated_probe,
    text_examples,
    train_probe,
    type_examples,
)
from stategrad.data import Vocabulary
from stategrad.lm import RNNLM, ModelSpec, save_checkpoint

TAGS = ["NN", "NNS", "VB", "JJ"]


def _clustered(rng, V=240, E=8, spread=0.6):
    """Embeddings around one centre per tag; every 10th word has a second tag."""
    centres = rng.normal(size=(len(TAGS), E)) * 2
    W = np.zeros((V, E))
    vocab = [f"w{i}" for i in range(V)]
    word_tags = {}
    for i in range(V):
        k = i % len(TAGS)
        W[i] = centres[k] + spread * rng.normal(size=E)
        word_tags[vocab[i]] = [TAGS[k]] + ([TAGS[(k + 1) % 4]] if i % 10 == 0 else [])
    return W, vocab, word_tags


def test_type_examples_one_per_word_tag_pair():
    rng = np.random.default_rng(0)
    W, vocab, word_tags = _clustered(rng, V=40)
    word_tags["not_in_vocab"] = ["NN"]
    data = type_examples(W, vocab, word_tags)
    assert len(data) == sum(len(t) for w, t in word_tags.items() if w in vocab)
    i = vocab.index("w10")  # two tags: two examples with the same embedding
    rows = np.flatnonzero(data.groups == i)
    assert sorted(data.y[rows].tolist()) == sorted(word_tags["w10"])
    np.testing.assert_array_equal(data.X[rows[0]], data.X[rows[1]])
    assert data.skipped == {"map words not in vocabulary": 1}
    only = type_examples(W, vocab, word_tags, tags=["NN", "NNS"])
    assert set(only.y.tolist()) == {"NN", "NNS"}
    coarse = type_examples(W, vocab, word_tags, tag_map={"NN": "NOUN", "NNS": "NOUN", "VB": "VERB"})
    assert set(coarse.y.tolist()) == {"NOUN", "VERB"}
    # a word whose two tags map to one coarse tag gives one example
    assert (coarse.groups == vocab.index("w20")).sum() == 1  # NN + NNS -> NOUN


def test_probe_separates_clustered_tags_on_held_out_words():
    rng = np.random.default_rng(1)
    W, vocab, word_tags = _clustered(rng)
    data = type_examples(W, vocab, word_tags)
    result = train_probe(data, Cs=(0.1, 1.0), cv=3, test_fraction=0.25, seed=0)
    assert result.accuracy > 0.85 > result.majority_accuracy
    assert result.best_C in (0.1, 1.0)
    assert result.n_train + result.n_test == len(data)
    assert result.n_train_words + result.n_test_words == len(vocab)  # words are split, not pairs
    assert result.confusion.shape == (4, 4)
    assert result.confusion.sum() == result.n_test
    assert np.trace(result.confusion) / result.confusion.sum() == pytest.approx(result.accuracy)
    for tag in TAGS:
        sel = data.y == tag
        np.testing.assert_allclose(result.class_means[tag], data.X[sel].mean(0), atol=1e-12)
    assert "held-out accuracy" in result.format()


def test_random_embeddings_give_chance_accuracy():
    rng = np.random.default_rng(2)
    W, vocab, word_tags = _clustered(rng)
    W = rng.normal(size=W.shape)  # no information about the tags
    result = train_probe(type_examples(W, vocab, word_tags), Cs=(1.0,), seed=0)
    assert result.accuracy < 0.5


def test_running_text_examples_are_collapsed_with_token_weights():
    rng = np.random.default_rng(3)
    W, vocab, word_tags = _clustered(rng, V=80)
    ids = rng.integers(0, 80, size=3000)
    tokens = [(vocab[i], word_tags[vocab[i]][0]) for i in ids] + [("oov", "NN")] * 4
    data = text_examples(W, vocab, tokens)
    assert data.weights.sum() == 3000 and data.skipped["tokens not in vocabulary"] == 4
    assert len(data) == len(np.unique(ids))
    means, weights = class_means(data)
    for tag in TAGS:
        sel = np.array([word_tags[vocab[i]][0] == tag for i in ids])
        np.testing.assert_allclose(means[tag], W[ids[sel]].mean(0), atol=1e-12)
        assert weights[tag] == sel.sum()
    result = train_probe(data, Cs=(1.0,), seed=1)
    # the held-out figures count tokens, not the collapsed examples
    assert result.confusion.sum() > 5 * result.n_test
    assert np.trace(result.confusion) / result.confusion.sum() == pytest.approx(result.accuracy)
    assert result.accuracy > 0.85
    assert result.n_test_tokens == pytest.approx(result.confusion.sum())
    assert result.n_train_tokens + result.n_test_tokens == pytest.approx(data.weights.sum())
    text = result.format()
    assert f"held out: {result.n_test} pairs" in text
    assert f"{result.n_test_tokens:,.0f} tokens" in text and "accuracy per token" in text
    # with every example standing for one token, per pair and per token are the same
    ones = ProbeData(data.X, data.y, data.groups, np.ones(len(data)), "text")
    flat = train_probe(ones, Cs=(1.0,), seed=1)
    assert flat.pair_accuracy == pytest.approx(flat.accuracy)


def test_repeated_splits_report_each_splits_accuracy():
    rng = np.random.default_rng(8)
    W, vocab, word_tags = _clustered(rng, V=120, spread=1.2)
    ids = rng.integers(0, 120, size=2000)
    data = text_examples(W, vocab, [(vocab[i], word_tags[vocab[i]][0]) for i in ids])
    result = repeated_probe(data, 3, seed=5, Cs=(1.0,))
    singles = [train_probe(data, seed=s, Cs=(1.0,)) for s in (5, 6, 7)]
    assert result.split_accuracies == pytest.approx([r.accuracy for r in singles])
    assert result.split_majorities == pytest.approx([r.majority_accuracy for r in singles])
    assert result.accuracy == pytest.approx(singles[0].accuracy)
    assert "over 3 random word splits: accuracy mean" in result.format()
    with pytest.raises(ProbeError, match="splits must be at least 1"):
        repeated_probe(data, 0)


def _previous_path(data, seed, Cs):
    """The probe as it was before the speed-up, written out here: a grid search over C
    with word folds on one word split, default BLAS threads, no worker processes."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, GroupKFold, GroupShuffleSplit
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    train, test = next(GroupShuffleSplit(n_splits=1, test_size=0.2, random_state=seed)
                       .split(data.X, data.y, groups=data.groups))
    search = GridSearchCV(make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)),
                          {"logisticregression__C": list(Cs)}, cv=GroupKFold(n_splits=3))
    search.fit(data.X[train], data.y[train], groups=data.groups[train])
    pred = search.predict(data.X[test])
    return search.best_params_["logisticregression__C"], float((pred == data.y[test]).mean())


def test_parallel_splits_give_the_previous_paths_choice_and_accuracy():
    rng = np.random.default_rng(11)
    W, vocab, word_tags = _clustered(rng, V=200, spread=2.0)
    data = type_examples(W, vocab, word_tags)
    Cs = (0.01, 0.1, 1.0, 10.0)
    fast = repeated_probe(data, 4, seed=3, Cs=Cs, n_jobs=2)
    serial = repeated_probe(data, 4, seed=3, Cs=Cs, n_jobs=1)
    assert fast.split_accuracies == serial.split_accuracies
    before = [_previous_path(data, s, Cs) for s in (3, 4, 5, 6)]
    assert fast.best_C == before[0][0]
    # Same folds, same fits: equal up to the order of floating-point sums.
    assert fast.split_accuracies == pytest.approx([acc for _, acc in before], abs=1e-9)
    assert 0.4 < np.mean(fast.split_accuracies) < 0.99  # neither trivial nor chance
    one = repeated_probe(data, 1, seed=3, Cs=Cs, n_jobs=2)  # parallel cross-validation
    assert (one.best_C, one.accuracy) == (fast.best_C, fast.accuracy)
    assert one.cv_accuracy == pytest.approx(fast.cv_accuracy, abs=1e-12)
    with pytest.raises(ProbeError, match="n_jobs must be at least 1"):
        repeated_probe(data, 2, n_jobs=0)


def test_rare_tags_are_left_out_and_too_little_data_is_an_error():
    rng = np.random.default_rng(4)
    W, vocab, word_tags = _clustered(rng, V=60)
    word_tags["w1"] = ["UH"]  # a tag with one example
    result = train_probe(type_examples(W, vocab, word_tags), Cs=(1.0,), min_examples=3)
    assert result.dropped_tags == {"UH": 1} and "UH" not in result.labels
    with pytest.raises(ProbeError, match="at least two tags"):
        train_probe(type_examples(W, vocab, word_tags, tags=["NN"]))
    with pytest.raises(ProbeError, match="test_fraction"):
        train_probe(type_examples(W, vocab, word_tags), test_fraction=1.0)
    with pytest.raises(ProbeError, match="no \\(word, tag\\) example"):
        type_examples(W, vocab, {"zzz": ["NN"]})


def test_tag_map_reader(tmp_path):
    p = tmp_path / "en-ptb.map"
    p.write_text("NN\tNOUN\nNNS\tNOUN\n\nVB\tVERB\n")
    assert read_tag_map(p) == {"NN": "NOUN", "NNS": "NOUN", "VB": "VERB"}
    p.write_text("NN NOUN extra\n")
    with pytest.raises(ProbeError, match="en-ptb.map:1"):
        read_tag_map(p)


def test_cli_probe_on_a_model(tmp_path):
    from stategrad.cli import main

    rng = np.random.default_rng(5)
    W, words, word_tags = _clustered(rng, V=120, E=6)
    vocab = Vocabulary(tuple(words) + ("<unk>", "<bos>"))
    torch.manual_seed(0)
    module = RNNLM(ModelSpec(vocab_size=len(vocab), embedding_size=6, hidden_size=4))
    with torch.no_grad():
        module.embedding.weight[: len(words)] = torch.tensor(W, dtype=torch.float32)
    save_checkpoint(tmp_path / "m.pt", module, vocab)
    pos = tmp_path / "pos.txt"
    pos.write_text("".join(f"{w} {' '.join(t)}\n" for w, t in word_tags.items()))
    out = CliRunner().invoke(main, ["probe", "--model", str(tmp_path / "m.pt"), "--pos-map",
                                    str(pos), "--C", "1", "--class-means",
                                    str(tmp_path / "means.npz"), "--confusion",
                                    str(tmp_path / "cm.csv"), "--splits", "2"])
    assert out.exit_code == 0, out.output
    assert "held-out accuracy" in out.output and "over 2 random word splits" in out.output
    assert "probe: 100%" in out.stderr and "2/2" in out.stderr  # the progress bar
    quiet = CliRunner().invoke(main, ["probe", "--model", str(tmp_path / "m.pt"), "--pos-map",
                                      str(pos), "--C", "1", "--splits", "2", "--jobs", "1",
                                      "--no-progress"])
    assert quiet.exit_code == 0, quiet.output
    assert "probe:" not in quiet.stderr
    assert quiet.stdout == out.stdout.split("wrote")[0]
    with np.load(tmp_path / "means.npz") as means:
        assert sorted(means.files) == sorted(TAGS)
        nn = [i for i, w in enumerate(words) if "NN" in word_tags[w]]
        np.testing.assert_allclose(means["NN"], W[nn].astype(np.float32).mean(0), atol=1e-5)
    assert (tmp_path / "cm.csv").read_text().splitlines()[0] == "true\\predicted," + ",".join(
        sorted(TAGS))


SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.mark.shared_data
@pytest.mark.skipif(not (SHARED / "tagsets" / "en-ptb.map").is_file(),
                    reason="../shared/data/tagsets/en-ptb.map not present (fresh clone)")
def test_universal_tag_map_from_shared_data_coarsens_probe_labels():
    mapping = read_tag_map(SHARED / "tagsets" / "en-ptb.map")
    assert mapping["NNS"] == mapping["NN"] == "NOUN" and mapping["VBZ"] == "VERB"
    rng = np.random.default_rng(6)
    W, vocab, word_tags = _clustered(rng, V=40)
    data = type_examples(W, vocab, word_tags, tag_map=mapping)
    assert set(data.y.tolist()) == {"NOUN", "VERB", "ADJ"}
