"""Text corpora as compact token-id arrays, vocabularies, and the original's batching.

Tokens are held as ``numpy.int32`` arrays, never as lists of Python strings, so a
100M-token file costs 400 MB rather than 100M Python objects.  Reading follows
the original code's rules (``docs/original-behaviour.md`` of the project's spec):
one sentence per line, ``<eos>`` appended per line unless ``no_eos``,
``<UNK>`` rewritten to ``<unk>``, and for WikiText ``" . "`` also ends a sentence.
That is the tokenization ``original``; ``plain`` is PyTorch's word_language_model
example's (``<eos>`` per line, every word as written, no rule taken from the path).
"""

from __future__ import annotations

import collections
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..atomic import write_atomic

EOS = "<eos>"
UNK = "<unk>"
BOS = "<bos>"

_CHUNK = 1 << 16


class CorpusError(ValueError):
    """A corpus or vocabulary file that cannot be used as asked."""


#: How a line of text becomes tokens.  original: the original code's rules (``<UNK>`` read
#: as ``<unk>``; in a path containing ``wikitext``, `` . `` also ends a sentence).  plain:
#: word_language_model's ``line.split() + ['<eos>']``, ``.`` kept as a word.
TOKENIZATIONS = ("original", "plain")


def check_tokenization(tokenization: str) -> str:
    if tokenization not in TOKENIZATIONS:
        raise CorpusError(f"tokenization must be one of {', '.join(TOKENIZATIONS)}, "
                          f"not {tokenization!r}")
    return tokenization


def _open_text(path: str | os.PathLike, encoding: str):
    path = Path(path)
    if not path.is_file():
        raise CorpusError(f"text file not found: {path}")
    return open(path, encoding=encoding, errors="strict", newline=None)


def iter_sentences(
    path: str | os.PathLike,
    *,
    no_eos: bool = False,
    wikitext: bool | None = None,
    encoding: str = "utf-8",
    tokenization: str = "original",
) -> Iterator[list[str]]:
    """Yield the words of each line of ``path`` by the rule ``tokenization`` (see
    ``TOKENIZATIONS``).

    With ``original``, ``wikitext=None`` decides from the path, as the original does
    (``WikiText`` anywhere in it, case-insensitively); ``plain`` has no WikiText rule.
    """
    if check_tokenization(tokenization) == "plain":
        if wikitext:
            raise CorpusError("the WikiText rule (' . ' ends a sentence) is part of the "
                              "'original' tokenization, not of 'plain'")
        wikitext = False
    elif wikitext is None:
        wikitext = "wikitext" in str(path).lower()
    rewrite_unk = tokenization == "original"
    with _open_text(path, encoding) as handle:
        try:
            for line in handle:
                if wikitext:
                    # The original replaced " . " in the whole file after turning each
                    # newline into " <eos> ", so a line-final " ." (no trailing space)
                    # or a line-initial ". " also ends a sentence; padding the line
                    # with spaces reproduces that line by line.
                    line = (" " + line.rstrip("\n") + " ").replace(" . ", f" {EOS} ")
                words = line.split()
                if rewrite_unk:
                    words = [UNK if w == "<UNK>" else w for w in words]
                if not no_eos:
                    words.append(EOS)
                if words:
                    yield words
        except UnicodeDecodeError as exc:
            raise CorpusError(
                f"{path} is not valid {encoding} text ({exc.reason} at byte {exc.start}); "
                "set the 'encoding' option to the file's encoding"
            ) from exc


def iter_words(path: str | os.PathLike, **kwargs) -> Iterator[str]:
    for sentence in iter_sentences(path, **kwargs):
        yield from sentence


@dataclass(frozen=True)
class Vocabulary:
    """Word <-> id mapping.  Ids are positions in ``words``."""

    words: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(set(self.words)) != len(self.words):
            dupes = [w for w, n in collections.Counter(self.words).items() if n > 1]
            raise CorpusError(f"vocabulary has duplicate words: {dupes[:5]}")
        object.__setattr__(self, "_index", {w: i for i, w in enumerate(self.words)})

    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word: object) -> bool:
        return word in self._index  # type: ignore[attr-defined]

    def __getitem__(self, word: str) -> int:
        return self._index[word]  # type: ignore[attr-defined]

    def get(self, word: str, default: int | None = None) -> int | None:
        return self._index.get(word, default)  # type: ignore[attr-defined]

    @property
    def unk_id(self) -> int:
        if UNK not in self:
            raise CorpusError("vocabulary has no <unk>")
        return self[UNK]

    def encode(self, words: Iterable[str]) -> np.ndarray:
        unk = self.get(UNK)
        index = self._index  # type: ignore[attr-defined]
        ids = []
        for w in words:
            i = index.get(w, unk)
            if i is None:
                raise CorpusError(f"word {w!r} is not in the vocabulary, which has no <unk>")
            ids.append(i)
        return np.asarray(ids, dtype=np.int32)

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self.words[int(i)] for i in ids]

    # --- construction -----------------------------------------------------------------
    @classmethod
    def from_counts(cls, counts: collections.Counter, max_size: int | None = None) -> Vocabulary:
        """The original's order: falling frequency, ties by the word; ``<unk>`` ensured,
        ``<bos>`` last.  ``max_size`` counts every entry, ``<unk>`` and ``<bos>`` included;
        the words that do not fit are the rarest and will map to ``<unk>``."""
        ordered = [w for w, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]
        ordered = [w for w in ordered if w != BOS]
        if max_size is not None:
            if max_size < 2:
                raise CorpusError(f"vocabulary size cap must be at least 2, got {max_size}")
            room = max_size - 1  # <bos>
            if UNK not in ordered[:room]:
                room -= 1
            ordered = [w for w in ordered[:room]]
        if UNK not in ordered:
            ordered.append(UNK)
        ordered.append(BOS)
        return cls(tuple(ordered))

    @classmethod
    def build(
        cls, path: str | os.PathLike, max_size: int | None = None, **read_kwargs
    ) -> Vocabulary:
        counts: collections.Counter = collections.Counter()
        for sentence in iter_sentences(path, **read_kwargs):
            counts.update(sentence)
        if not counts:
            raise CorpusError(f"{path} holds no words to build a vocabulary from")
        return cls.from_counts(counts, max_size)

    # --- files ------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> None:
        """``word<TAB>id`` per line, as the original's ``save_dict``; atomic, so a full
        disk leaves neither half a file nor a temp file behind."""
        def write(tmp: Path) -> None:
            with open(tmp, "w", encoding="utf-8") as handle:
                for i, w in enumerate(self.words):
                    handle.write(f"{w}\t{i}\n")

        write_atomic(path, write)

    @classmethod
    def load(cls, path: str | os.PathLike, encoding: str = "utf-8") -> Vocabulary:
        """Read ``word<TAB>id`` lines (any order), or one word per line in id order."""
        path = Path(path)
        if not path.is_file():
            raise CorpusError(f"vocabulary file not found: {path}")
        try:
            return cls._load(path, encoding)
        except UnicodeDecodeError as exc:
            raise CorpusError(f"{path} is not valid {encoding} text ({exc.reason} at byte "
                              f"{exc.start}); give the file's encoding") from exc
        except CorpusError as exc:
            # the checks of the constructor (duplicates, missing <unk>) know no file name
            if str(path) in str(exc):
                raise
            raise CorpusError(f"{path}: {exc}") from exc

    @classmethod
    def _load(cls, path: Path, encoding: str) -> Vocabulary:
        pairs: list[tuple[str, int]] = []
        plain: list[str] = []
        with open(path, encoding=encoding) as handle:
            for lineno, line in enumerate(handle, 1):
                line = line.rstrip("\n").rstrip("\r")
                if not line.strip():
                    continue
                parts = line.split("\t") if "\t" in line else line.split()
                if len(parts) == 1:
                    plain.append(parts[0])
                elif len(parts) == 2:
                    try:
                        pairs.append((parts[0], int(parts[1])))
                    except ValueError:
                        raise CorpusError(
                            f"{path}:{lineno}: expected 'word<TAB>id', got {line!r}"
                        ) from None
                else:
                    raise CorpusError(f"{path}:{lineno}: expected 'word<TAB>id', got {line!r}")
        if pairs and plain:
            raise CorpusError(f"{path} mixes 'word<TAB>id' lines with bare words")
        if plain:
            return cls(tuple(plain))
        ids = sorted(i for _, i in pairs)
        if ids != list(range(len(pairs))):
            raise CorpusError(f"{path}: ids must be 0..{len(pairs) - 1} without gaps or repeats")
        words = [""] * len(pairs)
        for w, i in pairs:
            words[i] = w
        return cls(tuple(words))


def read_tokens(
    path: str | os.PathLike,
    vocab: Vocabulary,
    *,
    no_eos: bool = False,
    wikitext: bool | None = None,
    encoding: str = "utf-8",
    tokenization: str = "original",
) -> np.ndarray:
    """All tokens of ``path`` as an int32 id array (unknown words -> ``<unk>``), read by
    the rule ``tokenization``: ``original`` or ``plain`` (see ``TOKENIZATIONS``; a
    model's own rule is ``LanguageModel.tokenization``)."""
    chunks: list[np.ndarray] = []
    buffer: list[str] = []
    for sentence in iter_sentences(path, no_eos=no_eos, wikitext=wikitext, encoding=encoding,
                                   tokenization=tokenization):
        buffer.extend(sentence)
        if len(buffer) >= _CHUNK:
            chunks.append(vocab.encode(buffer))
            buffer = []
    if buffer:
        chunks.append(vocab.encode(buffer))
    if not chunks:
        return np.zeros(0, dtype=np.int32)
    return np.concatenate(chunks)


def batchify(tokens: np.ndarray, batch_size: int) -> np.ndarray:
    """Cut ``tokens`` into ``batch_size`` rows of ``len // batch_size`` tokens (the tail is dropped)."""
    if batch_size < 1:
        raise CorpusError(f"batch_size must be positive, got {batch_size}")
    row = len(tokens) // batch_size
    if row == 0:
        raise CorpusError(f"{len(tokens)} tokens cannot fill {batch_size} rows")
    return np.ascontiguousarray(np.asarray(tokens[: row * batch_size]).reshape(batch_size, row))


def num_batches(len_row: int, num_steps: int) -> int:
    """The original's epoch size: ``len_row // num_steps - 1`` batches."""
    return max(len_row // num_steps - 1, 0)


def iter_batches(
    tokens: np.ndarray, batch_size: int, num_steps: int, start: int = 0
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Yield ``(index, inputs, targets)``: consecutive ``num_steps`` slices of every row.

    The final recurrent state of batch i is meant to be the initial state of batch
    i+1, as in the original.  ``start`` skips the first batches (resuming an epoch).
    """
    data = batchify(tokens, batch_size)
    n = num_batches(data.shape[1], num_steps)
    if n == 0:
        raise CorpusError(
            f"{len(tokens)} tokens give rows of {data.shape[1]} tokens: too short for "
            f"batch_size={batch_size}, num_steps={num_steps} (need at least {2 * num_steps} per row)"
        )
    for i in range(start, n):
        lo = i * num_steps
        yield i, data[:, lo : lo + num_steps], data[:, lo + 1 : lo + num_steps + 1]


#: Share of <unk> tokens above which a text is probably not the model's (eval, gradients, run).
UNK_WARNING_SHARE = 0.05


def unk_warning(tokens: np.ndarray, vocab: Vocabulary) -> str | None:
    """A warning when many tokens are <unk>: a text of another vocabulary or another model
    gives a perplexity that looks like a result but is not one."""
    unk = vocab.get(UNK)
    if unk is None or len(tokens) == 0:
        return None
    share = float(np.mean(np.asarray(tokens) == unk))
    if share <= UNK_WARNING_SHARE:
        return None
    return (f"warning: {share:.1%} of the text's tokens are <unk> (the text's own <unk> and "
            "words outside the model's vocabulary)")
