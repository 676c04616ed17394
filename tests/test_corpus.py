"""The corpus reader against the original code's rules, on small hand-made files."""

from __future__ import annotations

import collections

import numpy as np
import pytest

from stategrad.data import (
    BOS,
    EOS,
    UNK,
    CorpusError,
    Vocabulary,
    batchify,
    iter_batches,
    iter_sentences,
    num_batches,
    read_tokens,
)


def write(path, text: str, encoding: str = "utf-8"):
    path.write_text(text, encoding=encoding)
    return path


# --- reading ------------------------------------------------------------------------------


def test_eos_per_line_and_unk_rewrite(tmp_path):
    f = write(tmp_path / "train.txt", "a b <UNK>\nc  a\n\n")
    assert list(iter_sentences(f)) == [["a", "b", UNK, EOS], ["c", "a", EOS], [EOS]]


def test_no_eos(tmp_path):
    f = write(tmp_path / "train.txt", "a b\n\nc\n")
    assert list(iter_sentences(f, no_eos=True)) == [["a", "b"], ["c"]]


def test_wiki_full_stop_ends_sentence(tmp_path):
    d = tmp_path / "WikiText-2"
    d.mkdir()
    f = write(d / "wiki.valid.txt", " = Title = \n a b . c d . \n")
    got = list(iter_sentences(f))
    # As the original: " . " -> " <eos> " after each newline became " <eos> ".
    assert got == [["=", "Title", "=", EOS], ["a", "b", EOS, "c", "d", EOS, EOS]]
    # A path without WikiText keeps the full stop (test names avoid the word: tmp_path holds it).
    g = write(tmp_path / "plain.txt", "a b . c\n")
    assert list(iter_sentences(g)) == [["a", "b", ".", "c", EOS]]
    # Explicit override beats the path rule.
    assert list(iter_sentences(g, wikitext=True)) == [["a", "b", EOS, "c", EOS]]


def test_wiki_line_final_full_stop_without_trailing_space(tmp_path):
    # The original's whole-file replace also catches " ." right before a newline.
    f = write(tmp_path / "wikitext.txt", "a b .\n. c\n")
    assert list(iter_sentences(f)) == [["a", "b", EOS, EOS], [EOS, "c", EOS]]


def test_encoding_option(tmp_path):
    f = write(tmp_path / "latin.txt", "café déjà\n", encoding="latin-1")
    with pytest.raises(CorpusError, match="not valid utf-8.*encoding"):
        list(iter_sentences(f))
    assert list(iter_sentences(f, encoding="latin-1")) == [["café", "déjà", EOS]]
    vocab = Vocabulary.build(f, encoding="latin-1")
    assert "café" in vocab


def test_undecodable_bytes_name_the_file(tmp_path):
    f = tmp_path / "bad.txt"
    f.write_bytes(b"ok words\nbad \xff\xfe bytes\n")
    vocab = Vocabulary(("ok", UNK, BOS))
    with pytest.raises(CorpusError) as info:
        read_tokens(f, vocab)
    assert "bad.txt" in str(info.value) and "byte" in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(CorpusError, match="not found"):
        list(iter_sentences(tmp_path / "nope.txt"))


# --- vocabulary ---------------------------------------------------------------------------


def test_vocabulary_order_matches_original(tmp_path):
    f = write(tmp_path / "train.txt", "b a c\na b\nd a\n")
    vocab = Vocabulary.build(f)
    # counts: a 3, <eos> 3, b 2, c 1, d 1 -> falling count, ties by the word itself
    assert vocab.words == ("<eos>", "a", "b", "c", "d", UNK, BOS)
    # Independent reimplementation of the original's rule.
    counts = collections.Counter(w for s in iter_sentences(f) for w in s)
    expected = [w for w, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]
    expected += [UNK, BOS]
    assert list(vocab.words) == expected


def test_unk_kept_in_frequency_position_and_bos_last(tmp_path):
    f = write(tmp_path / "train.txt", "<unk> <unk> <UNK> x\n")
    vocab = Vocabulary.build(f)
    assert vocab.words == (UNK, EOS, "x", BOS)
    assert vocab.unk_id == 0


def test_unknown_words_map_to_unk(tmp_path):
    train = write(tmp_path / "train.txt", "a b\n")
    test = write(tmp_path / "test.txt", "a zzz b\n")
    vocab = Vocabulary.build(train)
    ids = read_tokens(test, vocab)
    assert vocab.decode(ids) == ["a", UNK, "b", EOS]


def test_vocab_size_cap(tmp_path):
    f = write(tmp_path / "train.txt", "a a a a b b b c c d\n")
    vocab = Vocabulary.build(f, max_size=4)
    # 4 entries in all: the two most frequent words, then <unk>, then <bos>
    assert vocab.words == ("a", "b", UNK, BOS)
    ids = read_tokens(f, vocab)
    assert vocab.decode(ids) == ["a"] * 4 + ["b"] * 3 + [UNK] * 4  # c c d <eos>
    # A cap larger than the vocabulary changes nothing.
    assert Vocabulary.build(f, max_size=100) == Vocabulary.build(f)
    with pytest.raises(CorpusError, match="at least 2"):
        Vocabulary.build(f, max_size=1)


def test_vocab_cap_keeps_frequent_unk_in_place(tmp_path):
    f = write(tmp_path / "train.txt", "<unk> <unk> <unk> a a b\n")
    vocab = Vocabulary.build(f, max_size=3)
    assert vocab.words == (UNK, "a", BOS)


def test_vocab_file_round_trip(tmp_path):
    f = write(tmp_path / "train.txt", "the cat sat on the mat\n")
    vocab = Vocabulary.build(f)
    path = tmp_path / "vocab.dict"
    vocab.save(path)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "the\t0" and lines[-1] == f"{BOS}\t{len(vocab) - 1}"
    assert Vocabulary.load(path) == vocab


def test_vocab_file_any_order_and_plain_list(tmp_path):
    tabbed = write(tmp_path / "v.dict", "b\t1\na\t0\n<unk>\t2\n")
    assert Vocabulary.load(tabbed).words == ("a", "b", UNK)
    plain = write(tmp_path / "v.txt", "x\ny\n\nz\n")
    assert Vocabulary.load(plain).words == ("x", "y", "z")


@pytest.mark.parametrize(
    "text, message",
    [
        ("a\t0\nb\t2\n", "without gaps"),
        ("a\t0\nb\n", "mixes"),
        ("a\tzero\n", "expected 'word<TAB>id'"),
        ("a\t0\na\t1\n", "duplicate"),
    ],
)
def test_bad_vocab_files(tmp_path, text, message):
    path = write(tmp_path / "v.dict", text)
    with pytest.raises(CorpusError, match=message):
        Vocabulary.load(path)


def test_tokens_are_int32(tmp_path):
    f = write(tmp_path / "train.txt", "a b\nc\n")
    vocab = Vocabulary.build(f)
    ids = read_tokens(f, vocab)
    assert ids.dtype == np.int32 and ids.ndim == 1
    assert vocab.decode(ids) == ["a", "b", EOS, "c", EOS]


def test_read_tokens_long_file_crosses_chunks(tmp_path):
    words = [f"w{i % 7}" for i in range(70_001)]
    f = write(tmp_path / "train.txt", " ".join(words) + "\n")
    vocab = Vocabulary.build(f)
    ids = read_tokens(f, vocab)
    assert len(ids) == len(words) + 1
    assert vocab.decode(ids[:3]) == words[:3] and vocab.decode(ids[-2:]) == [words[-1], EOS]


# --- batching -----------------------------------------------------------------------------


def original_batches(data, batch_size, num_steps):
    """The original's init_batching/get_batch, restated on a plain list."""
    batch_len = len(data) // batch_size
    num_samples = batch_len // num_steps - 1
    array = np.array(data[: batch_size * batch_len]).reshape(batch_size, batch_len)
    out = []
    for it in range(num_samples):
        x = array[:, it * num_steps : it * num_steps + num_steps]
        y = array[:, it * num_steps + 1 : it * num_steps + num_steps + 1]
        out.append((x, y))
    return out


@pytest.mark.parametrize("n, batch_size, num_steps", [(103, 4, 5), (50, 1, 7), (64, 2, 8)])
def test_batching_matches_original(n, batch_size, num_steps):
    tokens = np.arange(n, dtype=np.int32)
    got = list(iter_batches(tokens, batch_size, num_steps))
    want = original_batches(list(range(n)), batch_size, num_steps)
    assert len(got) == len(want) == (n // batch_size) // num_steps - 1
    for (_, x, y), (wx, wy) in zip(got, want, strict=True):
        np.testing.assert_array_equal(x, wx)
        np.testing.assert_array_equal(y, wy)
        assert x.shape == (batch_size, num_steps)


def test_batch_rows_and_shift():
    tokens = np.arange(23, dtype=np.int32)
    data = batchify(tokens, 3)
    assert data.shape == (3, 7)  # rows of len // batch_size, tail dropped
    np.testing.assert_array_equal(data[1], np.arange(7, 14))
    batches = list(iter_batches(tokens, 3, 3))
    assert num_batches(7, 3) == 1 and len(batches) == 1
    _, x, y = batches[0]
    np.testing.assert_array_equal(y[:, :-1], x[:, 1:])  # targets shifted by one
    np.testing.assert_array_equal(y[:, -1], data[:, 3])


def test_consecutive_slices_and_resume():
    tokens = np.arange(200, dtype=np.int32)
    batches = list(iter_batches(tokens, 2, 10))
    for (_, x0, _), (_, x1, _) in zip(batches[:-1], batches[1:], strict=True):
        # the next batch continues every row where the previous stopped
        np.testing.assert_array_equal(x1[:, 0], x0[:, -1] + 1)
    resumed = list(iter_batches(tokens, 2, 10, start=3))
    assert [i for i, _, _ in resumed] == list(range(3, len(batches)))
    np.testing.assert_array_equal(resumed[0][1], batches[3][1])


def test_too_short_for_batching():
    with pytest.raises(CorpusError, match="cannot fill"):
        batchify(np.arange(3, dtype=np.int32), 4)
    with pytest.raises(CorpusError, match="too short"):
        list(iter_batches(np.arange(10, dtype=np.int32), 2, 5))
    with pytest.raises(CorpusError, match="positive"):
        batchify(np.arange(3, dtype=np.int32), 0)
