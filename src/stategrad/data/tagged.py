"""POS-tagged corpora: read them, turn them into LM text plus a word -> tags map.

Three input formats are read:

``conll``
    One token per line, ``word TAG [more columns]``, a blank line between
    sentences (CoNLL-2000 chunking data).  ``-DOCSTART-`` lines are skipped.
``bracketed``
    The Penn Treebank ``.pos`` files: ``word/TAG`` tokens, ``[ ... ]`` chunk
    brackets, ``=====`` separators, ``\\/`` for a slash inside a word and
    ``A|B`` for an ambiguous tag.  Blank lines are not reliable sentence ends
    in these files (a sentence may be split across blocks), so a sentence ends at
    a blank line only after a sentence-final token (tag ``.``, possibly followed by
    closing quotes or brackets), and always at a separator or the end of the file.
``brown``
    One sentence per line of ``word/tag`` tokens (Brown corpus; ``#FILE`` lines
    and blank lines are skipped).

The optional normalisation reproduces Mikolov's PTB text (``simple-examples``):
lower case, a token of digits (``3``, ``1,000``, ``1\\/2``) or ``%`` becomes ``N``,
punctuation tokens are dropped, ``$``, ``&`` and ``#`` stay (checked against PTB
valid/test: ``1990s`` and ``30-year`` keep their digits, ``%`` reads ``N``).  ``-NONE-`` tokens (empty
elements of the treebank) are never words and are always dropped.

:func:`stategrad.data.prepare.prepare_tagged` turns them into one sentence per line
of text, a POS map in the original code's format (``word TAG TAG ...``: a word and its
possible tags) and a tag-count file (``word<TAB>tag<TAB>count``), which
:mod:`.tag_files` writes and reads.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

from .corpus import CorpusError

FORMATS = ("conll", "bracketed", "brown")
TAGSETS = ("ptb", "brown")

Sentence = list[tuple[str, str]]

# Punctuation in the PTB tag set (CoNLL-2000 writes brackets as "(" and ")").  "#" is
# not here: PTB valid/test keep the pound sign ("# N million"), as they keep "$".
PTB_PUNCTUATION_TAGS = frozenset(
    {",", ".", ":", "``", "''", "-LRB-", "-RRB-", "(", ")", "-LCB-", "-RCB-"}
)
# Brown punctuation tags, once the -hl/-tl/-nc suffixes are removed ("*" is "not": a word).
BROWN_PUNCTUATION_TAGS = frozenset({",", ".", ":", "``", "''", "'", "(", ")", "--"})
EMPTY_ELEMENT_TAG = "-NONE-"
NUMBER_TOKEN = "N"

_DIGIT = re.compile(r"\d")
_LETTER = re.compile(r"[^\W\d_]")
# A word/TAG token: the tag follows the last slash that is not escaped as "\/".
_SLASH_TOKEN = re.compile(r"^(?P<word>.*?)(?<!\\)/(?P<tag>[^/]+)$")
_BROWN_SUFFIXES = ("-hl", "-tl", "-nc")
NOT_IN_LIST = "not in list"


class TaggedError(CorpusError):
    """A tagged corpus, POS map or class file that cannot be used as asked."""


# --- tags ---------------------------------------------------------------------------------


def split_tags(tag: str) -> list[str]:
    """``"VBD|VBN"`` -> ``["VBD", "VBN"]``: the treebank's way of writing an ambiguous tag."""
    return [t for t in tag.split("|") if t]


def _brown_base(tag: str) -> str:
    """A Brown tag without its headline/title/cited suffixes and foreign-word prefix."""
    tag = tag.lower()
    changed = True
    while changed:
        changed = False
        for suffix in _BROWN_SUFFIXES:
            if tag.endswith(suffix) and len(tag) > len(suffix):
                tag = tag[: -len(suffix)]
                changed = True
    if tag.startswith("fw-"):
        tag = tag[3:]
    return tag


def is_punctuation(tag: str, tagset: str = "ptb") -> bool:
    """Whether a token with this tag is punctuation in Mikolov's PTB normalisation."""
    if tagset == "ptb":
        return all(t in PTB_PUNCTUATION_TAGS for t in split_tags(tag)) and bool(split_tags(tag))
    if tagset == "brown":
        return _brown_base(tag) in BROWN_PUNCTUATION_TAGS
    raise TaggedError(f"unknown tag set {tagset!r}; choose one of {', '.join(TAGSETS)}")


def is_number_token(word: str) -> bool:
    """Whether Mikolov's PTB text writes this token as ``N``.

    PTB valid/test show the rule in use: every token made of digits and number
    punctuation (``3``, ``1,000``, ``9.5``, ``1\\/2``, ``50-50``) reads ``N``, and so
    does ``%`` (``N N`` for "5 %"), whatever its tag; tokens with letters keep their
    form (``1990s``, ``30-year``, ``300-a-share``).
    """
    return word == "%" or (_DIGIT.search(word) is not None and _LETTER.search(word) is None)


def normalize_sentence(sentence: Sentence, tagset: str = "ptb") -> Sentence:
    """Mikolov's PTB conventions: lower case, numbers -> ``N``, no punctuation.

    ``$``, ``&`` and ``#`` (pound sterling: "# N million") stay, as they do in PTB
    valid/test.
    """
    out: Sentence = []
    for word, tag in sentence:
        if tag == EMPTY_ELEMENT_TAG or is_punctuation(tag, tagset):
            continue
        out.append((NUMBER_TOKEN if is_number_token(word) else word.lower(), tag))
    return out


# --- reading ------------------------------------------------------------------------------


def _split_slash_token(token: str, path: os.PathLike | str, lineno: int) -> tuple[str, str]:
    match = _SLASH_TOKEN.match(token)
    if match is None or not match.group("word"):
        raise TaggedError(
            f"{path}:{lineno}: token {token!r} is not 'word/TAG'; "
            "check the --format option (conll, bracketed or brown)"
        )
    return match.group("word"), match.group("tag")


def _lines(path: os.PathLike | str, encoding: str) -> Iterator[tuple[int, str]]:
    path = Path(path)
    if not path.is_file():
        raise TaggedError(f"tagged corpus not found: {path}")
    with open(path, encoding=encoding, errors="strict") as handle:
        try:
            for lineno, line in enumerate(handle, 1):
                yield lineno, line.rstrip("\n").rstrip("\r")
        except UnicodeDecodeError as exc:
            raise TaggedError(
                f"{path} is not valid {encoding} text ({exc.reason} at byte {exc.start}); "
                "pass the file's encoding with --encoding"
            ) from exc


def _read_conll(path, encoding: str) -> Iterator[Sentence]:
    sentence: Sentence = []
    for lineno, line in _lines(path, encoding):
        fields = line.split()
        if not fields:
            if sentence:
                yield sentence
                sentence = []
            continue
        if fields[0] == "-DOCSTART-":
            continue
        if len(fields) < 2:
            raise TaggedError(
                f"{path}:{lineno}: expected 'word TAG [chunk]' columns, got {line!r}; "
                "check the --format option"
            )
        slashed = _SLASH_TOKEN.match(fields[1])
        if slashed and slashed.group("word"):
            # word/TAG tokens read as columns would give tags like "Vinken/NNP", silently
            raise TaggedError(
                f"{path}:{lineno}: {line.strip()!r} holds word/TAG tokens, not 'word TAG' "
                "columns; check the --format option (bracketed or brown)"
            )
        sentence.append((fields[0], fields[1]))
    if sentence:
        yield sentence


def _sentence_final(sentence: Sentence) -> bool:
    closing = {"''", "'", ")", "-RRB-", "-RCB-"}
    i = len(sentence) - 1
    while i >= 0 and sentence[i][1] in closing:
        i -= 1
    return i >= 0 and sentence[i][1] == "."


def _read_bracketed(path, encoding: str) -> Iterator[Sentence]:
    sentence: Sentence = []
    for lineno, line in _lines(path, encoding):
        stripped = line.strip()
        if stripped.startswith("=====") or stripped.startswith("*x*"):
            if sentence:
                yield sentence
                sentence = []
            continue
        if not stripped:
            if sentence and _sentence_final(sentence):
                yield sentence
                sentence = []
            continue
        for token in stripped.split():
            if token in ("[", "]"):
                continue
            sentence.append(_split_slash_token(token, path, lineno))
    if sentence:
        yield sentence


def _read_brown(path, encoding: str) -> Iterator[Sentence]:
    for lineno, line in _lines(path, encoding):
        stripped = line.strip()
        if not stripped or stripped.startswith("#FILE"):
            continue
        yield [_split_slash_token(token, path, lineno) for token in stripped.split()]


_READERS = {"conll": _read_conll, "bracketed": _read_bracketed, "brown": _read_brown}


def detect_format(path: os.PathLike | str, encoding: str = "utf-8", sample_lines: int = 200) -> str:
    """Guess the format of a tagged file from its first lines."""
    conll = slash = bracket = lower_tags = upper_tags = 0
    seen = 0
    for lineno, line in _lines(path, encoding):
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith("#FILE"):
            return "brown"
        if stripped.startswith("====="):
            return "bracketed"
        tokens = stripped.split()
        if tokens[0] in ("[", "]") or tokens[-1] in ("[", "]"):
            bracket += 1
        slashed = [_SLASH_TOKEN.match(t) for t in tokens if t not in ("[", "]")]
        if slashed and all(slashed):
            slash += 1
            for m in slashed:
                tag = m.group("tag")  # type: ignore[union-attr]
                if tag.lower() != tag:
                    upper_tags += 1
                elif tag.upper() != tag:
                    lower_tags += 1
        elif 2 <= len(tokens) <= 12 and tokens[1] == tokens[1].upper() and "/" not in tokens[1]:
            # CoNLL tag columns hold upper-case tags or punctuation, never plain words
            conll += 1
        seen += 1
        if seen >= sample_lines or lineno > 20 * sample_lines:
            break
    if seen == 0:
        raise TaggedError(f"{path} holds no tagged text")
    if conll > slash:
        return "conll"
    if slash == 0:
        raise TaggedError(
            f"cannot tell the format of {path}: expected 'word TAG' columns or 'word/TAG' "
            "tokens; give --format"
        )
    if bracket or upper_tags > lower_tags:
        return "bracketed"
    return "brown"


def detect_tagset(fmt: str) -> str:
    return "brown" if fmt == "brown" else "ptb"


def iter_tagged_sentences(
    path: os.PathLike | str, fmt: str | None = None, *, encoding: str = "utf-8"
) -> Iterator[Sentence]:
    """Yield each sentence of ``path`` as ``[(word, tag), ...]``; ``fmt=None`` detects it."""
    fmt = fmt or detect_format(path, encoding)
    if fmt not in _READERS:
        raise TaggedError(f"unknown tagged format {fmt!r}; choose one of {', '.join(FORMATS)}")
    for sentence in _READERS[fmt](path, encoding):
        sentence = [(w, t) for w, t in sentence if t != EMPTY_ELEMENT_TAG]
        if sentence:
            yield sentence
