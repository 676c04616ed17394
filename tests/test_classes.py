"""Word classes: built-in sets, class files, word lists, class maps, the CLI options."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from stategrad.cli import main
from stategrad.data import (
    ALL,
    PTB_CLASSES,
    PTB_UNIVERSAL,
    UNIVERSAL_TAGS,
    ClassError,
    ClassSet,
    Vocabulary,
    builtin_class_tags,
    combine,
    from_class_files,
    load_classes,
    missing_from_map,
    read_universal_map,
    universal_classes,
    universal_mapping,
)

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
PTB_MAP = DATA / "tagsets" / "en-ptb.map"
BROWN_MAP = DATA / "tagsets" / "en-brown.map"

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


def test_universal_classes_from_builtin_ptb_table(vocab):
    mapping = universal_mapping("ptb")
    assert mapping["NNS"] == "NOUN" and mapping["MD"] == "VERB" and mapping["TO"] == "PRT"
    assert mapping["EX"] == "DET" and mapping["WRB"] == "ADV" and mapping["$"] == "."
    assert set(mapping.values()) == set(UNIVERSAL_TAGS)
    cs = load_classes(vocab, "universal", WORD_TAGS)
    assert cs.names[1:] == ["NOUN", "VERB", "ADJ", "ADV", "PRON", "DET", "ADP", "NUM", "CONJ",
                            "PRT", "PUNCT", "X"]  # fmt: skip
    assert members(cs, "VERB") == {"rose", "runs", "can"}  # MD is a VERB in the universal set
    for name, tags in universal_classes("ptb").items():
        expected = {w for w, t in WORD_TAGS.items() if set(t) & set(tags)}
        assert members(cs, name) == expected


def test_all_45_ptb_tags_have_a_universal_tag():
    # The 45 tags of the Penn Treebank guidelines (Santorini 1990), punctuation as the
    # WSJ files write it; each must have exactly one universal tag.
    ptb45 = """CC CD DT EX FW IN JJ JJR JJS LS MD NN NNS NNP NNPS PDT POS PRP PRP$ RB RBR RBS
        RP SYM TO UH VB VBD VBG VBN VBP VBZ WDT WP WP$ WRB # $ . , : `` '' -LRB- -RRB-""".split()
    assert len(ptb45) == 45
    assert not [t for t in ptb45 if t not in PTB_UNIVERSAL]


@pytest.mark.skipif(not PTB_MAP.is_file(), reason=f"{PTB_MAP} not found (../shared/data absent)")
def test_builtin_ptb_table_agrees_with_published_map():
    published = read_universal_map(PTB_MAP)
    wrong = {
        t: (PTB_UNIVERSAL.get(t), u) for t, u in published.items() if PTB_UNIVERSAL.get(t) != u
    }
    assert not wrong, f"built-in table differs from {PTB_MAP} (ours, theirs): {wrong}"
    assert set(PTB_UNIVERSAL) <= set(published)


def test_brown_tags_need_a_tag_map(vocab):
    brown_vocab = Vocabulary(("the", "jury", "said", "<unk>"))
    word_tags = {"the": ["at"], "jury": ["nn-tl"], "said": ["vbd"]}
    for spec in ("universal", "universal-brown"):  # detected by tag case, or named
        with pytest.raises(ClassError, match="--tag-map"):
            load_classes(brown_vocab, spec, word_tags)
    with pytest.raises(ClassError, match="tag_map"):
        universal_mapping("brown")
    # a tag map without a universal set asked for is a mistake, not silently ignored
    with pytest.raises(ClassError, match="only used by the universal"):
        load_classes(vocab, "ptb", WORD_TAGS, tag_map={"NN": "NOUN"})


def test_tag_map_file_for_brown_tags(tmp_path):
    vocab = Vocabulary(("the", "jury", "said", "<unk>"))
    word_tags = {"the": ["at"], "jury": ["nn-tl"], "said": ["vbd"]}
    tag_map = write(tmp_path / "brown.map", "AT\tDET\nNN-TL\tNOUN\nVBD\tVERB\n,\tPUNCT\n")
    cs = load_classes(vocab, "universal", word_tags, tag_map=tag_map)  # case-insensitive
    assert cs.membership[1, cs.names.index("NOUN")]
    assert cs.membership[0, cs.names.index("DET")]
    assert cs.membership[2, cs.names.index("VERB")]
    assert cs.membership[:, 1:].sum() == 3  # nothing else
    assert cs.definitions["NOUN"]["tag_map"] == str(tag_map)
    table, fold = builtin_class_tags("universal-brown", tag_map=tag_map)
    assert fold and "NN-TL" in table["NOUN"] and "," in table["PUNCT"]
    # a map given for PTB tags replaces the built-in table
    own = load_classes(Vocabulary(WORDS), "universal:NOUN", WORD_TAGS, tag_map={"NN": "NOUN"})
    assert members(own, "NOUN") == {"rose", "dog", "can"}  # NNS is not in this map


def test_tag_map_file_errors(tmp_path):
    with pytest.raises(ClassError, match="bad.map:2: 'NOUNS' is not a universal tag"):
        read_universal_map(write(tmp_path / "bad.map", "NN\tNOUN\nNNS\tNOUNS\n"))
    with pytest.raises(ClassError, match="two.map:1: expected 'FINE<TAB>UNIVERSAL'"):
        read_universal_map(write(tmp_path / "two.map", "NN\tNOUN\tX\n"))
    with pytest.raises(ClassError, match="earlier line"):
        read_universal_map(write(tmp_path / "dup.map", "NN\tNOUN\nNN\tVERB\n"))
    with pytest.raises(ClassError, match="not found"):
        read_universal_map(tmp_path / "absent.map")
    # "#" is the PTB pound-sign tag, not a comment
    assert read_universal_map(write(tmp_path / "p.map", "#\t.\n# a note\n$\t.\n")) == {
        "#": ".",
        "$": ".",
    }


@pytest.mark.skipif(
    not BROWN_MAP.is_file(), reason=f"{BROWN_MAP} not found (../shared/data absent)"
)
def test_published_brown_map_gives_universal_classes():
    mapping = read_universal_map(BROWN_MAP)
    assert len(mapping) > 400 and set(mapping.values()) == set(UNIVERSAL_TAGS)
    vocab = Vocabulary(("the", "jury", "said", "he", "<unk>"))
    # lower case as in the Brown corpus files; the map has upper case tags
    word_tags = {"the": ["at"], "jury": ["nn-tl"], "said": ["vbd"], "he": ["pps"]}
    cs = load_classes(vocab, "universal", word_tags, tag_map=BROWN_MAP)
    expected = {"the": "DET", "jury": "NOUN", "said": "VERB", "he": "PRON"}
    for word, tag in expected.items():
        assert mapping[word_tags[word][0].upper()] == tag
        assert cs.names[1:][cs.membership[vocab[word], 1:].argmax()] == tag


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


def test_cli_tag_map_for_brown_tags(tmp_path):
    train = write(tmp_path / "train.txt", "the jury said\n")
    pos_map = write(tmp_path / "brown.pos", "the at\njury nn-tl\nsaid vbd\n")
    args = ["show-classes", "--train-text", str(train), "--classes", "universal-brown",
            "--pos-map", str(pos_map)]  # fmt: skip
    missing = CliRunner().invoke(main, args)
    assert missing.exit_code != 0 and "--tag-map" in missing.output
    tag_map = write(tmp_path / "brown.map", "AT\tDET\nNN-TL\tNOUN\nVBD\tVERB\n")
    result = CliRunner().invoke(main, [*args, "--tag-map", str(tag_map)])
    assert result.exit_code == 0, result.output
    lines = {line.split()[0]: line.split() for line in result.output.splitlines() if line.strip()}
    assert lines["NOUN"][1] == "1" and lines["DET"][1] == "1" and lines["ADJ"][1] == "0"
