"""Word classes for per-class averages: a multi-label membership of each vocabulary word.

A word counts for every class one of its possible tags is in (the original's
rule), so membership is a (V, C) boolean matrix.  Class 0 is always ``all``.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import write_text_atomic
from .class_tables import (
    BUILTIN_CLASS_SETS,
    PTB_UNIVERSAL,
    ClassError,
    TagMap,
    _case_fold_map,
    builtin_class_tags,
)
from .corpus import BOS, EOS, Vocabulary
from .tag_files import read_class_file, read_pos_map

ALL = "all"


class ClassWarning(UserWarning):
    """Class definitions that leave tags or whole classes out, most likely by mistake."""


@dataclass
class ClassSet:
    """Word-type classes: row i of ``membership`` says which classes word id i is in."""

    names: list[str]
    membership: np.ndarray  # (V, C) bool; column 0 is "all"
    definitions: dict[str, Any] = field(default_factory=dict)
    # How the classes were made (kind, sources, strata): results record it as class_info.
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.membership = np.asarray(self.membership, dtype=bool)
        if not self.names or self.names[0] != ALL:
            raise ClassError("the first class must be 'all'")
        if len(set(self.names)) != len(self.names):
            raise ClassError(f"duplicate class names in {self.names}")
        if self.membership.ndim != 2 or self.membership.shape[1] != len(self.names):
            raise ClassError(
                f"membership must be (V, {len(self.names)}), got {self.membership.shape}"
            )
        if not self.membership[:, 0].all():
            raise ClassError("every word must belong to 'all'")

    def __len__(self) -> int:
        return len(self.names)

    @property
    def vocab_size(self) -> int:
        return self.membership.shape[0]

    @classmethod
    def only_all(cls, vocab_size: int) -> ClassSet:
        return cls([ALL], np.ones((vocab_size, 1), dtype=bool), {ALL: "every word"})

    @classmethod
    def from_word_sets(
        cls,
        vocab: Vocabulary,
        classes: Mapping[str, Iterable[str]],
        definitions: Mapping[str, Any] | None = None,
    ) -> ClassSet:
        """Classes given as sets of words; words outside the vocabulary are ignored
        (the caller reports them if it cares)."""
        names = [ALL] + [n for n in classes if n != ALL]
        membership = np.zeros((len(vocab), len(names)), dtype=bool)
        membership[:, 0] = True
        for j, name in enumerate(names[1:], start=1):
            for word in classes[name]:
                i = vocab.get(word)
                if i is not None:
                    membership[i, j] = True
        defs = {ALL: "every word"}
        defs.update(definitions or {n: sorted(set(classes[n])) for n in names[1:]})
        return cls(names, membership, defs)

    @classmethod
    def from_tag_map(
        cls,
        vocab: Vocabulary,
        word_tags: Mapping[str, Iterable[str]],
        class_tags: Mapping[str, Iterable[str]],
    ) -> ClassSet:
        """A word is in class c when any of its possible tags is one of c's tags."""
        sets: dict[str, set[str]] = {}
        tagsets = {name: set(tags) for name, tags in class_tags.items()}
        for name, tags in tagsets.items():
            sets[name] = {w for w, wt in word_tags.items() if tags.intersection(wt)}
        definitions = {name: {"tags": sorted(tags)} for name, tags in tagsets.items()}
        return cls.from_word_sets(vocab, sets, definitions)

    def keys_for(self, tokens: np.ndarray) -> np.ndarray:
        """The row of ``membership`` of each position of ``tokens``: here the word id
        itself (a token-level class set, :class:`.token_classes.TokenClassSet`, has
        rows of its own and belongs to one text)."""
        return np.asarray(tokens)

    def counts_in(self, tokens: np.ndarray) -> np.ndarray:
        """How many tokens of each class a text holds."""
        return self.membership[self.keys_for(tokens)].sum(axis=0)

    def prefix(self, n: int) -> ClassSet:
        """The classes of the first ``n`` positions of the text (word types: the same)."""
        return self

    def type_counts(self) -> np.ndarray:
        """How many words (types) each class holds."""
        return self.membership.sum(axis=0)

    def digest(self) -> str:
        """A hash of which position goes in which class, for run fingerprints."""
        return hashlib.sha256(np.ascontiguousarray(self.membership).tobytes()).hexdigest()


# --- building class sets from files and built-in definitions ----------------------------



def _class_name(path: Path) -> str:
    return path.stem if path.suffix in (".txt", ".tags", ".words", ".lst") else path.name


def from_class_files(
    vocab: Vocabulary,
    class_files: Iterable[str | os.PathLike],
    word_tags: Mapping[str, Iterable[str]],
    encoding: str = "utf-8",
) -> ClassSet:
    """Classes from tag files (one tag per line, named after the file, e.g. ``nouns``)
    and a word -> possible tags map, by the original's multi-label rule."""
    class_tags: dict[str, list[str]] = {}
    sources: dict[str, str] = {}
    for f in class_files:
        path = Path(f)
        name = _class_name(path)
        if name in class_tags or name == ALL:
            raise ClassError(f"two class files give the class name {name!r} ({path})")
        class_tags[name] = read_class_file(path, encoding)
        sources[name] = str(path)
    result = ClassSet.from_tag_map(vocab, word_tags, class_tags)
    for name, source in sources.items():
        result.definitions[name]["source"] = source
    return result


def from_word_list_files(
    vocab: Vocabulary, files: Iterable[str | os.PathLike], encoding: str = "utf-8"
) -> ClassSet:
    """Classes given as word lists, one file per class (named after the file), one word
    per line (white space also separates)."""
    sets: dict[str, list[str]] = {}
    definitions: dict[str, Any] = {}
    for f in files:
        path = Path(f)
        name = _class_name(path)
        if name in sets or name == ALL:
            raise ClassError(f"two word-list files give the class name {name!r} ({path})")
        sets[name] = read_class_file(path, encoding)
        definitions[name] = {"words": sorted(set(sets[name])), "source": str(path)}
    return ClassSet.from_word_sets(vocab, sets, definitions)


def read_class_map(path: str | os.PathLike, encoding: str = "utf-8") -> dict[str, list[str]]:
    """A ``word<TAB>class`` file (more classes may follow in further columns, and a word
    may appear on several lines): class -> words, classes in order of first mention."""
    path = Path(path)
    if not path.is_file():
        raise ClassError(f"class map not found: {path}")
    classes: dict[str, list[str]] = {}
    with open(path, encoding=encoding) as handle:
        for lineno, line in enumerate(handle, 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            parts = line.rstrip("\n").split("\t") if "\t" in line else line.split()
            parts = [p.strip() for p in parts if p.strip()]
            if len(parts) < 2:
                raise ClassError(
                    f"{path}:{lineno}: expected 'word<TAB>class', got {line.rstrip()!r}"
                )
            word, names = parts[0], parts[1:]
            for name in names:
                if name == ALL:
                    raise ClassError(f"{path}:{lineno}: 'all' is reserved for every word")
                classes.setdefault(name, []).append(word)
    if not classes:
        raise ClassError(f"class map {path} is empty")
    return classes


def write_class_map(path: str | os.PathLike, classes: Mapping[str, Iterable[str]]) -> Path:
    """Write class -> words as ``word<TAB>class`` lines, the file :func:`read_class_map`
    (``--class-map``) reads back as the same classes (a word of several classes gets a
    line for each).  A name it could not read back is an error, before anything is written."""
    lines = []
    for name, words in classes.items():
        for word in [name, *words]:
            if not word or any(c.isspace() for c in word) or word.startswith("#"):
                raise ClassError(f"{word!r} cannot be written to a class map (white space, "
                                 "'#' at its start or empty)")
        if name == ALL:
            raise ClassError("'all' is reserved for every word; it cannot be a class of a map")
        lines.extend(f"{word}\t{name}\n" for word in words)
    return write_text_atomic(Path(path), "".join(lines))


def from_class_map(vocab: Vocabulary, path: str | os.PathLike, encoding: str = "utf-8") -> ClassSet:
    classes = read_class_map(path, encoding)
    definitions = {n: {"words": sorted(set(ws)), "source": str(path)} for n, ws in classes.items()}
    return ClassSet.from_word_sets(vocab, classes, definitions)


def from_builtin(
    vocab: Vocabulary,
    name: str,
    word_tags: Mapping[str, Iterable[str]],
    tag_map: TagMap | None = None,
) -> ClassSet:
    """A built-in class set (see :func:`builtin_class_tags`) applied to a POS map."""
    table, fold = builtin_class_tags(name, word_tags, tag_map)
    if fold:
        word_tags = _case_fold_map(word_tags)
        table = {n: tuple(t.upper() for t in tags) for n, tags in table.items()}
    result = ClassSet.from_tag_map(vocab, word_tags, table)
    for n in table:
        result.definitions[n]["builtin"] = name
        if tag_map is not None and not isinstance(tag_map, Mapping):
            result.definitions[n]["tag_map"] = str(tag_map)
    return result


def combine(class_sets: Iterable[ClassSet]) -> ClassSet:
    """One class set holding the classes of several over the same vocabulary."""
    sets = list(class_sets)
    if not sets:
        raise ClassError("no class sets to combine")
    names = [ALL]
    columns = [sets[0].membership[:, :1]]
    definitions: dict[str, Any] = {ALL: "every word"}
    for cs in sets:
        if cs.vocab_size != sets[0].vocab_size:
            raise ClassError("class sets over different vocabularies cannot be combined")
        for j, name in enumerate(cs.names[1:], start=1):
            if name in names:
                raise ClassError(
                    f"class {name!r} is defined twice; rename a class file or pick a subset "
                    "of the built-in set (e.g. ptb:nouns+verbs)"
                )
            names.append(name)
            columns.append(cs.membership[:, j : j + 1])
            definitions[name] = cs.definitions.get(name)
    return ClassSet(names, np.concatenate(columns, axis=1), definitions)


def load_classes(
    vocab: Vocabulary,
    spec: str | Sequence[str] | None = None,
    pos_map: str | os.PathLike | Mapping[str, Iterable[str]] | None = None,
    *,
    class_words: Sequence[str | os.PathLike] = (),
    class_map: str | os.PathLike | None = None,
    tag_map: TagMap | None = None,
    encoding: str = "utf-8",
) -> ClassSet:
    """Word classes as the CLI's ``--classes/--pos-map/--tag-map/--class-words/--class-map``
    give them.

    ``spec``: built-in set names (``ptb``, ``universal``, ``universal-ptb``,
    ``universal-brown``, each optionally ``:name+name``) and/or tag class files (one
    tag per line, class named after the file); a string may list several, comma
    separated.  Both need ``pos_map`` (a POS map file or a word -> tags mapping): a
    word is in a class when any of its possible tags is (the original's rule).
    ``class_words``: word-list files, one class each.  ``class_map``: a
    ``word<TAB>class`` file.  All of them together form one class set; with none,
    only ``all``.  ``tag_map``: a fine -> universal tag map (file or dict) for the
    universal sets; needed for Brown tags, optional for PTB tags (which have a built-in
    table).
    """
    items: list[str] = []
    for s in [spec] if isinstance(spec, str) else list(spec or []):
        items.extend(p.strip() for p in str(s).split(",") if p.strip())
    if tag_map is not None and not any(
        i.partition(":")[0].lower().startswith("universal") for i in items
    ):
        # Ignoring it silently would hide a mistyped --classes value.
        raise ClassError(
            "a tag map (--tag-map) is only used by the universal class sets; add "
            "--classes universal (or universal-ptb / universal-brown)"
        )
    parts: list[ClassSet] = []
    unknown: list[str] = []  # tags the class definitions and the POS map do not share
    word_tags: Mapping[str, Iterable[str]] | None = None
    if items:
        if pos_map is None:
            raise ClassError(
                f"classes {', '.join(items)} are defined by POS tags and need a word -> tags "
                "map (--pos-map FILE); `stategrad prepare-tagged` writes one from a tagged corpus"
            )
        word_tags = (
            read_pos_map(pos_map, encoding) if isinstance(pos_map, (str, os.PathLike)) else pos_map
        )
        files: list[str] = []
        for item in items:
            base = item.partition(":")[0].lower()
            if base in BUILTIN_CLASS_SETS and not Path(item).exists():
                parts.append(from_builtin(vocab, item, word_tags, tag_map))
                unknown.extend(_unknown_map_tags(item, word_tags, tag_map, pos_map))
            elif Path(item).is_file():
                files.append(item)
            else:
                raise ClassError(
                    f"{item!r} is neither a built-in class set ({', '.join(BUILTIN_CLASS_SETS)}) "
                    "nor an existing class file"
                )
        if files:
            parts.append(from_class_files(vocab, files, word_tags, encoding))
            unknown.extend(_unknown_file_tags(parts[-1], word_tags, pos_map))
    if class_words:
        parts.append(from_word_list_files(vocab, class_words, encoding))
    if class_map is not None:
        parts.append(from_class_map(vocab, class_map, encoding))
    result = combine(parts) if parts else ClassSet.only_all(len(vocab))
    result.info = _word_type_info(items, pos_map, tag_map, class_words, class_map)
    if not parts:
        return result
    if pos_map is not None and not isinstance(pos_map, Mapping):
        result.definitions[ALL] = {"description": "every word", "pos_map": str(pos_map)}
    _check_empty_classes(result, unknown)
    return result


def _word_type_info(items: list[str], pos_map: Any, tag_map: Any,
                    class_words: Sequence[Any], class_map: Any) -> dict[str, Any]:
    """The ``info`` of a word-type class set: what defined it (files by path)."""
    def name(x: Any) -> Any:
        return None if x is None else "a mapping" if isinstance(x, Mapping) else str(x)

    return {"unit": "word type",
            "rule": "a word is in every class one of its possible tags (or its lists) is in",
            "classes": items, "pos_map": name(pos_map), "tag_map": name(tag_map),
            "class_words": [str(f) for f in class_words], "class_map": name(class_map)}


def _tag_list(tags: Iterable[str], limit: int = 15) -> str:
    shown = sorted(tags)
    more = f" ... ({len(shown)} in all)" if len(shown) > limit else ""
    return " ".join(shown[:limit]) + more


def _map_name(pos_map: Any) -> str:
    return "the POS map" if isinstance(pos_map, Mapping) else f"POS map {pos_map}"


def _unknown_map_tags(item: str, word_tags: Mapping[str, Iterable[str]],
                      tag_map: TagMap | None, pos_map: Any) -> list[str]:
    """Warn about tags of the POS map that the built-in set ``item`` does not know at
    all (not tags it merely leaves out, like punctuation in ``ptb``): their words fall
    in none of its classes, which usually means the wrong tag set or map."""
    table, fold = builtin_class_tags(item.partition(":")[0], word_tags, tag_map)
    known = {t for tags in table.values() for t in tags}
    if item.partition(":")[0].strip().lower() == "ptb":
        known |= set(PTB_UNIVERSAL)
    norm = str.upper if fold else str
    known = {norm(t) for t in known}
    unknown = {t for tags in word_tags.values() for t in tags if norm(t) not in known}
    if not unknown:
        return []
    message = (f"{_map_name(pos_map)} has tags the class set {item!r} does not know (their "
               f"words are in none of its classes): {_tag_list(unknown)}")
    warnings.warn(message, ClassWarning, stacklevel=3)
    return [message]


def _unknown_file_tags(class_set: ClassSet, word_tags: Mapping[str, Iterable[str]],
                       pos_map: Any) -> list[str]:
    """Warn about tags of class files that no word of the POS map has (a typo, or
    another tag set)."""
    map_tags = {t for tags in word_tags.values() for t in tags}
    messages = []
    for name in class_set.names[1:]:
        definition = class_set.definitions.get(name) or {}
        unknown = set(definition.get("tags", ())) - map_tags
        if unknown:
            messages.append(f"class file {definition.get('source', name)} has tags no word of "
                            f"{_map_name(pos_map)} has: {_tag_list(unknown)}")
            warnings.warn(messages[-1], ClassWarning, stacklevel=3)
    return messages


def _check_empty_classes(result: ClassSet, unknown: list[str]) -> None:
    """Warn about classes without a word of the vocabulary; refuse when every class is
    empty (the per-class averages would all be missing, silently)."""
    empty = [n for j, n in enumerate(result.names) if j and not result.membership[:, j].any()]
    if not empty:
        return
    if len(empty) == len(result.names) - 1:
        raise ClassError(f"every class is empty ({', '.join(empty)}): no word of the vocabulary "
                         "belongs to any" + ("; " + "; ".join(unknown) if unknown else ""))
    warnings.warn(f"classes with no word of the vocabulary (they will have no occurrences): "
                  f"{', '.join(empty)}", ClassWarning, stacklevel=3)


def missing_from_map(
    vocab: Vocabulary,
    word_tags: Mapping[str, Iterable[str]],
    tokens: np.ndarray | None = None,
    ignore: Iterable[str] = (EOS, BOS),
) -> list[tuple[str, int]]:
    """Words with no entry in a POS map: ``(word, count)`` pairs.

    With ``tokens`` (a text's ids), only words of that text, counted there and
    ordered by falling count; without, every vocabulary word (count 0), in id order.
    Such words belong to no tag-defined class, as in the original.
    """
    skip = set(ignore)
    if tokens is None:
        return [(w, 0) for w in vocab.words if w not in word_tags and w not in skip]
    counts = np.bincount(np.asarray(tokens, dtype=np.int64), minlength=len(vocab))
    out = [
        (vocab.words[i], int(counts[i]))
        for i in np.nonzero(counts)[0]
        if vocab.words[i] not in word_tags and vocab.words[i] not in skip
    ]
    return sorted(out, key=lambda wc: (-wc[1], wc[0]))
