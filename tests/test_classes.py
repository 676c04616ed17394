"""Word classes: built-in sets, class files, word lists, class maps, the CLI options."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from stategrad.classes import (
    ALL,
    PTB_CLASSES,
    ClassError,
    ClassSet,
    builtin_class_tags,
    combine,
    from_class_files,
    load_classes,
    missing_from_map,
    universal_classes,
    universal_mapping,
)
from stategrad.cli import main
from stategrad.corpus import Vocabulary

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

WORDS = ("the", "rose", "dog", "runs", "quickly", "red", "can", "N", "<unk>", "<eos>", "<bos>")
WORD_TAGS = {
    "the": ["DT"],
    "rose": ["VBD", "NN"],
    "dog": ["NN"],
    "runs": ["VBZ", "NNS"],
    "quickly": ["RB"],
    "red": ["JJ"],
    "can": ["MD", "NN"],
    "N": ["CD"],
}


@pytest.fixture
def vocab():
    return Vocabulary(WORDS)


def members(cs: ClassSet, name: str) -> set[str]:
    j = cs.names.index(name)
    return {WORDS[i] for i in np.nonzero(cs.membership[:, j])[0]}


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def write_map(path: Path) -> Path:
    return write(path, "".join(f"{w} {' '.join(t)}\n" for w, t in WORD_TAGS.items()))


def test_builtin_ptb(vocab, tmp_path):
    cs = load_classes(vocab, "ptb", write_map(tmp_path / "map.txt"))
    assert cs.names == [ALL, *PTB_CLASSES]
    assert members(cs, "nouns") == {"rose", "dog", "runs", "can"}  # multi-label rule
    assert members(cs, "verbs") == {"rose", "runs"}
    assert members(cs, "modals") == {"can"}
    assert members(cs, "numbers") == {"N"}
    assert members(cs, ALL) == set(WORDS)
    # Independent check of the rule: a word is in c iff its tags meet c's tags.
    for name in cs.names[1:]:
        expected = {w for w, t in WORD_TAGS.items() if set(t) & set(PTB_CLASSES[name])}
        assert members(cs, name) == expected, name


def test_builtin_subset_and_errors(vocab):
    cs = load_classes(vocab, "ptb:nouns+Verbs", WORD_TAGS)
    assert cs.names == [ALL, "nouns", "verbs"]
    with pytest.raises(ClassError, match="no class adjectivez"):
        load_classes(vocab, "ptb:adjectivez", WORD_TAGS)
    with pytest.raises(ClassError, match="--pos-map"):
        load_classes(vocab, "ptb")
    with pytest.raises(ClassError, match="neither a built-in"):
        load_classes(vocab, "nonsense", WORD_TAGS)


def test_universal_classes_from_shipped_tables(vocab):
    mapping = universal_mapping("ptb")
    assert mapping["NNS"] == "NOUN" and mapping["MD"] == "VERB" and mapping["TO"] == "PRT"
    assert len(universal_mapping("brown")) > 400
    cs = load_classes(vocab, "universal", WORD_TAGS)
    assert cs.names[1:] == ["NOUN", "VERB", "ADJ", "ADV", "PRON", "DET", "ADP", "NUM", "CONJ",
                            "PRT", "PUNCT", "X"]  # fmt: skip
    assert members(cs, "VERB") == {"rose", "runs", "can"}  # MD is a VERB in the universal set
    for name, tags in universal_classes("ptb").items():
        expected = {w for w, t in WORD_TAGS.items() if set(t) & set(tags)}
        assert members(cs, name) == expected


def test_universal_tables_match_shared_copy():
    for tagset, name in (("ptb", "en-ptb.map"), ("brown", "en-brown.map")):
        shared = DATA / "tagsets" / name
        if not shared.is_file():
            pytest.skip(f"{shared} not found (../shared/data absent)")
        rows = dict(line.split("\t") for line in shared.read_text().splitlines() if line)
        assert universal_mapping(tagset) == rows


def test_universal_brown_tags_detected_by_case():
    vocab = Vocabulary(("the", "jury", "said", "<unk>"))
    word_tags = {"the": ["at"], "jury": ["nn-tl"], "said": ["vbd"]}
    cs = load_classes(vocab, "universal", word_tags)
    assert cs.membership[1, cs.names.index("NOUN")]
    assert cs.membership[0, cs.names.index("DET")]
    assert cs.membership[2, cs.names.index("VERB")]
    table, fold = builtin_class_tags("universal-brown")
    assert fold and "NN-TL" in table["NOUN"]


def test_class_files_original_rule(vocab, tmp_path):
    nouns = write(tmp_path / "nouns", "NN\nNNS\nNNP\nNNPS\n")
    verbs = write(tmp_path / "verbs.txt", "VB VBD VBG VBN VBP VBZ\n")
    cs = load_classes(vocab, [str(nouns), str(verbs)], WORD_TAGS)
    assert cs.names == [ALL, "nouns", "verbs"]
    assert members(cs, "nouns") == {"rose", "dog", "runs", "can"}
    assert cs.definitions["nouns"]["tags"] == sorted(["NN", "NNS", "NNP", "NNPS"])
    direct = from_class_files(vocab, [nouns], WORD_TAGS)
    np.testing.assert_array_equal(direct.membership, cs.membership[:, :2])
    # a built-in set and a class file together; a name clash is an error
    both = load_classes(vocab, f"ptb:adjectives,{verbs}", WORD_TAGS)
    assert both.names == [ALL, "adjectives", "verbs"]
    with pytest.raises(ClassError, match="defined twice"):
        load_classes(vocab, ["ptb", str(verbs)], WORD_TAGS)


def test_word_lists_and_class_map(vocab, tmp_path):
    animals = write(tmp_path / "animals.txt", "dog\ncat\n")
    colours = write(tmp_path / "colours.txt", "red rose\n")
    cmap = write(
        tmp_path / "map.tsv", "dog\tliving\nrose\tliving\tplant\n# comment\n\nthe\tfunction\n"
    )
    cs = load_classes(vocab, class_words=[animals, colours], class_map=cmap)
    assert cs.names == [ALL, "animals", "colours", "living", "plant", "function"]
    assert members(cs, "animals") == {"dog"}  # cat is not in the vocabulary
    assert members(cs, "colours") == {"red", "rose"}
    assert members(cs, "living") == {"dog", "rose"}
    assert members(cs, "plant") == {"rose"}
    with pytest.raises(ClassError, match="expected 'word<TAB>class'"):
        load_classes(vocab, class_map=write(tmp_path / "bad.tsv", "lonely\n"))


def test_no_classes_is_all_only(vocab):
    cs = load_classes(vocab)
    assert cs.names == [ALL] and cs.membership.shape == (len(WORDS), 1)


def test_combine_checks_vocab_size(vocab):
    a = ClassSet.only_all(3)
    b = ClassSet.only_all(4)
    with pytest.raises(ClassError, match="different vocabularies"):
        combine([a, b])


def test_missing_from_map(vocab):
    tokens = np.array([vocab[w] for w in ["the", "<unk>", "<unk>", "dog", "<eos>", "zzz"]
                       if w in vocab], dtype=np.int32)  # fmt: skip
    assert missing_from_map(vocab, WORD_TAGS, tokens) == [("<unk>", 2)]
    everywhere = missing_from_map(vocab, WORD_TAGS)
    assert [w for w, _ in everywhere] == ["<unk>"]
    assert [w for w, _ in missing_from_map(vocab, WORD_TAGS, ignore=())] == [
        "<unk>",
        "<eos>",
        "<bos>",
    ]


def test_cli_show_classes(tmp_path):
    train = write(tmp_path / "train.txt", "the dog runs\nthe rose\n")
    pos_map = write_map(tmp_path / "map.txt")
    result = CliRunner().invoke(
        main,
        ["show-classes", "--train-text", str(train), "--text", str(train),
         "--classes", "ptb:nouns+verbs", "--pos-map", str(pos_map)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = {line.split()[0]: line.split() for line in result.output.splitlines() if line.strip()}
    assert lines["nouns"][1:3] == ["3", "3"]  # dog, runs, rose: 3 words, 3 tokens
    assert lines["verbs"][1:3] == ["2", "2"]
    assert "<eos>" not in result.output.split("missing")[-1]
    bad = CliRunner().invoke(main, ["show-classes", "--train-text", str(train), "--classes", "ptb"])
    assert bad.exit_code != 0 and "--pos-map" in bad.output
