"""word2vec conversion: text and binary files, alignment by word, loading for training."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from stategrad.cli import main
from stategrad.data import (
    EmbeddingError,
    Vocabulary,
    align_embeddings,
    iter_word2vec,
    load_embedding_matrix,
    load_embeddings,
)

# word2vec order differs from the LM's id order on purpose.
VECTORS = {
    "dog": [0.5, -1.25, 2.0],
    "the": [1.0, 2.0, 3.0],
    "Cat": [-0.1, 0.2, 0.3],
    "café": [9.0, 8.0, 7.0],
    "runs": [0.0, 0.125, -4.0],
}
VOCAB = Vocabulary(("the", "cat", "runs", "dog", "café", "<unk>", "<eos>", "<bos>"))


def write_text(path, vectors=VECTORS, header=True):
    lines = [f"{len(vectors)} 3"] if header else []
    lines += [w + " " + " ".join(repr(v) for v in vec) for w, vec in vectors.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_binary(path, vectors=VECTORS, newline=True):
    with open(path, "wb") as handle:
        handle.write(f"{len(vectors)} 3\n".encode())
        for word, vec in vectors.items():
            handle.write(word.encode("utf-8") + b" ")
            handle.write(np.asarray(vec, dtype="<f4").tobytes())
            if newline:
                handle.write(b"\n")
    return path


@pytest.mark.parametrize("kind", ["text", "headerless", "binary", "binary-no-newline"])
def test_read_formats(tmp_path, kind):
    if kind == "text":
        path = write_text(tmp_path / "v.txt")
    elif kind == "headerless":
        path = write_text(tmp_path / "v.txt", header=False)
    else:
        path = write_binary(tmp_path / "v.bin", newline=kind == "binary")
    got = dict(iter_word2vec(path))
    assert list(got) == list(VECTORS)
    for word, vec in VECTORS.items():
        assert got[word].dtype == np.float32
        np.testing.assert_array_equal(got[word], np.asarray(vec, dtype=np.float32))


def test_explicit_binary_flag(tmp_path):
    path = write_binary(tmp_path / "v.bin")
    assert len(list(iter_word2vec(path, binary=True))) == len(VECTORS)
    with pytest.raises(EmbeddingError):
        list(iter_word2vec(path, binary=False))


def test_truncated_binary(tmp_path):
    path = write_binary(tmp_path / "v.bin")
    data = path.read_bytes()
    path.write_bytes(data[:-7])
    with pytest.raises(EmbeddingError, match="ends inside"):
        list(iter_word2vec(path, binary=True))


def test_bad_text(tmp_path):
    path = tmp_path / "v.txt"
    path.write_text("2 3\na 1 2 3\nb 1 2\n", encoding="utf-8")
    with pytest.raises(EmbeddingError, match="has 2 values, expected 3"):
        list(iter_word2vec(path))
    path.write_text("a 1 x 3\n", encoding="utf-8")
    with pytest.raises(EmbeddingError, match="not all numbers"):
        list(iter_word2vec(path))


@pytest.mark.parametrize("binary", [False, True])
def test_align_by_word(tmp_path, binary):
    path = write_binary(tmp_path / "v.bin") if binary else write_text(tmp_path / "v.txt")
    aligned = align_embeddings(path, VOCAB, missing="zeros")
    assert aligned.vectors.shape == (len(VOCAB), 3) and aligned.vectors.dtype == np.float32
    for word, vec in VECTORS.items():
        if word in VOCAB:
            np.testing.assert_array_equal(aligned.vectors[VOCAB[word]], np.float32(vec))
    assert aligned.missing == ["cat", "<unk>", "<eos>", "<bos>"]  # "Cat" is not "cat"
    assert not aligned.vectors[~aligned.found].any()


def test_missing_inits_and_lowercase(tmp_path):
    path = write_text(tmp_path / "v.txt")
    uni = align_embeddings(path, VOCAB, missing="uniform", init_scale=0.1, seed=3)
    rows = uni.vectors[~uni.found]
    assert rows.shape == (4, 3) and np.abs(rows).max() <= 0.1 and rows.std() > 0
    again = align_embeddings(path, VOCAB, missing="uniform", init_scale=0.1, seed=3)
    np.testing.assert_array_equal(uni.vectors, again.vectors)
    low = align_embeddings(path, VOCAB, match_lowercase=True)
    assert low.found[VOCAB["cat"]]
    np.testing.assert_array_equal(low.vectors[VOCAB["cat"]], np.float32(VECTORS["Cat"]))
    with pytest.raises(EmbeddingError, match="unknown init"):
        align_embeddings(path, VOCAB, missing="ones")


def test_exact_match_beats_lowercase_match(tmp_path):
    vectors = {"The": [9.0, 9.0, 9.0], "the": [1.0, 2.0, 3.0]}
    path = write_text(tmp_path / "v.txt", vectors)
    aligned = align_embeddings(path, VOCAB, match_lowercase=True)
    np.testing.assert_array_equal(aligned.vectors[VOCAB["the"]], np.float32([1, 2, 3]))


def test_save_load_and_matrix(tmp_path):
    aligned = align_embeddings(write_text(tmp_path / "v.txt"), VOCAB)
    path = aligned.save(tmp_path / "emb.npz")
    loaded = load_embeddings(path)
    assert loaded.words == VOCAB.words and loaded.init == "uniform"
    np.testing.assert_array_equal(loaded.found, aligned.found)
    matrix = load_embedding_matrix(path, VOCAB)
    assert isinstance(matrix, torch.Tensor) and matrix.dtype == torch.float32
    np.testing.assert_array_equal(matrix.numpy(), aligned.vectors)
    # Same words in another order: rows follow the words, not the file's order.
    shuffled = Vocabulary(tuple(reversed(VOCAB.words)))
    m2 = load_embedding_matrix(path, shuffled)
    for word in VOCAB.words:
        np.testing.assert_array_equal(m2[shuffled[word]].numpy(), aligned.vectors[VOCAB[word]])
    with pytest.raises(EmbeddingError, match="no row for 1"):
        load_embedding_matrix(path, Vocabulary(("the", "zebra")))


def test_original_layout(tmp_path):
    aligned = align_embeddings(write_binary(tmp_path / "v.bin"), VOCAB)
    matrix_path, dict_path = aligned.save_original_layout(tmp_path / "orig")
    np.testing.assert_array_equal(np.load(matrix_path), aligned.vectors)
    assert Vocabulary.load(dict_path) == VOCAB
    m = load_embedding_matrix(tmp_path / "orig", VOCAB)
    np.testing.assert_array_equal(m.numpy(), aligned.vectors)
    with pytest.raises(EmbeddingError, match="no word list"):
        (tmp_path / "orig" / "all.dict").unlink()
        load_embeddings(tmp_path / "orig")


def test_cli_convert(tmp_path):
    w2v = write_binary(tmp_path / "v.bin")
    vocab_file = tmp_path / "vocab.dict"
    VOCAB.save(vocab_file)
    out = tmp_path / "emb.npz"
    result = CliRunner().invoke(
        main,
        ["convert-embeddings", str(w2v), "--vocab", str(vocab_file), "-o", str(out),
         "--missing", "zeros", "--original-dir", str(tmp_path / "orig"),
         "--missing-list", str(tmp_path / "missing.txt")],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "4 from" in result.output and "4 without a vector (zeros)" in result.output
    assert (tmp_path / "missing.txt").read_text().split() == ["cat", "<unk>", "<eos>", "<bos>"]
    assert (tmp_path / "orig" / "all.npy").is_file()
    np.testing.assert_array_equal(
        load_embedding_matrix(out, VOCAB)[VOCAB["dog"]].numpy(), np.float32(VECTORS["dog"])
    )
    missing_vocab = CliRunner().invoke(main, ["convert-embeddings", str(w2v), "-o", str(out)])
    assert missing_vocab.exit_code != 0 and "--vocab" in missing_vocab.output
