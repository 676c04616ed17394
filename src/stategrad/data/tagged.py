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

Outputs are one sentence per line of text, a POS map in the original code's
format (``word TAG TAG ...``: a word and its possible tags) and a tag-count
file (``word<TAB>tag<TAB>count``).
"""

from __future__ import annotations

import ast
import collections
import contextlib
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..atomic import write_atomic
from .corpus import BOS, EOS, UNK, CorpusError, Vocabulary

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


# --- preparing LM text --------------------------------------------------------------------


@dataclass
class PreparedCorpus:
    """What :func:`prepare_tagged` wrote and how the text came out."""

    text_path: Path
    pos_map_path: Path | None
    tag_counts_path: Path | None
    formats: dict[str, str]
    tagset: str
    sentences: int
    tokens: int  # written words, <eos> not counted
    dropped_tokens: int
    unk_tokens: int
    vocabulary: Vocabulary  # of the written text (with <eos>, and <unk>/<bos> as the LM adds)
    tag_counts: collections.Counter = field(repr=False)  # (word, tag) -> count
    word_tags: dict[str, list[str]] = field(repr=False)

    def summary(self) -> str:
        lines = [
            f"wrote {self.text_path}: {self.sentences} sentences, {self.tokens} words, "
            f"{len(self.vocabulary.words) - 1} distinct (with <eos>{', <unk>' if self.unk_tokens else ''})",
        ]
        if self.dropped_tokens:
            lines.append(f"dropped {self.dropped_tokens} punctuation/empty tokens")
        if self.unk_tokens:
            lines.append(
                f"mapped {self.unk_tokens} rare tokens ({100 * self.unk_tokens / max(self.tokens, 1):.2f}%) to <unk>"
            )
        if self.pos_map_path:
            lines.append(f"wrote {self.pos_map_path}: tags of {len(self.word_tags)} words")
        if self.tag_counts_path:
            lines.append(f"wrote {self.tag_counts_path}: {len(self.tag_counts)} (word, tag) pairs")
        return "\n".join(lines)


def word_tags_from_counts(
    counts: Mapping[tuple[str, str], int],
    *,
    min_count: int = 1,
    min_fraction: float = 0.0,
    split_ambiguous: bool = True,
) -> dict[str, list[str]]:
    """Each word's possible tags, most frequent first.

    A tag is kept when it was seen at least ``min_count`` times with the word and
    accounts for at least ``min_fraction`` of the word's tokens; this drops rare
    mis-taggings (``the`` tagged ``NNP`` in a title) that would otherwise put a
    word into a class for every one of its tokens.  The most frequent tag of a
    word is always kept.  Ambiguous tags ``A|B`` count for both ``A`` and ``B``.
    """
    per_word: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for (word, tag), n in counts.items():
        for t in split_tags(tag) if split_ambiguous else [tag]:
            per_word[word][t] += n
    result: dict[str, list[str]] = {}
    for word, tags in per_word.items():
        total = sum(tags.values())
        ordered = sorted(tags.items(), key=lambda kv: (-kv[1], kv[0]))
        kept = [
            t
            for i, (t, n) in enumerate(ordered)
            if i == 0 or (n >= min_count and n >= min_fraction * total)
        ]
        result[word] = kept
    return result


def _default_side_path(text_path: Path, suffix: str) -> Path:
    stem = text_path.name[: -len(text_path.suffix)] if text_path.suffix else text_path.name
    return text_path.with_name(stem + suffix)


def prepare_tagged(
    inputs: Sequence[os.PathLike | str],
    out_text: os.PathLike | str,
    *,
    fmt: str | None = None,
    tagset: str | None = None,
    normalize: bool = False,
    vocab_size: int | None = None,
    pos_map: os.PathLike | str | None | bool = True,
    tag_counts: os.PathLike | str | None | bool = True,
    unk_tags: bool = False,
    min_tag_count: int = 1,
    min_tag_fraction: float = 0.01,
    encoding: str = "utf-8",
) -> PreparedCorpus:
    """Turn tagged files into LM text (one sentence per line), a POS map and tag counts.

    ``vocab_size`` caps the number of distinct words of the text, ``<unk>`` and
    ``<eos>`` included (as PTB's 10k); the rarest words become ``<unk>``, chosen
    with :meth:`Vocabulary.from_counts` so a model reading the text gets exactly
    that vocabulary plus ``<bos>``.  ``pos_map``/``tag_counts``: a path, ``True``
    for ``<text stem>.pos-map.txt`` / ``<text stem>.tag-counts.tsv`` next to the
    text, or ``None``/``False`` for none.  ``unk_tags`` gives ``<unk>`` the tags of
    the words it replaced (off by default: ``<unk>`` would join nearly every class).
    """
    if not inputs:
        raise TaggedError("no tagged input files given")
    if fmt is not None and fmt not in FORMATS:
        raise TaggedError(f"unknown tagged format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if tagset is not None and tagset not in TAGSETS:
        raise TaggedError(f"unknown tag set {tagset!r}; choose one of {', '.join(TAGSETS)}")
    if vocab_size is not None and vocab_size < 2:
        raise TaggedError(f"vocabulary size must be at least 2 (<unk> and <eos>), got {vocab_size}")
    formats = {str(p): fmt or detect_format(p, encoding) for p in inputs}
    tagsets = {tagset or detect_tagset(f) for f in formats.values()}
    if len(tagsets) > 1:
        raise TaggedError(
            f"the inputs mix tag sets ({', '.join(sorted(tagsets))}): {formats}; "
            "combine files of one tag set, or give --tagset"
        )
    the_tagset = tagsets.pop()

    def sentences() -> Iterator[tuple[Sentence, int]]:
        for p in inputs:
            for sentence in iter_tagged_sentences(p, formats[str(p)], encoding=encoding):
                if normalize:
                    kept = normalize_sentence(sentence, the_tagset)
                    yield kept, len(sentence) - len(kept)
                else:
                    yield sentence, 0

    keep: set[str] | None = None
    if vocab_size is not None:
        counts: collections.Counter = collections.Counter()
        for sentence, _ in sentences():
            if sentence:
                counts.update(w for w, _ in sentence)
                counts[EOS] += 1
        # from_counts' cap includes <bos>, which the LM adds and the text never holds.
        keep = set(Vocabulary.from_counts(counts, vocab_size + 1).words) - {BOS}

    out_text = Path(out_text)
    out_text.parent.mkdir(parents=True, exist_ok=True)
    tag_counter: collections.Counter = collections.Counter()
    word_counts: collections.Counter = collections.Counter()
    n_sent = n_tok = n_drop = n_unk = 0
    tmp = out_text.with_name(out_text.name + ".tmp")
    with _removed_on_error(tmp), open(tmp, "w", encoding=encoding) as handle:
        for sentence, dropped in sentences():
            n_drop += dropped
            if not sentence:
                continue
            words = []
            for word, tag in sentence:
                if keep is not None and word not in keep:
                    n_unk += 1
                    word = UNK
                words.append(word)
                tag_counter[word, tag] += 1
            handle.write(" ".join(words) + "\n")
            word_counts.update(words)
            word_counts[EOS] += 1
            n_sent += 1
            n_tok += len(words)
    if n_sent == 0:
        tmp.unlink()
        raise TaggedError(f"no words left in {', '.join(map(str, inputs))} after reading")
    os.replace(tmp, out_text)

    word_tags = word_tags_from_counts(
        tag_counter, min_count=min_tag_count, min_fraction=min_tag_fraction
    )
    if not unk_tags:
        word_tags.pop(UNK, None)
    pos_map_path = (
        _default_side_path(out_text, ".pos-map.txt") if pos_map is True else pos_map or None
    )
    counts_path = (
        _default_side_path(out_text, ".tag-counts.tsv")
        if tag_counts is True
        else tag_counts or None
    )
    vocabulary = Vocabulary.from_counts(word_counts)
    if pos_map_path:
        order = [w for w in vocabulary.words if w in word_tags or w == UNK and UNK in word_counts]
        write_pos_map(pos_map_path, {w: word_tags.get(w, []) for w in order})
    if counts_path:
        write_tag_counts(counts_path, tag_counter)
    return PreparedCorpus(
        text_path=out_text,
        pos_map_path=Path(pos_map_path) if pos_map_path else None,
        tag_counts_path=Path(counts_path) if counts_path else None,
        formats=formats,
        tagset=the_tagset,
        sentences=n_sent,
        tokens=n_tok,
        dropped_tokens=n_drop,
        unk_tokens=n_unk,
        vocabulary=vocabulary,
        tag_counts=tag_counter,
        word_tags=word_tags,
    )


def oov_rate(
    path: os.PathLike | str, words: Iterable[str], **read_kwargs
) -> tuple[float, int, int]:
    """Share of the tokens of an LM text (``<eos>`` not counted) outside ``words``.

    Tokens that already read ``<unk>`` in the text count as out of vocabulary.
    Returns ``(rate, oov_tokens, tokens)``.
    """
    from .corpus import iter_sentences

    known = set(words) - {UNK}
    total = oov = 0
    for sentence in iter_sentences(path, no_eos=True, **read_kwargs):
        total += len(sentence)
        oov += sum(1 for w in sentence if w not in known)
    return (oov / total if total else 0.0), oov, total


# --- POS map, tag counts and class files --------------------------------------------------


@contextlib.contextmanager
def _removed_on_error(tmp: Path) -> Iterator[None]:
    """Delete a half-written temporary file when writing it fails (a full disk, bad input)."""
    try:
        yield
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


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
