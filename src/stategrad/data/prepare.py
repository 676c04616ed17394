"""Tagged corpora to LM text: :func:`prepare_tagged` writes one sentence per line, the
POS map and the tag counts; :func:`oov_rate` measures a text against a vocabulary."""

from __future__ import annotations

import collections
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..atomic import write_atomic
from .corpus import BOS, EOS, UNK, Vocabulary
from .tag_files import write_pos_map, write_tag_counts
from .tagged import (
    FORMATS,
    TAGSETS,
    Sentence,
    TaggedError,
    detect_format,
    detect_tagset,
    iter_tagged_sentences,
    normalize_sentence,
    split_tags,
)


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
    _check_options(inputs, fmt, tagset, vocab_size)
    formats, the_tagset = _formats_and_tagset(inputs, fmt, tagset, encoding)
    source = _Source(inputs, formats, the_tagset, normalize, encoding)
    keep = _kept_words(source, vocab_size)
    out_text = Path(out_text)
    written = _write_text(source, out_text, keep, encoding)

    word_tags = word_tags_from_counts(
        written.tag_counter, min_count=min_tag_count, min_fraction=min_tag_fraction
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
    vocabulary = Vocabulary.from_counts(written.word_counts)
    if pos_map_path:
        order = [w for w in vocabulary.words
                 if w in word_tags or w == UNK and UNK in written.word_counts]
        write_pos_map(pos_map_path, {w: word_tags.get(w, []) for w in order})
    if counts_path:
        write_tag_counts(counts_path, written.tag_counter)
    return PreparedCorpus(
        text_path=out_text,
        pos_map_path=Path(pos_map_path) if pos_map_path else None,
        tag_counts_path=Path(counts_path) if counts_path else None,
        formats=formats,
        tagset=the_tagset,
        sentences=written.sentences,
        tokens=written.tokens,
        dropped_tokens=written.dropped,
        unk_tokens=written.unk,
        vocabulary=vocabulary,
        tag_counts=written.tag_counter,
        word_tags=word_tags,
    )


def _check_options(inputs: Sequence[os.PathLike | str], fmt: str | None, tagset: str | None,
                   vocab_size: int | None) -> None:
    if not inputs:
        raise TaggedError("no tagged input files given")
    if fmt is not None and fmt not in FORMATS:
        raise TaggedError(f"unknown tagged format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if tagset is not None and tagset not in TAGSETS:
        raise TaggedError(f"unknown tag set {tagset!r}; choose one of {', '.join(TAGSETS)}")
    if vocab_size is not None and vocab_size < 2:
        raise TaggedError(f"vocabulary size must be at least 2 (<unk> and <eos>), got {vocab_size}")


def _formats_and_tagset(inputs: Sequence[os.PathLike | str], fmt: str | None,
                        tagset: str | None, encoding: str) -> tuple[dict[str, str], str]:
    """Each input's format (given or detected) and the one tag set they share."""
    formats = {str(p): fmt or detect_format(p, encoding) for p in inputs}
    tagsets = {tagset or detect_tagset(f) for f in formats.values()}
    if len(tagsets) > 1:
        raise TaggedError(
            f"the inputs mix tag sets ({', '.join(sorted(tagsets))}): {formats}; "
            "combine files of one tag set, or give --tagset"
        )
    return formats, tagsets.pop()


@dataclass
class _Source:
    """The tagged inputs as one stream of sentences, read afresh on every pass."""

    inputs: Sequence[os.PathLike | str]
    formats: dict[str, str]
    tagset: str
    normalize: bool
    encoding: str

    def sentences(self) -> Iterator[tuple[Sentence, int]]:
        """(sentence, number of tokens normalisation dropped from it)."""
        for p in self.inputs:
            for sentence in iter_tagged_sentences(p, self.formats[str(p)],
                                                  encoding=self.encoding):
                if self.normalize:
                    kept = normalize_sentence(sentence, self.tagset)
                    yield kept, len(sentence) - len(kept)
                else:
                    yield sentence, 0


def _kept_words(source: _Source, vocab_size: int | None) -> set[str] | None:
    """The words that stay themselves under the ``vocab_size`` cap (None: all of them)."""
    if vocab_size is None:
        return None
    counts: collections.Counter = collections.Counter()
    for sentence, _ in source.sentences():
        if sentence:
            counts.update(w for w, _ in sentence)
            counts[EOS] += 1
    # from_counts' cap includes <bos>, which the LM adds and the text never holds.
    return set(Vocabulary.from_counts(counts, vocab_size + 1).words) - {BOS}


@dataclass
class _Written:
    """What :func:`_write_text` wrote: counts of the text as it came out."""

    tag_counter: collections.Counter = field(default_factory=collections.Counter)
    word_counts: collections.Counter = field(default_factory=collections.Counter)
    sentences: int = 0
    tokens: int = 0
    dropped: int = 0
    unk: int = 0


def _write_text(source: _Source, out_text: Path, keep: set[str] | None,
                encoding: str) -> _Written:
    """One sentence per line, words outside ``keep`` as <unk>; atomic, and refused when
    no word is left."""
    out_text.parent.mkdir(parents=True, exist_ok=True)
    written = _Written()

    def write(tmp: Path) -> None:
        with open(tmp, "w", encoding=encoding) as handle:
            for sentence, dropped in source.sentences():
                written.dropped += dropped
                if not sentence:
                    continue
                words = []
                for word, tag in sentence:
                    if keep is not None and word not in keep:
                        written.unk += 1
                        word = UNK
                    words.append(word)
                    written.tag_counter[word, tag] += 1
                handle.write(" ".join(words) + "\n")
                written.word_counts.update(words)
                written.word_counts[EOS] += 1
                written.sentences += 1
                written.tokens += len(words)
        if written.sentences == 0:
            raise TaggedError(f"no words left in {', '.join(map(str, source.inputs))} "
                              "after reading")

    write_atomic(out_text, write)
    return written


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
