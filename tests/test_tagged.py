"""Tagged corpora: formats, PTB normalisation, POS map and tag-count files."""

from __future__ import annotations

import collections
from pathlib import Path

import pytest
from click.testing import CliRunner

from stategrad.cli import main
from stategrad.data import (
    UNK,
    TaggedError,
    Vocabulary,
    detect_format,
    iter_sentences,
    iter_tagged_sentences,
    normalize_sentence,
    oov_rate,
    prepare_tagged,
    read_class_file,
    read_pos_map,
    read_tag_counts,
    word_tags_from_counts,
    write_pos_map,
)

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

CONLL = """Confidence NN B-NP
in IN B-PP
the DT B-NP
pound NN I-NP
rose VBD B-VP
5 CD B-NP
% NN I-NP
. . O

The DT B-NP
hotel\\/casino NN I-NP
( ( O
Inc. NNP B-NP
) ) O
sold VBD B-VP
1,000 CD B-NP
shares NNS I-NP
for IN B-PP
# # B-NP
3 CD I-NP
million CD I-NP
. . O
"""

BRACKETED = """

[ Pierre/NNP Vinken/NNP ]
,/,
[ 61/CD years/NNS ]
old/JJ ,/, will/MD join/VB
[ the/DT board/NN ]
./.

[ Nekoosa/NNP ]
has/VBZ given/VBN
[ the/DT offer/NN ]

[ a/DT public/JJ cold/JJ shoulder/NN ]
./. ''/''

======================================

[ Macmillan\\/McGraw-Hill/NNP ]
was/VBD targeting/VBG|NN
[ $/$ 1\\/2/CD ]
[ the/DT 1990s/CNS ]
"""

BROWN = """#FILE ca01


\tThe/at Fulton/np-tl County/nn-tl said/vbd Friday/nr an/at investigation/nn of/in 1,000/cd votes/nns ``/`` produced/vbd ''/'' no/at evidence/nn ./.


\tIt/pps did/dod not/* find/vb it/ppo ./.
"""


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def files(tmp_path):
    return {
        "conll": write(tmp_path / "train.conll", CONLL),
        "bracketed": write(tmp_path / "sample.pos", BRACKETED),
        "brown": write(tmp_path / "brown.txt", BROWN),
    }


# --- reading ------------------------------------------------------------------------------


def test_detect_format(files):
    for fmt, path in files.items():
        assert detect_format(path) == fmt


def test_conll_sentences(files):
    sents = list(iter_tagged_sentences(files["conll"]))
    assert len(sents) == 2
    assert sents[0][:3] == [("Confidence", "NN"), ("in", "IN"), ("the", "DT")]
    assert ("hotel\\/casino", "NN") in sents[1]


def test_bracketed_sentences_join_blocks_until_sentence_end(files):
    sents = list(iter_tagged_sentences(files["bracketed"]))
    words = [[w for w, _ in s] for s in sents]
    assert words[0] == ["Pierre", "Vinken", ",", "61", "years", "old", ",", "will", "join",
                        "the", "board", "."]  # fmt: skip
    # The blank line inside "given the offer / a public cold shoulder" is not a sentence end;
    # the closing quote after the full stop belongs to the sentence.
    assert words[1] == ["Nekoosa", "has", "given", "the", "offer", "a", "public", "cold",
                        "shoulder", ".", "''"]  # fmt: skip
    # A separator ends a sentence; escaped slashes stay in the word; A|B tags are kept whole.
    assert sents[2][0] == ("Macmillan\\/McGraw-Hill", "NNP")
    assert ("targeting", "VBG|NN") in sents[2]
    assert ("1\\/2", "CD") in sents[2]
    assert len(sents) == 3


def test_brown_sentences(files):
    sents = list(iter_tagged_sentences(files["brown"]))
    assert len(sents) == 2
    assert sents[0][1] == ("Fulton", "np-tl")
    assert sents[1] == [("It", "pps"), ("did", "dod"), ("not", "*"), ("find", "vb"), ("it", "ppo"),
                        (".", ".")]  # fmt: skip


def test_explicit_format_override_and_errors(files, tmp_path):
    with pytest.raises(TaggedError, match="not 'word/TAG'.*--format"):
        list(iter_tagged_sentences(files["conll"], "brown"))
    bad = write(tmp_path / "plain.txt", "just some words here\nand more\n")
    with pytest.raises(TaggedError):
        detect_format(bad)
    with pytest.raises(TaggedError, match="not found"):
        list(iter_tagged_sentences(tmp_path / "missing.pos"))
    latin = tmp_path / "latin.conll"
    latin.write_bytes("café NN\n".encode("latin-1"))
    with pytest.raises(TaggedError, match="encoding"):
        list(iter_tagged_sentences(latin, "conll"))
    assert list(iter_tagged_sentences(latin, "conll", encoding="latin-1")) == [[("café", "NN")]]


def test_empty_elements_always_dropped(tmp_path):
    f = write(tmp_path / "t.conll", "He PRP\n*T*-1 -NONE-\nleft VBD\n")
    assert list(iter_tagged_sentences(f)) == [[("He", "PRP"), ("left", "VBD")]]


# --- normalisation ------------------------------------------------------------------------


def test_ptb_normalisation():
    sentence = [("The", "DT"), ("U.S.", "NNP"), ("rose", "VBD"), ("5", "CD"), ("%", "NN"),
                (",", ","), ("``", "``"), ("1\\/2", "CD"), ("1990s", "CD"), ("30-year", "JJ"),
                ("$", "$"), ("&", "CC"), ("#", "#"), ("(", "("), ("-LRB-", "-LRB-"),
                ("five", "CD"), (".", ".")]  # fmt: skip
    got = [w for w, _ in normalize_sentence(sentence)]
    assert got == ["the", "u.s.", "rose", "N", "N", "N", "1990s", "30-year", "$", "&", "#", "five"]


def test_brown_normalisation():
    sentence = [("The", "at"), ("1,000", "cd"), ("``", "``"), ("not", "*"), ("--", "--"),
                ("1st", "od"), (".", ".-hl"), ("Mr.", "np-tl")]  # fmt: skip
    got = [w for w, _ in normalize_sentence(sentence, "brown")]
    assert got == ["the", "N", "not", "1st", "mr."]


# --- preparing ----------------------------------------------------------------------------


def test_prepare_two_formats_into_one_text(files, tmp_path):
    out = tmp_path / "out" / "train.txt"
    prepared = prepare_tagged([files["conll"], files["bracketed"]], out, normalize=True)
    lines = out.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "confidence in the pound rose N N"
    assert lines[1] == "the hotel\\/casino inc. sold N shares for # N million"
    assert lines[2] == "pierre vinken N years old will join the board"
    assert len(lines) == prepared.sentences == 5
    assert prepared.tokens == sum(len(line.split()) for line in lines)
    # The POS map: words of the text with their tags, readable by our reader.
    word_tags = read_pos_map(prepared.pos_map_path)
    assert prepared.pos_map_path == tmp_path / "out" / "train.pos-map.txt"
    assert word_tags["N"] == ["CD", "NN"]  # five CD tokens, one "%" tagged NN
    assert set(word_tags["targeting"]) == {"VBG", "NN"}
    assert set(word_tags) == {w for line in lines for w in line.split()}
    # Tag counts: (word, tag, count) rows that add up to the text.
    counts = read_tag_counts(prepared.tag_counts_path)
    assert sum(counts.values()) == prepared.tokens
    assert counts["the", "DT"] == 5
    # The text reads as LM input with the vocabulary the summary reports.
    assert Vocabulary.build(out) == prepared.vocabulary


def test_prepare_vocab_cap(files, tmp_path):
    out = tmp_path / "train.txt"
    prepared = prepare_tagged([files["conll"], files["bracketed"]], out, normalize=True,
                              vocab_size=6)  # fmt: skip
    words = collections.Counter(w for s in iter_sentences(out) for w in s)
    # exactly 6 distinct words in the text, <unk> and <eos> included
    assert len(words) == 6 and UNK in words and "<eos>" in words
    vocab = Vocabulary.build(out)
    assert len(vocab) == 7 and vocab.words[-1] == "<bos>"
    assert prepared.unk_tokens == words[UNK]
    # most frequent words survive
    assert {"N", "the"} <= set(words)
    # <unk> has no tags unless asked
    assert UNK not in read_pos_map(prepared.pos_map_path)
    assert read_pos_map_raw(prepared.pos_map_path)[UNK] == "not in list"
    again = prepare_tagged([files["conll"], files["bracketed"]], out, normalize=True,
                           vocab_size=6, unk_tags=True)  # fmt: skip
    assert UNK in read_pos_map(again.pos_map_path)


def read_pos_map_raw(path):
    return dict(line.rstrip("\n").split(" ", 1) for line in open(path, encoding="utf-8"))


def test_prepare_without_normalisation_keeps_text(files, tmp_path):
    out = tmp_path / "raw.txt"
    prepare_tagged([files["brown"]], out)
    lines = out.read_text(encoding="utf-8").splitlines()
    assert lines[1] == "It did not find it ."


def test_mixed_tagsets_rejected(files, tmp_path):
    with pytest.raises(TaggedError, match="mix tag sets"):
        prepare_tagged([files["conll"], files["brown"]], tmp_path / "x.txt")


def test_word_tags_thresholds():
    counts = {("the", "DT"): 990, ("the", "NNP"): 10, ("rose", "VBD"): 3, ("rose", "NN"): 2,
              ("x", "VBG|NN"): 1}  # fmt: skip
    assert word_tags_from_counts(counts)["the"] == ["DT", "NNP"]
    strict = word_tags_from_counts(counts, min_fraction=0.05)
    assert strict["the"] == ["DT"] and strict["rose"] == ["VBD", "NN"]
    assert word_tags_from_counts(counts, min_count=3)["rose"] == ["VBD"]
    assert word_tags_from_counts(counts)["x"] == ["NN", "VBG"]


def test_oov_rate(tmp_path):
    text = write(tmp_path / "valid.txt", "a b <unk> c\nd a\n")
    rate, oov, total = oov_rate(text, ["a", "b", "<eos>", UNK])
    assert (oov, total) == (3, 6) and rate == pytest.approx(0.5)


# --- POS map and class files in the original's format -------------------------------------


def test_read_pos_map_original_decorations(tmp_path):
    path = write(
        tmp_path / "ptb_words+pos.txt",
        "the ['DT']\nrose ['VBD', 'NN']\nlead [VB, NN]\nset VBD|VBN NN\n"
        "<unk> not in list\nbanks NNS\nbanks VBZ\n\n",
    )
    got = read_pos_map(path)
    assert got == {
        "the": ["DT"],
        "rose": ["VBD", "NN"],
        "lead": ["VB", "NN"],
        "set": ["VBD", "VBN", "NN"],
        "banks": ["NNS", "VBZ"],
    }


def original_read_pos_tags(path):
    """The original's reader (utils.read_pos_tags), restated, to check compatibility."""
    pos_tags = {}
    for line in open(path):
        parts = line.strip().split()
        if " ".join(parts[1:]) == "not in list":
            continue
        tags = []
        for tag in parts[1:]:
            tag = tag.lstrip("[").rstrip(",").rstrip("]").strip("''")  # noqa: B005 (the original's code)
            tags.extend(tag.split("|") if "|" in tag else [tag])
        pos_tags[parts[0]] = tags
    return pos_tags


def test_written_map_reads_back_in_the_original_reader(tmp_path):
    word_tags = {"the": ["DT"], "rose": ["VBD", "NN"], "its": ["PRP$"], "<unk>": []}
    path = tmp_path / "map.txt"
    write_pos_map(path, word_tags)
    expected = {w: t for w, t in word_tags.items() if t}
    assert original_read_pos_tags(path) == expected
    assert read_pos_map(path) == expected


def test_pos_map_errors(tmp_path):
    with pytest.raises(TaggedError, match="not found"):
        read_pos_map(tmp_path / "none.txt")
    with pytest.raises(TaggedError, match="has no tags"):
        read_pos_map(write(tmp_path / "m.txt", "word\n"))


def test_class_file(tmp_path):
    path = write(tmp_path / "nouns", "NN\nNNS\n\nNNP\nNNPS\nNN\n")
    assert read_class_file(path) == ["NN", "NNS", "NNP", "NNPS"]
    with pytest.raises(TaggedError, match="empty"):
        read_class_file(write(tmp_path / "empty", "\n"))


# --- CLI ----------------------------------------------------------------------------------


def test_cli_prepare_tagged(files, tmp_path):
    out = tmp_path / "train.txt"
    check = write(tmp_path / "valid.txt", "the board rose\nzzz\n")
    result = CliRunner().invoke(
        main,
        ["prepare-tagged", str(files["conll"]), str(files["bracketed"]), "-o", str(out),
         "--normalize", "--check", str(check), "--pos-map", str(tmp_path / "pm.txt")],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "conll format" in result.output and "bracketed format" in result.output
    assert "1 of 4 tokens (25.00%) outside the vocabulary" in result.output
    assert read_pos_map(tmp_path / "pm.txt")["board"] == ["NN"]
    bad = CliRunner().invoke(main, ["prepare-tagged", str(files["conll"]), "-o", str(out),
                                    "--format", "brown"])  # fmt: skip
    assert bad.exit_code != 0 and "word/TAG" in bad.output


# --- real data ----------------------------------------------------------------------------


@pytest.mark.shared_data
def test_wsj_text_covers_ptb_valid(tmp_path):
    needed = [DATA / "wsj-pos" / "conll2000.train.txt", DATA / "wsj-pos" / "treebank-sample.pos",
              DATA / "ptb" / "ptb.valid.txt"]  # fmt: skip
    if not all(p.is_file() for p in needed):
        pytest.skip(f"shared data not found under {DATA} (wsj-pos and ptb folders)")
    prepared = prepare_tagged(needed[:2], tmp_path / "wsj.txt", normalize=True)
    # treebank-sample.pos holds wsj_0001..0199 (NLTK counts 3,914 sentences there)
    assert 16_000 > prepared.sentences > 12_000
    valid_words = [w for s in iter_sentences(needed[2], no_eos=True) for w in s if w != UNK]
    known = set(prepared.vocabulary.words)
    oov = sum(w not in known for w in valid_words) / len(valid_words)
    assert oov < 0.02  # about 1.2% of PTB valid's (non-<unk>) tokens
