"""Pre-trained word embeddings (word2vec text or binary) aligned to an LM vocabulary.

The original's converter kept the word2vec rows of the words in the LM vocabulary
in word2vec file order, so row i of its matrix was generally *not* the embedding
of word id i.  Here rows are aligned by word: row i is the vector of
``vocab.words[i]``, and words without a vector get an initial value chosen by
option and are flagged in a ``found`` mask.

The project's format is an ``.npz`` file holding ``vectors`` (V, E) float32,
``words`` (V,) str, ``found`` (V,) bool and ``init`` (how missing rows were set).
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..atomic import write_atomic
from .corpus import CorpusError, Vocabulary

MISSING_INITS = ("uniform", "normal", "zeros")


class EmbeddingError(CorpusError):
    """An embedding file that cannot be used as asked."""


@dataclass
class AlignedEmbeddings:
    words: tuple[str, ...]
    vectors: np.ndarray  # (V, E) float32, row i = vector of words[i]
    found: np.ndarray  # (V,) bool: row i came from the pre-trained file
    init: str = "uniform"  # how rows without a vector were initialised
    source: str = ""

    @property
    def missing(self) -> list[str]:
        return [w for w, f in zip(self.words, self.found, strict=True) if not f]

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_name(path.name + ".npz")
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {"vectors": self.vectors.astype(np.float32),
                  "words": np.asarray(self.words, dtype=str), "found": self.found.astype(bool),
                  "init": np.asarray(self.init), "source": np.asarray(self.source)}
        return write_atomic(path, lambda tmp: np.savez(tmp, **arrays), suffix=".tmp.npz")

    def save_original_layout(self, directory: str | os.PathLike) -> tuple[Path, Path]:
        """``DIR/all.npy`` (V, E) and ``DIR/all.dict`` (``word<TAB>id``): what the
        original's ``pretrained_embeddings DIR`` option reads, rows in vocabulary order."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        matrix = directory / "all.npy"
        np.save(matrix, self.vectors.astype(np.float32))
        Vocabulary(self.words).save(directory / "all.dict")
        return matrix, directory / "all.dict"


# --- reading word2vec ---------------------------------------------------------------------


def _is_binary(path: Path) -> bool:
    """word2vec binary files have a ``V E`` header followed by raw float32 bytes; in a
    text file the next line parses as a word and E numbers."""
    with open(path, "rb") as handle:
        header = handle.readline()
        parts = header.split()
        if len(parts) != 2 or not all(p.isdigit() for p in parts):
            return False  # headerless text (GloVe style)
        dim = int(parts[1])
        line = handle.readline(64 * dim + 4096)
    fields = line.split()
    if len(fields) != dim + 1:
        return True
    try:
        [float(f) for f in fields[1:]]
    except ValueError:
        return True
    return False


def _iter_text(path: Path, encoding: str) -> Iterator[tuple[str, np.ndarray]]:
    dim = None
    with open(path, encoding=encoding, errors="strict") as handle:
        try:
            for lineno, line in enumerate(handle, 1):
                parts = line.rstrip().split(" ")
                if lineno == 1 and len(parts) == 2 and all(p.isdigit() for p in parts):
                    dim = int(parts[1])
                    continue
                if len(parts) < 2:
                    if not line.strip():
                        continue
                    raise EmbeddingError(f"{path}:{lineno}: expected 'word v1 v2 ...'")
                try:
                    vector = np.asarray(parts[1:], dtype=np.float32)
                except ValueError:
                    raise EmbeddingError(
                        f"{path}:{lineno}: the values after {parts[0]!r} are not all numbers"
                    ) from None
                if dim is None:
                    dim = len(vector)
                if len(vector) != dim:
                    raise EmbeddingError(
                        f"{path}:{lineno}: {parts[0]!r} has {len(vector)} values, expected {dim}"
                    )
                yield parts[0], vector
        except UnicodeDecodeError as exc:
            raise EmbeddingError(
                f"{path} is not valid {encoding} text ({exc.reason} at byte {exc.start}); "
                "give its encoding, or --binary if it is a binary word2vec file"
            ) from exc


def _iter_binary(path: Path, encoding: str) -> Iterator[tuple[str, np.ndarray]]:
    with open(path, "rb") as raw:
        handle = io.BufferedReader(raw, buffer_size=1 << 20)
        header = handle.readline().split()
        if len(header) != 2 or not all(p.isdigit() for p in header):
            raise EmbeddingError(
                f"{path}: a binary word2vec file starts with 'V E', got {header!r}"
            )
        count, dim = int(header[0]), int(header[1])
        nbytes = 4 * dim
        for k in range(count):
            chars = bytearray()
            while True:
                c = handle.read(1)
                if not c:
                    raise EmbeddingError(
                        f"{path}: file ends inside word {k + 1} of {count} (truncated?)"
                    )
                if c == b" ":
                    break
                if c == b"\n" and not chars:
                    continue  # the newline word2vec writes after each vector
                chars += c
            data = handle.read(nbytes)
            if len(data) != nbytes:
                raise EmbeddingError(f"{path}: file ends inside the vector of word {k + 1}")
            try:
                word = chars.decode(encoding)
            except UnicodeDecodeError as exc:
                raise EmbeddingError(
                    f"{path}: word {k + 1} is not valid {encoding} ({exc.reason})"
                ) from exc
            yield word, np.frombuffer(data, dtype="<f4").astype(np.float32)


def iter_word2vec(
    path: str | os.PathLike, *, binary: bool | None = None, encoding: str = "utf-8"
) -> Iterator[tuple[str, np.ndarray]]:
    """Yield ``(word, vector)`` from a word2vec text or binary file.

    ``binary=None`` decides from the bytes after the header.  Text files may lack
    the ``V E`` header (GloVe).
    """
    path = Path(path)
    if not path.is_file():
        raise EmbeddingError(f"embedding file not found: {path}")
    if binary is None:
        binary = _is_binary(path)
    yield from (_iter_binary if binary else _iter_text)(path, encoding)


# --- aligning -----------------------------------------------------------------------------


def align_embeddings(
    source: str | os.PathLike,
    vocab: Vocabulary,
    *,
    binary: bool | None = None,
    missing: str = "uniform",
    init_scale: float = 0.05,
    match_lowercase: bool = False,
    seed: int = 0,
    encoding: str = "utf-8",
) -> AlignedEmbeddings:
    """Row i = the pre-trained vector of ``vocab.words[i]``.

    Words without a vector are set by ``missing``: ``uniform`` in
    ``[-init_scale, init_scale]`` (the original's initialisation of every weight),
    ``normal`` with standard deviation ``init_scale``, or ``zeros``.  With
    ``match_lowercase`` a word without an exact match takes the vector of the
    first word in the file whose lower-cased form equals it (e.g. PTB's ``nasdaq``
    from ``NASDAQ``).  The first vector of a word repeated in the file wins.
    """
    if missing not in MISSING_INITS:
        raise EmbeddingError(
            f"unknown init {missing!r} for missing words; choose one of {MISSING_INITS}"
        )
    if init_scale < 0:
        raise EmbeddingError(f"init_scale must not be negative, got {init_scale}")
    vectors: np.ndarray | None = None
    found = np.zeros(len(vocab), dtype=bool)
    lower_only = np.zeros(len(vocab), dtype=bool)  # filled from a case-folded match so far
    dim = None
    for word, vector in iter_word2vec(source, binary=binary, encoding=encoding):
        if vectors is None:
            dim = len(vector)
            vectors = np.zeros((len(vocab), dim), dtype=np.float32)
        elif len(vector) != dim:
            raise EmbeddingError(f"{source}: {word!r} has {len(vector)} values, expected {dim}")
        i = vocab.get(word)
        if i is not None and (not found[i] or lower_only[i]):
            vectors[i] = vector
            found[i] = True
            lower_only[i] = False
        if match_lowercase and word.lower() != word:
            j = vocab.get(word.lower())
            if j is not None and not found[j]:
                vectors[j] = vector
                found[j] = True
                lower_only[j] = True
    if vectors is None:
        raise EmbeddingError(f"{source} holds no vectors")
    rng = np.random.default_rng(seed)
    n_missing = int((~found).sum())
    if n_missing:
        if missing == "uniform":
            fill = rng.uniform(-init_scale, init_scale, size=(n_missing, vectors.shape[1]))
        elif missing == "normal":
            fill = rng.normal(0.0, init_scale, size=(n_missing, vectors.shape[1]))
        else:
            fill = np.zeros((n_missing, vectors.shape[1]))
        vectors[~found] = fill.astype(np.float32)
    return AlignedEmbeddings(vocab.words, vectors, found, missing, str(source))


# --- loading ------------------------------------------------------------------------------


def load_embeddings(path: str | os.PathLike) -> AlignedEmbeddings:
    """Read the project's ``.npz`` or the original's layout (a directory with
    ``all.npy`` and ``all.dict``, or an ``all.npy`` whose rows follow a vocabulary)."""
    path = Path(path)
    if path.is_dir():
        matrix = path / "all.npy"
        if not matrix.is_file():
            raise EmbeddingError(f"{path} is a directory without all.npy")
        vectors = np.load(matrix).astype(np.float32)
        dict_file = next((path / n for n in ("all.dict", "dict") if (path / n).is_file()), None)
        if dict_file is None:
            raise EmbeddingError(
                f"{path}/all.npy has no word list next to it (all.dict); the original's rows "
                "follow word2vec order, so they cannot be matched to words without one"
            )
        words = Vocabulary.load(dict_file).words
        if len(words) != len(vectors):
            raise EmbeddingError(
                f"{dict_file} lists {len(words)} words but all.npy has {len(vectors)} rows"
            )
        return AlignedEmbeddings(words, vectors, np.ones(len(words), bool), "unknown", str(path))
    if not path.is_file():
        raise EmbeddingError(f"embedding file not found: {path}")
    if path.suffix == ".npy":
        raise EmbeddingError(
            f"{path}: a bare .npy has no word list; give its directory with all.dict, or "
            "convert the word2vec file with `stategrad convert-embeddings`"
        )
    try:
        with np.load(path, allow_pickle=False) as data:
            vectors = data["vectors"].astype(np.float32)
            words = tuple(str(w) for w in data["words"])
            found = data["found"].astype(bool) if "found" in data else np.ones(len(words), bool)
            init = str(data["init"]) if "init" in data else "unknown"
            source = str(data["source"]) if "source" in data else ""
    except (KeyError, ValueError, OSError) as exc:
        raise EmbeddingError(
            f"{path} is not an embedding file of this project (needs 'vectors' and 'words'): {exc}"
        ) from exc
    if vectors.ndim != 2 or len(words) != len(vectors):
        raise EmbeddingError(f"{path}: {len(words)} words but vectors of shape {vectors.shape}")
    return AlignedEmbeddings(words, vectors, found, init, source)


def load_embedding_matrix(path: str | os.PathLike, vocab: Vocabulary):
    """The (V, E) float32 embedding matrix for ``vocab``, row i for ``vocab.words[i]``.

    ``path`` is a converted ``.npz`` (or the original's directory layout).  Rows are
    matched by word, so a file converted for the same words in another order works;
    a vocabulary word the file lacks is an error (convert again for this vocabulary).
    The caller decides whether the matrix is trained or frozen.
    """
    import torch

    emb = load_embeddings(path)
    if emb.words == vocab.words:
        matrix = emb.vectors
    else:
        index = {w: i for i, w in enumerate(emb.words)}
        absent = [w for w in vocab.words if w not in index]
        if absent:
            raise EmbeddingError(
                f"{path} has no row for {len(absent)} of the model's {len(vocab)} words "
                f"(e.g. {', '.join(map(repr, absent[:5]))}); run `stategrad convert-embeddings` "
                "with this model's vocabulary"
            )
        matrix = emb.vectors[[index[w] for w in vocab.words]]
    return torch.from_numpy(np.ascontiguousarray(matrix, dtype=np.float32))
