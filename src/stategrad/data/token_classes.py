"""Token-level classes: every position of a tagged text in the classes of its own gold tag.

Word-type classes (:mod:`.classes`) put a word in every class one of its possible tags
is in, so "can" counts as a verb and as a noun wherever it occurs.  Here the text *is*
a tagged corpus: the text analysed is its words (one sentence after another, ``<eos>``
after each, as the LM text that ``prepare-tagged`` writes from it), and position t is
in the classes of the tag that token carries.  ``<eos>`` positions are in ``all`` only.

A :class:`TokenClassSet` keeps the rows of its ``membership`` per distinct class
combination and a row index per position (``keys``), so the engine's
``membership[keys[t]]`` costs what word-type classes cost.  It belongs to one text:
the engine and the ablation refuse it with any other token sequence.
"""

from __future__ import annotations

import collections
import hashlib
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .class_tables import BUILTIN_CLASS_SETS, PTB_UNIVERSAL, ClassError, TagMap, builtin_class_tags
from .classes import ALL, ClassSet, ClassWarning, _class_name
from .corpus import EOS, Vocabulary
from .tag_files import read_class_file
from .tagged import (
    FORMATS,
    Sentence,
    TaggedError,
    detect_format,
    detect_tagset,
    iter_tagged_sentences,
    normalize_sentence,
    split_tags,
)

GOLD_TAGS = "tags"  # the class spec "one class per gold tag" (the default)


@dataclass
class TokenClassSet(ClassSet):
    """Classes of the positions of one text: position t is in the classes of row
    ``keys[t]`` of ``membership``.  ``tokens`` are the text's ids (the text this set
    belongs to), ``words`` its words as read (before ``<unk>``), ``n_words`` the size
    of the vocabulary the ids are of."""

    keys: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    tokens: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    words: list[str] = field(default_factory=list)
    n_words: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        self.keys = np.asarray(self.keys, dtype=np.int64)
        self.tokens = np.asarray(self.tokens, dtype=np.int64)
        if not len(self.keys) == len(self.tokens) == len(self.words):
            raise ClassError(f"{len(self.keys)} keys, {len(self.tokens)} tokens and "
                             f"{len(self.words)} words: one of each per position")
        if len(self.keys) and (self.keys.min() < 0 or self.keys.max() >= len(self.membership)):
            raise ClassError("keys must index rows of membership")

    @property
    def vocab_size(self) -> int:
        return self.n_words

    @classmethod
    def from_positions(cls, names: list[str], positions: np.ndarray, tokens: np.ndarray,
                       words: Sequence[str], vocab_size: int,
                       definitions: dict[str, Any] | None = None,
                       info: dict[str, Any] | None = None) -> TokenClassSet:
        """From a (N, C) boolean matrix: position t is in class j when ``positions[t, j]``."""
        positions = np.asarray(positions, dtype=bool).reshape(len(tokens), len(names))
        rows, keys = np.unique(positions, axis=0, return_inverse=True)
        return cls(list(names), rows, dict(definitions or {}), dict(info or {}),
                   keys=keys.reshape(-1), tokens=tokens, words=list(words), n_words=vocab_size)

    def positions(self) -> np.ndarray:
        """(N, C): which classes each position is in."""
        return self.membership[self.keys]

    def keys_for(self, tokens: np.ndarray) -> np.ndarray:
        tokens = np.asarray(tokens)
        if len(tokens) != len(self.tokens) or not np.array_equal(tokens, self.tokens):
            raise ClassError(
                f"these token classes belong to a text of {len(self.tokens)} tokens (the tagged "
                f"file's), not to the text given ({len(tokens)} tokens)")
        return self.keys

    def prefix(self, n: int) -> TokenClassSet:
        return TokenClassSet(list(self.names), self.membership, self.definitions, self.info,
                             keys=self.keys[:n], tokens=self.tokens[:n], words=self.words[:n],
                             n_words=self.n_words)

    def type_counts(self) -> np.ndarray:
        """How many distinct words (as read) have a position in each class."""
        pos = self.positions()
        return np.array([len({self.words[t] for t in np.flatnonzero(pos[:, j])})
                         for j in range(len(self.names))])

    def digest(self) -> str:
        h = hashlib.sha256(np.ascontiguousarray(self.membership).tobytes())
        h.update(np.ascontiguousarray(self.keys).tobytes())
        return h.hexdigest()


@dataclass
class TaggedText:
    """A tagged corpus read as LM text: its sentences of (word, tag) and how it was read."""

    path: Path
    format: str
    tagset: str
    normalized: bool
    sentences: list[Sentence]
    dropped: int  # tokens normalisation dropped (punctuation)


def read_tagged_text(path: str | os.PathLike, fmt: str | None = None, *, normalize: bool = True,
                     encoding: str = "utf-8") -> TaggedText:
    """The sentences of a tagged file (``fmt``: conll, bracketed or brown; None detects
    it), normalised to Mikolov's PTB conventions as ``prepare-tagged --normalize``
    writes them unless ``normalize`` is False.  Sentences left empty are dropped."""
    if fmt is not None and fmt not in FORMATS:
        raise TaggedError(f"unknown tagged format {fmt!r}; choose one of {', '.join(FORMATS)}")
    fmt = fmt or detect_format(path, encoding)
    tagset = detect_tagset(fmt)
    sentences, dropped = [], 0
    for sentence in iter_tagged_sentences(path, fmt, encoding=encoding):
        kept = normalize_sentence(sentence, tagset) if normalize else sentence
        dropped += len(sentence) - len(kept)
        if kept:
            sentences.append(kept)
    if not sentences:
        raise TaggedError(f"{path} holds no tagged words" + (" once punctuation is dropped"
                                                             if normalize else ""))
    return TaggedText(Path(path), fmt, tagset, normalize, sentences, dropped)


def _tag_table(items: Sequence[str], tagged: TaggedText, tag_map: TagMap | None,
               encoding: str) -> tuple[dict[str, tuple[str, ...]], bool, dict[str, Any]]:
    """class -> tags of the class specs (built-in sets, tag files, or ``tags``: one class
    per gold tag), whether tags compare case-folded, and each class's definition."""
    if tag_map is not None and not any(i.lower().startswith("universal") for i in items):
        # Ignoring it silently would hide a mistyped --classes value.
        raise ClassError("a tag map (--tag-map) is only used by the universal class sets; add "
                         "--classes universal")
    if not items or list(items) == [GOLD_TAGS]:
        counts = collections.Counter(t for s in tagged.sentences for _, tag in s
                                     for t in split_tags(tag))
        order = sorted(counts, key=lambda t: (-counts[t], t))
        return {t: (t,) for t in order}, False, {t: {"tags": [t]} for t in order}
    table: dict[str, tuple[str, ...]] = {}
    definitions: dict[str, Any] = {}
    fold = False
    for item in items:
        base, _, subset = item.partition(":")
        if base.lower() in BUILTIN_CLASS_SETS and not Path(item).exists():
            if base.lower() == "universal":  # the tag set is known here: no guessing from case
                item = f"universal-{tagged.tagset}" + (f":{subset}" if subset else "")
            part, part_fold = builtin_class_tags(item, None, tag_map)
            fold = fold or part_fold
            defs = {n: {"tags": sorted(tags), "builtin": base.lower()} for n, tags in part.items()}
        elif Path(item).is_file():
            name = _class_name(Path(item))
            part = {name: tuple(read_class_file(item, encoding))}
            defs = {name: {"tags": sorted(part[name]), "source": str(item)}}
        else:
            raise ClassError(f"{item!r} is neither a built-in class set "
                             f"({', '.join(BUILTIN_CLASS_SETS)}) nor an existing class file "
                             f"(nor '{GOLD_TAGS}', one class per gold tag)")
        for name in part:
            if name in table or name == ALL:
                raise ClassError(f"class {name!r} is defined twice")
        table.update(part)
        definitions.update(defs)
    return table, fold, definitions


def _warn_unknown_tags(table: dict[str, tuple[str, ...]], fold: bool, tagged: TaggedText,
                       items: Sequence[str]) -> None:
    """Tags of the text that no class knows (their tokens are in ``all`` only): usually
    the wrong tag set or map.  ``ptb`` leaves some tags out on purpose (EX, FW, ...)."""
    norm = str.upper if fold else str
    known = {norm(t) for tags in table.values() for t in tags}
    if any(i.partition(":")[0].lower() == "ptb" and ":" not in i for i in items):
        known |= set(PTB_UNIVERSAL)
    seen = {t for s in tagged.sentences for _, tag in s for t in split_tags(tag)}
    unknown = sorted(t for t in seen if norm(t) not in known)
    if unknown and not any(":" in i for i in items):
        shown = " ".join(unknown[:15]) + (f" ... ({len(unknown)} in all)" if len(unknown) > 15
                                          else "")
        warnings.warn(f"{tagged.path} has tags the classes {', '.join(items)} do not know "
                      f"(those tokens are in 'all' only): {shown}", ClassWarning, stacklevel=3)


def load_token_classes(
    vocab: Vocabulary,
    path: str | os.PathLike,
    spec: str | Sequence[str] | None = None,
    *,
    fmt: str | None = None,
    normalize: bool = True,
    tag_map: TagMap | None = None,
    no_eos: bool = False,
    encoding: str = "utf-8",
) -> TokenClassSet:
    """The text of a tagged file and the class of each of its tokens from its gold tag.

    The text is ``result.tokens`` (ids of ``vocab``; words outside it are ``<unk>``,
    ``<eos>`` after every sentence unless ``no_eos``); analyse exactly that sequence.
    ``spec``: None or ``tags`` for one class per gold tag (by falling count), or
    built-in sets / tag class files as for :func:`.classes.load_classes` (``universal``
    maps the gold tags with the built-in PTB table or ``tag_map``).  A token with an
    ambiguous tag (``VBD|VBN``) is in the classes of each of its tags.
    """
    items: list[str] = []
    for s in [spec] if isinstance(spec, str) else list(spec or []):
        items.extend(p.strip() for p in str(s).split(",") if p.strip())
    tagged = read_tagged_text(path, fmt, normalize=normalize, encoding=encoding)
    table, fold, definitions = _tag_table(items, tagged, tag_map, encoding)
    if items and items != [GOLD_TAGS]:
        _warn_unknown_tags(table, fold, tagged, items)
    names = [ALL, *table]
    norm = str.upper if fold else str
    class_of_tag = {j: {norm(t) for t in tags} for j, tags in enumerate(table.values(), start=1)}
    rows: dict[str, np.ndarray] = {}  # a tag string -> its classes
    words: list[str] = []
    tags: list[str | None] = []
    for sentence in tagged.sentences:
        for word, tag in sentence:
            words.append(word)
            tags.append(tag)
        if not no_eos:
            words.append(EOS)
            tags.append(None)
    positions = np.zeros((len(words), len(names)), dtype=bool)
    positions[:, 0] = True
    for t, tag in enumerate(tags):
        if tag is None:
            continue
        if tag not in rows:
            parts = {norm(p) for p in split_tags(tag)}
            rows[tag] = np.array([j > 0 and bool(parts & class_of_tag[j])
                                  for j in range(len(names))])
        positions[t] |= rows[tag]
    tokens = vocab.encode(words).astype(np.int64)
    info = {"unit": "token", "rule": "each token is in the classes of its own gold tag",
            "tagged": str(Path(path).resolve()), "format": tagged.format, "tagset": tagged.tagset,
            "normalized": normalize, "classes": items or [GOLD_TAGS],
            "tag_map": None if tag_map is None else str(tag_map) if isinstance(
                tag_map, (str, os.PathLike)) else "a mapping",
            "sentences": len(tagged.sentences), "tokens": len(tokens),
            "dropped_tokens": tagged.dropped, "eos": not no_eos,
            "oov_tokens": int(sum(1 for w in words if w not in vocab))}
    definitions = {ALL: "every token", **definitions}
    result = TokenClassSet.from_positions(names, positions, tokens, words, len(vocab),
                                          definitions, info)
    empty = [n for j, n in enumerate(names) if j and not positions[:, j].any()]
    if empty and len(empty) == len(names) - 1:
        raise ClassError(f"no token of {path} is in any of the classes {', '.join(names[1:])}")
    if empty:
        warnings.warn(f"classes with no token of {path}: {', '.join(empty)}", ClassWarning,
                      stacklevel=2)
    return result

