"""The files beside a tagged corpus: the POS map (``word TAG TAG ...``, the original
code's format), the tag counts (``word<TAB>tag<TAB>count``) and class files (tags or
words, one per line)."""

from __future__ import annotations

import ast
import collections
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..atomic import write_atomic
from .tagged import NOT_IN_LIST, TaggedError, _lines, split_tags


def write_pos_map(path: os.PathLike | str, word_tags: Mapping[str, Sequence[str]]) -> None:
    """``word TAG TAG ...`` per line, the original's POS map format.

    A word without tags is written as ``word not in list``, a line the original's
    scripts (and :func:`read_pos_map`) skip.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    def write(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8") as handle:
            for word, tags in word_tags.items():
                if any(c.isspace() for c in word):
                    raise TaggedError(
                        f"word {word!r} holds white space and cannot be written to a POS map"
                    )
                handle.write(f"{word} {' '.join(tags) if tags else NOT_IN_LIST}\n")

    write_atomic(path, write)


def _parse_map_tags(rest: str) -> list[str]:
    rest = rest.strip()
    tags: list[str] = []
    if rest.startswith("["):
        # A Python list printed by the original's tooling: ['NN', 'VB'].
        try:
            value = ast.literal_eval(rest)
        except (ValueError, SyntaxError):
            value = None
        if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
            for v in value:
                tags.extend(split_tags(v.strip()))
            return tags
    for token in rest.split():
        # The original's decoration rule: [ , ] and quotes around each tag.
        token = token.lstrip("[").rstrip(",").rstrip("]").strip("'\"")
        tags.extend(split_tags(token))
    return tags


def read_pos_map(path: os.PathLike | str, encoding: str = "utf-8") -> dict[str, list[str]]:
    """Read a word -> possible tags map (the original's format, or ours).

    A line is a word and then its tags, separated by white space; tags may be
    written as a Python list (``['NN', 'VB']``), carry ``[ , ] '`` decoration or be
    joined by ``|``.  Lines reading ``word not in list`` are skipped.  A word on
    several lines gets the union of its tags.
    """
    path = Path(path)
    if not path.is_file():
        raise TaggedError(f"POS map not found: {path}")
    result: dict[str, list[str]] = {}
    with open(path, encoding=encoding) as handle:
        try:
            for lineno, line in enumerate(handle, 1):
                parts = line.split(maxsplit=1)
                if not parts:
                    continue
                if len(parts) == 1:
                    raise TaggedError(f"{path}:{lineno}: word {parts[0]!r} has no tags")
                word, rest = parts
                if rest.strip() == NOT_IN_LIST:
                    continue
                tags = _parse_map_tags(rest)
                if not tags:
                    raise TaggedError(
                        f"{path}:{lineno}: no tags could be read from {line.rstrip()!r}"
                    )
                known = result.setdefault(word, [])
                known.extend(t for t in tags if t not in known)
        except UnicodeDecodeError as exc:
            raise TaggedError(f"{path} is not valid {encoding} text ({exc.reason})") from exc
    if not result:
        raise TaggedError(f"POS map {path} holds no word with tags")
    return result


def read_class_file(path: os.PathLike | str, encoding: str = "utf-8") -> list[str]:
    """A class file: its tags (or words), one per line (white space also separates)."""
    path = Path(path)
    if not path.is_file():
        raise TaggedError(f"class file not found: {path}")
    items = [t for _, line in _lines(path, encoding) if not line.lstrip().startswith("#")
             for t in line.split()]
    if not items:
        raise TaggedError(f"class file {path} is empty")
    return list(dict.fromkeys(items))


def write_tag_counts(path: os.PathLike | str, counts: Mapping[tuple[str, str], int]) -> None:
    """``word<TAB>tag<TAB>count`` per line, words by falling frequency then tags by count."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    totals: collections.Counter = collections.Counter()
    for (word, _), n in counts.items():
        totals[word] += n
    rows = sorted(counts.items(), key=lambda kv: (-totals[kv[0][0]], kv[0][0], -kv[1], kv[0][1]))

    def write(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write("word\ttag\tcount\n")
            for (word, tag), n in rows:
                handle.write(f"{word}\t{tag}\t{n}\n")

    write_atomic(path, write)


def read_tag_counts(path: os.PathLike | str) -> collections.Counter:
    """Read a file written by :func:`write_tag_counts`."""
    path = Path(path)
    if not path.is_file():
        raise TaggedError(f"tag-count file not found: {path}")
    counts: collections.Counter = collections.Counter()
    with open(path, encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, 1):
            parts = line.rstrip("\n").split("\t")
            if lineno == 1 and parts == ["word", "tag", "count"]:
                continue
            if len(parts) != 3 or not parts[2].isdigit():
                raise TaggedError(
                    f"{path}:{lineno}: expected 'word<TAB>tag<TAB>count', got {line!r}"
                )
            counts[parts[0], parts[1]] += int(parts[2])
    return counts
