"""Frequency strata within classes, so that part of speech and frequency are not confounded.

A word's rank is its place in the frequency text (the training text, as a rule) by
falling count: 1 is the most frequent word.  Words of equal count are ranked in code
point order of the word (``sorted()`` order of Python strings), so the ranks are the
same on every machine and can be reproduced with ``sort | uniq -c | sort -k1,1nr -k2``
under ``LC_ALL=C``.  ``<eos>`` is not a word and gets no rank.

:func:`stratify` replaces every class C but ``all`` by the strata ``C@1-100``,
``C@101-1000``, ``C@1001+`` (bands ``100,1000``) and ``C@unranked`` (words the
frequency text does not hold).  Every stratum is kept, empty or not, so results of
models trained on different texts have the same classes.  For word-type classes a word
is ranked as the vocabulary writes it (``<unk>`` as ``<unk>``); for token classes a
token is ranked as the tagged text writes it (after normalisation), so a word outside
the model's vocabulary is ranked as itself, not as ``<unk>``.
"""

from __future__ import annotations

import collections
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .class_tables import ClassError
from .classes import ALL, ClassSet
from .corpus import EOS, Vocabulary, iter_sentences
from .token_classes import TokenClassSet

UNRANKED = "unranked"
TIE_BREAK = "equal counts ranked in code point order of the word"


def word_ranks(path: str | os.PathLike, *, encoding: str = "utf-8",
               tokenization: str = "original") -> dict[str, int]:
    """word -> rank (1 = most frequent) in the text ``path``, read by ``tokenization``
    as a model reads it; ties in code point order of the word; ``<eos>`` unranked."""
    counts: collections.Counter = collections.Counter()
    for words in iter_sentences(path, no_eos=True, encoding=encoding, tokenization=tokenization):
        counts.update(words)
    counts.pop(EOS, None)  # the WikiText rule writes it inside lines
    if not counts:
        raise ClassError(f"frequency text {path} holds no words")
    order = sorted(counts, key=lambda w: (-counts[w], w))
    return {w: i for i, w in enumerate(order, start=1)}


def parse_bands(bands: str | Sequence[int]) -> tuple[int, ...]:
    """``"100,1000"`` -> ``(100, 1000)``: the last rank of each band but the open last one."""
    if isinstance(bands, str):
        parts = [p.strip() for p in bands.split(",") if p.strip()]
        try:
            values = [int(p) for p in parts]
        except ValueError:
            raise ClassError(f"frequency bands {bands!r} must be whole numbers, e.g. "
                             "100,1000") from None
    else:
        values = [int(b) for b in bands]
    if not values:
        raise ClassError("no frequency bands given (e.g. 100,1000)")
    if values[0] < 1 or any(b <= a for a, b in zip(values, values[1:], strict=False)):
        raise ClassError(f"frequency bands must be positive and increasing, got {values}")
    return tuple(values)


def band_labels(bands: Sequence[int]) -> list[str]:
    """``(100, 1000)`` -> ``["1-100", "101-1000", "1001+", "unranked"]``."""
    lows = [1, *(b + 1 for b in bands)]
    return [f"{lo}-{hi}" for lo, hi in zip(lows, bands, strict=False)] + [f"{lows[-1]}+",
                                                                          UNRANKED]


def band_of(ranks: Mapping[str, int], words: Sequence[str], bands: Sequence[int]) -> np.ndarray:
    """The band index of each word (``len(bands) + 1`` for an unranked word)."""
    edges = np.asarray(bands)
    rank = np.array([ranks.get(w, 0) for w in words], dtype=np.int64)
    band = np.searchsorted(edges, rank, side="left")  # rank r is in band i: edges[i-1] < r <= edges[i]
    return np.where(rank == 0, len(bands) + 1, band)


def stratify(class_set: ClassSet, ranks: Mapping[str, int], bands: str | Sequence[int], *,
             vocab: Vocabulary | None = None, source: str | os.PathLike | None = None
             ) -> ClassSet:
    """``class_set`` with every class but ``all`` replaced by its frequency strata
    (``C@1-100``, ..., ``C@unranked``; see the module's text).  ``ranks`` from
    :func:`word_ranks`; ``vocab`` is needed for word-type classes (the words of the
    rows); ``source`` (the frequency text) is recorded in ``info``."""
    bands = parse_bands(bands)
    labels = band_labels(bands)
    if isinstance(class_set, TokenClassSet):
        words, rows = class_set.words, class_set.positions()
    else:
        if vocab is None or len(vocab) != class_set.vocab_size:
            raise ClassError("stratifying word-type classes needs the vocabulary of their rows")
        words, rows = vocab.words, class_set.membership
    band = band_of(ranks, words, bands)
    names, columns = [ALL], [rows[:, 0]]
    definitions: dict[str, Any] = {ALL: class_set.definitions.get(ALL)}
    for j, name in enumerate(class_set.names[1:], start=1):
        for b, label in enumerate(labels):
            names.append(f"{name}@{label}")
            columns.append(rows[:, j] & (band == b))
            definitions[names[-1]] = {"class": name, "ranks": label,
                                      "definition": class_set.definitions.get(name)}
    info = dict(class_set.info)
    info["frequency"] = {"text": None if source is None else str(Path(source).resolve()),
                         "bands": list(bands), "strata": labels, "ranked_words": len(ranks),
                         "rank": "1 = most frequent word of the text", "ties": TIE_BREAK,
                         "word": ("the token as the tagged text writes it"
                                  if isinstance(class_set, TokenClassSet)
                                  else "the vocabulary word")}
    matrix = np.stack(columns, axis=1)
    if isinstance(class_set, TokenClassSet):
        return TokenClassSet.from_positions(names, matrix, class_set.tokens, class_set.words,
                                            class_set.vocab_size, definitions, info)
    return ClassSet(names, matrix, definitions, info)
