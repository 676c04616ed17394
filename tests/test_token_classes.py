"""Token classes from a tagged text (--tagged) and frequency strata (--frequency-bands):
alignment of tokens and gold tags, strata against direct counts, the CLI end to end."""

from __future__ import annotations

import collections
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from stategrad import load_result, load_token_classes, stratify, word_ranks
from stategrad.cli import main
from stategrad.data import (
    PTB_UNIVERSAL,
    ClassError,
    TaggedError,
    Vocabulary,
    load_classes,
    prepare_tagged,
    read_tokens,
)
from stategrad.data.frequency import band_labels, parse_bands
from stategrad.gradients import compute_state_gradients, sentence_gradients
from stategrad.lm import RNNLM, ModelSpec, load_model, save_checkpoint

torch.set_num_threads(1)

# CoNLL-2000 lines: capitals, a number, punctuation, and "increase" as a noun and a verb.
CONLL = """\
Rockwell NNP B-NP
said VBD B-VP
the DT B-NP
increase NN I-NP
of IN B-PP
3,000 CD B-NP
jobs NNS I-NP
is VBZ B-VP
welcome JJ B-ADJP
. . O

They PRP B-NP
will MD B-VP
increase VB I-VP
it PRP B-NP
, , O
Mr. NNP B-NP
Zyx NNP I-NP
said VBD B-VP
. . O
"""
# The same text read directly: PTB conventions (lower case, numbers -> N, punctuation
# dropped), <eos> after each sentence, and each token's own gold tag (None: <eos>).
DIRECT = [("rockwell", "NNP"), ("said", "VBD"), ("the", "DT"), ("increase", "NN"),
          ("of", "IN"), ("N", "CD"), ("jobs", "NNS"), ("is", "VBZ"), ("welcome", "JJ"),
          ("<eos>", None), ("they", "PRP"), ("will", "MD"), ("increase", "VB"), ("it", "PRP"),
          ("mr.", "NNP"), ("zyx", "NNP"), ("said", "VBD"), ("<eos>", None)]
# "zyx" is left out of the vocabulary: it must read as <unk>.
WORDS = ["<unk>", "<eos>", "rockwell", "said", "the", "increase", "of", "N", "jobs", "is",
         "welcome", "they", "will", "it", "mr.", "extra"]
# A training text for the ranks: the 3, said 2, it 2, increase 1, ...; "said"/"it" tie.
TRAIN = "the increase said it\nthe said it the jobs\n"


@pytest.fixture()
def files(tmp_path):
    (tmp_path / "test.conll").write_text(CONLL)
    (tmp_path / "train.txt").write_text(TRAIN)
    return tmp_path


@pytest.fixture()
def vocab():
    return Vocabulary(WORDS)


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def one_error_line(r) -> str:
    assert r.exit_code != 0 and "Traceback" not in r.output, r.output
    errors = [line for line in r.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, r.output
    return errors[0]


# --- alignment --------------------------------------------------------------------------


def test_tokens_and_gold_tags_stay_aligned(files, vocab):
    cs = load_token_classes(vocab, files / "test.conll")
    assert cs.words == [w for w, _ in DIRECT]
    np.testing.assert_array_equal(cs.tokens, [vocab.get(w, vocab["<unk>"]) for w, _ in DIRECT])
    pos = cs.positions()
    for t, (_, tag) in enumerate(DIRECT):
        assert {n for j, n in enumerate(cs.names) if pos[t, j]} == {"all"} | ({tag} if tag else set())
    # classes by falling count, ties by name; "increase" is a noun once and a verb once
    assert cs.names[:4] == ["all", "NNP", "PRP", "VBD"]
    assert cs.info["unit"] == "token" and cs.info["oov_tokens"] == 1 and cs.info["sentences"] == 2


def test_text_is_what_prepare_tagged_writes(files, vocab):
    """The tokens equal those of the LM text `prepare-tagged --normalize` writes from the
    same file, read as every other command reads a text (<eos> after each line)."""
    prepare_tagged([files / "test.conll"], files / "lm.txt", normalize=True, pos_map=None,
                   tag_counts=None)
    cs = load_token_classes(vocab, files / "test.conll")
    np.testing.assert_array_equal(cs.tokens, read_tokens(files / "lm.txt", vocab))
    no_eos = load_token_classes(vocab, files / "test.conll", no_eos=True)
    assert "<eos>" not in no_eos.words and len(no_eos.tokens) == len(DIRECT) - 2


def test_universal_and_ptb_classes_from_gold_tags(files, vocab):
    cs = load_token_classes(vocab, files / "test.conll", "universal")
    pos = cs.positions()
    for t, (_, tag) in enumerate(DIRECT):
        expected = {"all"} | ({PTB_UNIVERSAL[tag]} if tag else set())
        assert {n for j, n in enumerate(cs.names) if pos[t, j]} == expected
    direct = collections.Counter(PTB_UNIVERSAL[tag] for _, tag in DIRECT if tag)
    counts = cs.counts_in(cs.tokens)
    assert {n: int(counts[j]) for j, n in enumerate(cs.names) if j and counts[j]} == direct
    ptb = load_token_classes(vocab, files / "test.conll", "ptb:nouns+modals")
    assert ptb.names == ["all", "nouns", "modals"]
    assert ptb.counts_in(ptb.tokens).tolist() == [len(DIRECT), 5, 1]


def test_ambiguous_bracketed_tags_count_for_each(tmp_path):
    (tmp_path / "a.pos").write_text("[ Prices/NNS ]\nrose/VBD|VBN 1\\/2/CD ./.\n")
    cs = load_token_classes(Vocabulary(["<unk>", "<eos>", "prices", "rose", "N"]),
                            tmp_path / "a.pos")
    assert cs.words == ["prices", "rose", "N", "<eos>"]
    pos = cs.positions()
    assert {n for j, n in enumerate(cs.names) if pos[1, j]} == {"all", "VBD", "VBN"}


def test_token_classes_belong_to_their_text(files, vocab):
    cs = load_token_classes(vocab, files / "test.conll")
    with pytest.raises(ClassError, match="belong to a text"):
        cs.keys_for(cs.tokens[:-1])
    lm = RNNLM(ModelSpec(len(vocab), 3, 4, cell="lstm"))
    with pytest.raises(Exception, match="belong to a text"):
        compute_state_gradients(lm, cs.tokens[::-1].copy(), max_delay=2, classes=cs)


# --- frequency strata -----------------------------------------------------------------


def direct_ranks(text: str) -> dict[str, int]:
    counts = collections.Counter(text.split())
    order = sorted(counts, key=lambda w: (-counts[w], w))
    return {w: i + 1 for i, w in enumerate(order)}


def test_word_ranks_and_ties(files):
    ranks = word_ranks(files / "train.txt")
    assert ranks == direct_ranks(TRAIN)
    assert ranks["the"] == 1 and (ranks["it"], ranks["said"]) == (2, 3)  # tie: code point order
    assert "<eos>" not in ranks


def test_bands():
    assert parse_bands("100, 1000") == (100, 1000)
    assert band_labels((100, 1000)) == ["1-100", "101-1000", "1001+", "unranked"]
    for bad in ("", "100,50", "0,10", "a,b"):
        with pytest.raises(ClassError):
            parse_bands(bad)


def expected_band(word: str, ranks: dict[str, int]) -> str:
    r = ranks.get(word)
    return "unranked" if r is None else "1-2" if r <= 2 else "3-4" if r <= 4 else "5+"


def test_word_type_strata_against_direct_count(files, vocab, tmp_path):
    (tmp_path / "map.txt").write_text("the DT\nsaid VBD\nit PRP\nincrease NN VB\njobs NNS\n"
                                      "welcome JJ\nzyx NNP\nrockwell NNP\nmr. NNP\n")
    base = load_classes(vocab, "universal", tmp_path / "map.txt")
    ranks = direct_ranks(TRAIN)
    cs = stratify(base, word_ranks(files / "train.txt"), "2,4", vocab=vocab, source="t")
    assert cs.names[0] == "all" and len(cs.names) == 1 + 4 * (len(base.names) - 1)
    for j, name in enumerate(cs.names[1:], start=1):
        parent, band = name.split("@")
        members = {vocab.words[i] for i in np.flatnonzero(cs.membership[:, j])}
        parent_words = {vocab.words[i] for i in np.flatnonzero(
            base.membership[:, base.names.index(parent)])}
        assert members == {w for w in parent_words if expected_band(w, ranks) == band}, name
    assert cs.info["frequency"]["bands"] == [2, 4] and cs.info["unit"] == "word type"


def test_token_strata_partition_each_class(files, vocab):
    base = load_token_classes(vocab, files / "test.conll", "universal")
    cs = stratify(base, word_ranks(files / "train.txt"), (2, 4))
    ranks = direct_ranks(TRAIN)
    counts = dict(zip(cs.names, cs.counts_in(cs.tokens).tolist(), strict=True))
    direct = collections.Counter(f"{PTB_UNIVERSAL[tag]}@{expected_band(w, ranks)}"
                                 for w, tag in DIRECT if tag)
    assert {n: c for n, c in counts.items() if n != "all" and c} == direct
    # "zyx" is <unk> to the model but ranked as itself: not in the text, so unranked
    assert counts["NOUN@unranked"] == 3  # mr., zyx, rockwell
    assert counts["all"] == len(DIRECT)


# --- the command line --------------------------------------------------------------------


@pytest.fixture()
def model(files, vocab):
    torch.manual_seed(0)
    module = RNNLM(ModelSpec(len(vocab), 3, 4, cell="lstm", init_scale=0.5)).eval()
    save_checkpoint(files / "model.pt", module, vocab)
    return files / "model.pt"


def test_gradients_with_tagged_classes_and_strata(files, model):
    out = files / "g.h5"
    r = run("gradients", "--model", model, "--tagged", files / "test.conll", "--classes",
            "universal", "--frequency-bands", "2,4", "--frequency-text", files / "train.txt",
            "--max-delay", 3, "--dtype", "float64", "--no-progress", "--out", out)
    assert r.exit_code == 0, r.output
    res = load_result(out)
    assert res.metadata["class_info"]["unit"] == "token"
    assert res.metadata["class_info"]["frequency"]["strata"] == ["1-2", "3-4", "5+", "unranked"]
    # independent: every G(t, t+d) of the text, summed over the positions of each class
    # as read directly from the file
    lm = load_model(model)
    cs = load_token_classes(lm.vocab, files / "test.conll")
    tokens = cs.tokens
    G = sentence_gradients(lm, tokens, dtype=torch.float64)
    ranks = direct_ranks(TRAIN)
    for j, name in enumerate(res.classes):
        members = [t for t, (w, tag) in enumerate(DIRECT) if name == "all" or (
            tag and name == f"{PTB_UNIVERSAL[tag]}@{expected_band(w, ranks)}")]
        for d in range(3):
            ts = [t for t in members if t + d < len(tokens)]
            assert res.counts[d, j] == len(ts), (name, d)
            expected = sum((G[t, t + d] for t in ts), np.zeros_like(G[0, 0]))
            np.testing.assert_allclose(res.sums[d, j], expected, rtol=1e-10, atol=1e-12)
    r = run("inspect", out)
    assert r.exit_code == 0 and "each token's gold tag" in r.output and "NOUN@1-2" in r.output
    assert "frequency strata 1-2, 3-4, 5+, unranked" in r.output


def test_show_classes_and_ablation_with_tagged(files, model):
    r = run("show-classes", "--model", model, "--tagged", files / "test.conll")
    assert r.exit_code == 0, r.output
    rows = {line.split()[0]: line.split()[1:] for line in r.output.splitlines()[1:]}
    assert rows["NNP"][:2] == ["3", "3"] and rows["all"][1] == str(len(DIRECT))
    assert rows["VBD"][:2] == ["1", "2"]  # one word, two tokens
    out = files / "a.h5"
    r = run("ablation", "--model", model, "--tagged", files / "test.conll", "--classes",
            "ptb", "--max-distance", 2, "--out", out, "--json", files / "a.json")
    assert r.exit_code == 0, r.output
    rows = json.loads((files / "a.json").read_text())
    nouns = [row for row in rows if row["class"] == "nouns"]
    # the 5 nouns (NNP, NN, NNS tokens) all have t + 2 < N, the ablation's rule
    assert [row["count"] for row in nouns] == [5, 5]


@pytest.mark.parametrize("extra,needle", [
    (["--tagged-format", "bracketed"], "word/TAG"),
    (["--classes", "universal-brown"], "tag map"),
    (["--frequency-bands", "5,2", "--frequency-text", "{train}"], "increasing"),
    (["--frequency-bands", "5"], "go together"),
    (["--pos-map", "{train}"], "--pos-map"),
    (["--text", "{train}"], "not both"),
])
def test_bad_input_gives_one_error_line(files, model, extra, needle):
    extra = [str(a).replace("{train}", str(files / "train.txt")) for a in extra]
    r = run("gradients", "--model", model, "--tagged", files / "test.conll", "--max-delay", 2,
            "--out", files / "x.h5", *extra)
    assert needle in one_error_line(r)
    assert not (files / "x.h5").exists()


def test_a_text_is_needed(files, model):
    r = run("gradients", "--model", model, "--max-delay", 2, "--out", files / "x.h5")
    assert "--text FILE, or --tagged FILE" in one_error_line(r)


def test_wrong_files_name_themselves(files, model, tmp_path):
    plain = tmp_path / "plain.txt"
    plain.write_text("just some words\n")
    r = run("gradients", "--model", model, "--tagged", plain, "--max-delay", 2, "--out",
            files / "x.h5")
    assert str(plain) in one_error_line(r)
    conll_as_slash = tmp_path / "slash.txt"
    conll_as_slash.write_text("Pierre/NNP Vinken/NNP ,/, 61/CD\n")
    r = run("gradients", "--model", model, "--tagged", conll_as_slash, "--tagged-format",
            "conll", "--max-delay", 2, "--out", files / "x.h5")
    assert "word/TAG tokens" in one_error_line(r)
    r = run("gradients", "--model", model, "--tagged", files / "test.conll", "--tagged-format",
            "xml", "--max-delay", 2, "--out", files / "x.h5")
    assert "xml" in one_error_line(r)
    r = run("ablation", "--model", model, "--tagged", files / "test.conll", "--max-distance",
            2, "--replace", "random", "--out", files / "x.h5")
    assert "random" in one_error_line(r)
    with pytest.raises(TaggedError, match="holds no tagged text|cannot tell"):
        load_token_classes(Vocabulary(WORDS), plain)


def test_precision_check_takes_token_classes_of_its_prefix(files, vocab):
    from stategrad.gradients import EngineOptions, precision_error

    cs = load_token_classes(vocab, files / "test.conll", "universal")
    lm = RNNLM(ModelSpec(len(vocab), 3, 4, cell="lstm"))
    err = precision_error(lm, cs.tokens, EngineOptions(max_delay=2), cs, positions=5)
    assert 0 <= err["max_relative_error"] < 1e-4
    head = cs.prefix(6)
    np.testing.assert_array_equal(head.positions(), cs.positions()[:6])
