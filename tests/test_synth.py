"""The synthetic language: determinism, planted dependencies, entropy, embeddings, CLI."""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from stategrad.cli import main
from stategrad.data import BOS, EOS, UNK, Vocabulary, iter_sentences, read_tokens
from stategrad.synth import (
    SynthConfig,
    SynthError,
    SynthLanguage,
    TriggerClass,
    generate_corpus,
    load_corpus,
    preset,
)


def small(**kw) -> SynthConfig:
    base = dict(
        triggers=(
            TriggerClass("k2", 2, n_triggers=3, rate=0.1),
            TriggerClass("k4", 4, n_triggers=4, remembered="feature", n_values=2, rate=0.08),
            TriggerClass("k3", 3, n_triggers=2, remembered="class", rate=0.05),
        ),
        n_fillers=7,
        filler_zipf=1.2,
        end_prob=0.15,
        noise=0.0,
        train_tokens=20_000,
        valid_tokens=3_000,
        test_tokens=2_000,
        seed=3,
        embedding_dim=0,
    )
    base.update(kw)
    return SynthConfig(**base)


@pytest.fixture(scope="module")
def demo_corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    return generate_corpus(preset("demo", variance="unequal"), out)


def sentences(path: Path) -> list[list[str]]:
    return [line.split() for line in path.read_text(encoding="utf-8").splitlines()]


# --- determinism and sizes -------------------------------------------------------------------


def test_same_seed_same_bytes_other_seed_other_text(tmp_path):
    config = small(embedding_dim=12)
    a = generate_corpus(config, tmp_path / "a")
    b = generate_corpus(config, tmp_path / "b")
    c = generate_corpus(small(seed=4, embedding_dim=12), tmp_path / "c")
    for name in ["train.txt", "valid.txt", "test.txt", "synth.json", "embeddings.npz"]:
        assert (a.directory / name).read_bytes() == (b.directory / name).read_bytes(), name
    assert (a.directory / "train.txt").read_text() != (c.directory / "train.txt").read_text()


def test_splits_are_independent_streams(tmp_path):
    a = generate_corpus(small(), tmp_path / "a")
    b = generate_corpus(small(valid_tokens=5_000), tmp_path / "b")
    assert (a.directory / "train.txt").read_bytes() == (b.directory / "train.txt").read_bytes()
    assert (a.directory / "valid.txt").read_bytes() != (b.directory / "valid.txt").read_bytes()


def test_split_sizes_match_request_and_metadata(tmp_path):
    config = small()
    corpus = generate_corpus(config, tmp_path)
    for split in ("train", "valid", "test"):
        sents = list(iter_sentences(corpus.path(split)))
        tokens = sum(len(s) for s in sents)  # <eos> appended by the reader
        asked = getattr(config, f"{split}_tokens")
        assert tokens >= asked
        # Whole sentences, the shortest prefix reaching the request: dropping the last
        # sentence must fall short.
        assert tokens - len(sents[-1]) < asked
        info = corpus.metadata["splits"][split]
        assert info == {"sentences": len(sents), "tokens": tokens, "words": tokens - len(sents)}


# --- the planted dependencies ---------------------------------------------------------------


def test_dependency_holds_exactly_at_delay_k_within_sentences(demo_corpus):
    meta = demo_corpus.metadata
    truth = meta["ground_truth"]
    delay_of, target_of = {}, {}
    for t in truth.values():
        for trig, tgt in t.get("target_of", {}).items():
            delay_of[trig] = t["memory_span"]
            target_of[trig] = tgt
    targets = set(meta["classes"]["target"])
    seen = Counter()
    for split in ("train", "valid"):
        for words in sentences(demo_corpus.path(split)):
            assert words, "empty sentence"
            explained = set()
            for p, w in enumerate(words):
                if w in delay_of:
                    q = p + delay_of[w]
                    assert q < len(words), f"trigger {w} at {p} has no slot in {words}"
                    assert words[q] == target_of[w]
                    assert q not in explained  # one owner per slot
                    explained.add(q)
                    seen[truth_class(meta, w)] += 1
            # Every target is explained by a trigger exactly k earlier in the same sentence.
            assert {p for p, w in enumerate(words) if w in targets} == explained
    assert seen["trigger_k5"] > 300 and seen["trigger_k15"] > 300


def truth_class(meta, word):
    return next(c for c, ws in meta["classes"].items() if word in ws and c.startswith("trigger"))


def test_feature_and_class_properties_select_targets(tmp_path):
    corpus = generate_corpus(small(), tmp_path)
    truth = corpus.metadata["ground_truth"]
    assert truth["trigger_k4"]["target_of"] == {
        "k4_trig0": "k4_tgt0", "k4_trig1": "k4_tgt1", "k4_trig2": "k4_tgt0", "k4_trig3": "k4_tgt1"}
    assert set(truth["trigger_k3"]["target_of"].values()) == {"k3_tgt0"}
    assert truth["trigger_k4"]["remembered"] == "feature" and truth["trigger_k4"]["n_values"] == 2
    # The text follows those maps.
    pairs = Counter()
    for words in sentences(corpus.path("train")):
        for p, w in enumerate(words):
            if w.startswith("k4_trig"):
                pairs[(w, words[p + 4])] += 1
    assert set(pairs) == set(truth["trigger_k4"]["target_of"].items())


def test_noise_replaces_targets_at_the_stated_rate():
    noise = 0.2
    lang = SynthLanguage(small(noise=noise))
    text = lang.sample(200_000, np.random.default_rng(1))
    words = text.lines()
    m = lang.all_targets.size
    wrong = total = 0
    for line in words:
        w = line.split()
        for p, x in enumerate(w):
            if "_trig" in x:
                c = x.split("_")[0]
                k = {"k2": 2, "k4": 4, "k3": 3}[c]
                total += 1
                right = dict(lang.ground_truth()[f"trigger_{c}"]["target_of"])[x]
                assert "_tgt" in w[p + k]
                wrong += w[p + k] != right
    expected = noise * (1 - 1 / m)
    se = math.sqrt(expected * (1 - expected) / total)
    assert abs(wrong / total - expected) < 5 * se


# --- metadata --------------------------------------------------------------------------------


def test_metadata_classes_and_ground_truth(demo_corpus):
    meta = load_corpus(demo_corpus.directory).metadata
    assert meta == demo_corpus.metadata
    classes = meta["classes"]
    assert list(classes) == ["trigger_k5", "trigger_k15", "filler", "target"]
    vocab = Vocabulary.build(demo_corpus.path("train"))
    words = set(vocab.words) - {EOS, UNK, BOS}
    # The classes partition the language's words.
    listed = [w for ws in classes.values() for w in ws]
    assert len(listed) == len(set(listed)) and set(listed) == words
    assert demo_corpus.memory_spans() == {"trigger_k5": 5, "trigger_k15": 15, "filler": 0, "target": 0}
    assert meta["vocabulary"]["lm_vocabulary_size"] == len(vocab)
    cs = demo_corpus.class_set(vocab)
    assert cs.names == ["all", "trigger_k5", "trigger_k15", "filler", "target"]
    assert cs.membership[:, 1].sum() == 6 and cs.membership[:, 3].sum() == 20
    assert cs.definitions["trigger_k15"]["memory_span"] == 15
    tokens = read_tokens(demo_corpus.path("valid"), vocab)
    counts = cs.counts_in(tokens)
    assert counts[0] == meta["splits"]["valid"]["tokens"]
    # As many targets as triggers (noise 0), and the entropy report's shares match.
    assert counts[4] == counts[1] + counts[2]
    shares = meta["entropy"]["token_shares"]
    assert abs(counts[3] / counts[0] - shares["filler"]) < 0.03
    assert math.isclose(sum(shares.values()), 1.0, rel_tol=1e-9)


def test_load_corpus_errors(tmp_path):
    with pytest.raises(SynthError, match="no synth.json"):
        load_corpus(tmp_path)
    (tmp_path / "synth.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(SynthError, match="not a stategrad-synth"):
        load_corpus(tmp_path)


# --- entropy ---------------------------------------------------------------------------------


def unrolled_entropy(config: SynthConfig) -> tuple[float, float]:
    """Entropy per token and mean sentence length by propagating the distribution over
    the process's states position by position (no stationary solve), from the rules as
    documented."""
    trig = config.triggers
    m = sum(t.values for t in trig)
    eps = config.noise
    q = np.arange(1, config.n_fillers + 1, dtype=float) ** -config.filler_zipf
    q /= q.sum()
    h_fill = -(q * np.log(q)).sum()
    h_due = 0.0
    if eps > 0:
        a, b = 1 - eps + eps / m, eps / m
        h_due = -a * math.log(a) - (m - 1) * b * math.log(b)
    mass = {(False, (None,) * len(trig)): 1.0}
    H = L = 0.0
    while sum(mass.values()) > 1e-14:
        new: dict = defaultdict(float)
        for (started, pend), pr in mass.items():
            L += pr
            step = tuple(None if d is None else d - 1 for d in pend)
            if 0 in pend:
                H += pr * h_due
                c = pend.index(0)
                new[(True, tuple(None if j == c else d for j, d in enumerate(step)))] += pr
                continue
            opts = []
            if started and all(d is None for d in pend):
                opts.append((config.end_prob, None, 0.0))
            for c, t in enumerate(trig):
                if pend[c] is None and t.delay not in pend:
                    after = tuple(t.delay - 1 if j == c else d for j, d in enumerate(step))
                    opts.append((t.rate, (True, after), math.log(t.n_triggers)))
            p_fill = 1 - sum(o[0] for o in opts)
            opts.append((p_fill, (True, step), h_fill))
            for p, nxt, h_word in opts:
                H += pr * (-p * math.log(p) + p * h_word)
                if nxt is not None:
                    new[nxt] += pr * p
        mass = new
    return H / L, L


@pytest.mark.parametrize("noise", [0.0, 0.3])
def test_entropy_rate_matches_unrolled_computation(noise):
    config = small(noise=noise)
    report = SynthLanguage(config).entropy()
    rate, length = unrolled_entropy(config)
    assert report.rate == pytest.approx(rate, rel=1e-9)
    assert report.mean_sentence_tokens == pytest.approx(length, rel=1e-9)
    # Forgetting a class's trigger values costs, unless the class has only one value.
    forgot = report.rate_if_forgotten
    assert forgot["trigger_k2"] > report.rate and forgot["trigger_k4"] > report.rate
    assert forgot["trigger_k3"] == pytest.approx(report.rate, rel=1e-12)


@pytest.mark.parametrize("noise", [0.0, 0.1])
def test_entropy_rate_matches_true_model_loglik_on_sampled_text(noise):
    lang = SynthLanguage(preset("demo", noise=noise))
    text = lang.sample(400_000, np.random.default_rng(11))
    emp = lang.empirical_cross_entropy(text.ids)
    assert emp["tokens"] == text.n_tokens
    assert abs(emp["cross_entropy_nats"] - lang.entropy().rate) < 4 * emp["std_error"]
    assert emp["std_error"] < 0.005


def test_log_probs_are_a_distribution_per_state():
    # Summing P over every possible next word after a prefix gives 1: score every one-word
    # continuation of a prefix that has a pending target, and of one that has none.
    lang = SynthLanguage(small(noise=0.25))
    vocab = [w for w in lang.words if w != EOS]
    for prefix in (["k2_trig1", "fill0"], ["fill3"], []):
        total = 0.0
        for w in [*vocab, EOS]:
            words = [*prefix, w]
            ids = np.array([lang.word_index[x] for x in words] + [0])
            lp = lang.log_probs(ids, strict=False)
            total += math.exp(lp[len(prefix)])
        assert total == pytest.approx(1.0, abs=1e-12)


def test_scorer_rejects_impossible_text(tmp_path):
    lang = SynthLanguage(small())
    with pytest.raises(SynthError, match="word 3"):
        lang.empirical_cross_entropy(lang.encode_lines(["k2_trig0 fill1 k2_tgt1"]))
    with pytest.raises(SynthError, match="word 2"):
        lang.empirical_cross_entropy(lang.encode_lines(["k2_trig0"]))  # <eos> before target
    with pytest.raises(SynthError, match="not a word"):
        lang.encode_lines(["fill1 hello"])
    ok = lang.encode_lines(["k2_trig0 fill1 k2_tgt0"])
    lp = lang.log_probs(ok)
    q = np.arange(1, 8, dtype=float) ** -1.2
    q /= q.sum()
    # start: trigger k2 (rate .1, 1/3 of them), then filler fill1 (k2 pending: k4 (delay 4)
    # and k3 (delay 3) allowed), the due target, then <eos>.
    expected = [math.log(0.1 / 3), math.log((1 - 0.08 - 0.05) * q[1]), 0.0, math.log(0.15)]
    assert lp == pytest.approx(expected)


def test_generation_scales():
    lang = SynthLanguage(preset("default"))
    text = lang.sample(1_000_000, np.random.default_rng(0))
    assert 1_000_000 <= text.n_tokens < 1_000_000 + 2_000
    assert np.all(np.diff(np.flatnonzero(text.ids == 0)) > 1)  # no empty sentence


# --- embeddings ------------------------------------------------------------------------------


def test_embeddings_have_requested_token_weighted_variances(demo_corpus):
    meta = demo_corpus.metadata
    z = np.load(demo_corpus.embeddings_path)
    vectors, words = z["vectors"], list(z["words"])
    assert vectors.dtype == np.float32 and vectors.shape == (len(words), 32)
    vocab = Vocabulary.build(demo_corpus.path("train"))
    assert words == list(vocab.words)  # LM order, <unk> and <bos> included
    assert UNK in words and BOS in words and EOS in words
    tokens = read_tokens(demo_corpus.path("train"), vocab)
    x = vectors[tokens].astype(np.float64)
    cov = np.cov(x, rowvar=False)
    want = np.array(meta["embeddings"]["variances"])
    assert np.allclose(np.diag(cov), want, rtol=1e-4)
    assert np.abs(cov - np.diag(np.diag(cov))).max() < 1e-5
    assert np.abs(x.mean(axis=0)).max() < 1e-5
    # Unequal profile: the long-memory class is stretched, the short one squeezed.
    blocks = meta["embeddings"]["blocks"]
    assert blocks["trigger_k15"]["scale"] == pytest.approx(3.0)
    assert blocks["trigger_k5"]["scale"] == pytest.approx(1 / 3)
    for name, block in blocks.items():
        assert np.allclose(np.diag(cov)[block["axes"]], block["scale"] ** 2, rtol=1e-4), name
    # Trigger identities of a class live only in their own block.
    k15 = [vocab[w] for w in meta["classes"]["trigger_k15"]]
    outside = np.setdiff1d(np.arange(32), blocks["trigger_k15"]["axes"])
    assert np.ptp(vectors[np.ix_(k15, outside)], axis=0).max() < 1e-5
    assert np.ptp(vectors[np.ix_(k15, blocks["trigger_k15"]["axes"])], axis=0).min() > 0.1
    # Every word distinct.
    assert len({tuple(np.round(v, 5)) for v in vectors}) == len(words)


def test_equal_profile_and_custom_scales(tmp_path):
    corpus = generate_corpus(
        small(embedding_dim=14, scales={"filler": 5.0}), tmp_path
    )
    vocab = Vocabulary.build(corpus.path("train"))
    x = np.load(corpus.embeddings_path)["vectors"][read_tokens(corpus.path("train"), vocab)]
    var = np.var(x.astype(np.float64), axis=0, ddof=1)
    blocks = corpus.metadata["embeddings"]["blocks"]
    assert blocks["filler"]["axes"], "fillers got no axes"
    for name, block in blocks.items():
        assert np.allclose(var[block["axes"]], 25.0 if name == "filler" else 1.0, rtol=1e-4)


def test_embedding_dimension_limits(tmp_path):
    with pytest.raises(SynthError, match="at most"):
        generate_corpus(small(embedding_dim=500), tmp_path / "a")
    with pytest.raises(SynthError, match="at least"):
        generate_corpus(small(embedding_dim=3), tmp_path / "b")


# --- configuration errors --------------------------------------------------------------------


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(end_prob=0.8), "below 1"),
        (dict(noise=1.5), "noise"),
        (dict(triggers=(TriggerClass("a", 0),)), "delay"),
        (dict(triggers=(TriggerClass("a", 2, remembered="feature", n_values=9, n_triggers=3),)),
         "n_values"),
        (dict(triggers=(TriggerClass("a", 2), TriggerClass("a", 3))), "distinct"),
        (dict(scales={"nouns": 2.0}), "unknown embedding scale group"),
        (dict(variance="wild"), "variance"),
    ],
)
def test_bad_configurations_are_explained(change, message):
    with pytest.raises(SynthError, match=message):
        small(**change).check()


def test_refuses_to_overwrite(tmp_path):
    generate_corpus(small(), tmp_path)
    with pytest.raises(SynthError, match="--force"):
        generate_corpus(small(), tmp_path)
    generate_corpus(small(seed=9), tmp_path, overwrite=True)
    assert load_corpus(tmp_path).metadata["config"]["seed"] == 9


# --- command line ----------------------------------------------------------------------------


def test_cli_writes_corpus(tmp_path):
    out = tmp_path / "synth"
    result = CliRunner().invoke(main, [
        "synth", str(out), "--preset", "demo", "--train-tokens", "5000", "--valid-tokens",
        "1000", "--test-tokens", "1000", "--trigger", "3", "--trigger",
        "k=9,n=4,remember=feature,values=2,rate=0.04,name=long", "--noise", "0.05",
        "--variance", "unequal", "--scale", "filler=2", "--seed", "5", "--embedding-dim", "20",
    ])
    assert result.exit_code == 0, result.output
    for name in ("train.txt", "valid.txt", "test.txt", "synth.json", "embeddings.npz"):
        assert (out / name).is_file()
    meta = json.loads((out / "synth.json").read_text())
    assert meta["config"]["seed"] == 5 and meta["config"]["noise"] == 0.05
    assert meta["ground_truth"]["trigger_long"]["memory_span"] == 9
    assert meta["ground_truth"]["trigger_k3"]["memory_span"] == 3
    assert meta["embeddings"]["blocks"]["filler"]["scale"] == 2.0
    assert meta["embeddings"]["blocks"]["trigger_long"]["scale"] == pytest.approx(3.0)
    assert "entropy rate" in result.output and "trigger_long" in result.output

    # Regenerating from the metadata reproduces the corpus.
    again = tmp_path / "again"
    result = CliRunner().invoke(main, ["synth", str(again), "--config", str(out / "synth.json")])
    assert result.exit_code == 0, result.output
    assert (again / "train.txt").read_bytes() == (out / "train.txt").read_bytes()
    assert (again / "embeddings.npz").read_bytes() == (out / "embeddings.npz").read_bytes()


def test_cli_errors_are_clear(tmp_path):
    r = CliRunner().invoke(main, ["synth", str(tmp_path / "x"), "--trigger", "k=abc"])
    assert r.exit_code != 0 and "bad number in trigger spec" in r.output
    r = CliRunner().invoke(main, ["synth", str(tmp_path / "x"), "--trigger", "speed=3"])
    assert r.exit_code != 0 and "expected K or comma-separated" in r.output
    r = CliRunner().invoke(main, ["synth", str(tmp_path / "x"), "--end-prob", "0.99"])
    assert r.exit_code != 0 and "below 1" in r.output


# --- planted properties ------------------------------------------------------------------------


def test_properties_agree_at_their_distance_and_come_with_their_classes(tmp_path):
    from stategrad.synth import property_class

    config = small(triggers=(TriggerClass("k5", 5, n_triggers=3, rate=0.06),
                             property_class(3, 6, rate=0.08, name="num"),
                             property_class(7, 4, rate=0.06)), embedding_dim=24)
    corpus = generate_corpus(config, tmp_path)
    meta = corpus.metadata
    classes, truth = meta["classes"], meta["ground_truth"]
    assert classes["trigger_num_v0"] == ["num_trig0", "num_trig2", "num_trig4"]
    assert classes["trigger_num_v1"] == ["num_trig1", "num_trig3", "num_trig5"]
    assert classes["target_num"] == ["num_tgt0", "num_tgt1"]
    assert truth["trigger_num"]["distance"] == 3
    assert truth["trigger_num"]["value_classes"] == ["trigger_num_v0", "trigger_num_v1"]
    assert truth["trigger_p7"]["agreeing_class"] == "target_p7"
    # The word K later agrees with the carrier's value; the words between are no carrier
    # or agreeing word of the same property.
    seen = Counter()
    for words in sentences(corpus.path("train")):
        for p, w in enumerate(words):
            for name, k in (("num", 3), ("p7", 7)):
                if w.startswith(f"{name}_trig"):
                    value = int(w.removeprefix(f"{name}_trig")) % 2
                    assert words[p + k] == f"{name}_tgt{value}"
                    assert not any(x.startswith(f"{name}_") for x in words[p + 1:p + k])
                    seen[name] += 1
    assert seen["num"] > 100 and seen["p7"] > 100
    # The planted embeddings keep each class's words apart: the value classes differ.
    cs = corpus.class_set(Vocabulary.build(corpus.path("train")))
    assert {"trigger_num_v0", "trigger_num_v1", "target_num"} <= set(cs.names)
    emb = np.load(corpus.embeddings_path)
    W, words = emb["vectors"], list(emb["words"])
    mean = {v: W[[words.index(w) for w in classes[f"trigger_num_{v}"]]].mean(0) for v in ("v0", "v1")}
    assert np.linalg.norm(mean["v1"] - mean["v0"]) > 0.1


def test_cli_property_option_adds_properties_to_the_triggers(tmp_path):
    out = tmp_path / "props"
    result = CliRunner().invoke(main, [
        "synth", str(out), "--preset", "demo", "--train-tokens", "4000", "--valid-tokens",
        "1000", "--test-tokens", "1000", "--property", "4", "--property",
        "k=7,n=6,rate=0.05,name=number"])
    assert result.exit_code == 0, result.output
    truth = json.loads((out / "synth.json").read_text())["ground_truth"]
    assert {"trigger_k5", "trigger_k15", "trigger_p4", "trigger_number"} <= set(truth)
    assert truth["trigger_number"]["distance"] == 7 and truth["trigger_p4"]["n_values"] == 2
    bad = CliRunner().invoke(main, ["synth", str(tmp_path / "bad"), "--property", "k=x"])
    assert bad.exit_code != 0 and "Error: " in bad.output and "--property" in bad.output
    assert "Traceback" not in bad.output and not (tmp_path / "bad").exists()


def test_synth_writes_the_ground_truth_classes_as_a_class_map(tmp_path):
    from stategrad.data import load_classes, read_class_map

    out = tmp_path / "props"
    result = CliRunner().invoke(main, [
        "synth", str(out), "--preset", "demo", "--train-tokens", "4000", "--valid-tokens",
        "1000", "--test-tokens", "1000", "--property", "k=6,n=6", "--embedding-dim", "0"])
    assert result.exit_code == 0, result.output
    assert "classes.tsv" in result.output
    corpus = load_corpus(out)
    assert corpus.classes_path == out / "classes.tsv"
    read = read_class_map(corpus.classes_path)
    assert read == corpus.metadata["classes"]  # every class, in order, nothing else
    # the carriers by value, as the generator assigns them (even index: value 0)
    assert read["trigger_p6_v0"] == ["p6_trig0", "p6_trig2", "p6_trig4"]
    assert read["trigger_p6_v1"] == ["p6_trig1", "p6_trig3", "p6_trig5"]
    assert {"trigger_k5", "trigger_k15", "trigger_p6", "filler", "target",
            "target_p6"} <= set(read)
    # --class-map gives the same per-class membership as the corpus's own class set
    vocab = Vocabulary.build(corpus.path("train"))
    mapped, truth = load_classes(vocab, class_map=corpus.classes_path), corpus.class_set(vocab)
    assert mapped.names == truth.names
    np.testing.assert_array_equal(mapped.membership, truth.membership)


def test_class_map_writer_refuses_what_it_could_not_read_back(tmp_path):
    from stategrad.data import ClassError, read_class_map, write_class_map

    path = tmp_path / "c.tsv"
    write_class_map(path, {"a": ["x", "y"], "b": ["y"]})
    assert read_class_map(path) == {"a": ["x", "y"], "b": ["y"]}
    for bad in ({"a": ["two words"]}, {"a b": ["x"]}, {"all": ["x"]}, {"a": ["#x"]}):
        with pytest.raises(ClassError):
            write_class_map(tmp_path / "bad.tsv", bad)
    assert not (tmp_path / "bad.tsv").exists()
