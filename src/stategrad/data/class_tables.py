"""The built-in class sets: word classes over the Penn Treebank tags, the 12 universal
tags with the PTB -> universal table, and fine -> universal tag maps read from files.
:mod:`.classes` builds class sets of a vocabulary from them."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path


class ClassError(ValueError):
    """Class definitions that cannot be used as asked."""


# Word classes over the Penn Treebank tag set.  Finer than the universal tags where the
# distinction matters for memory analyses: modals and infinitival "to" get their own
# classes instead of joining verbs / particles, and wh-words join the class they behave
# like (WDT determiners, WP/WP$ pronouns, WRB adverbs).  Tags left out (EX FW LS SYM UH
# $ # and punctuation) are rare or not words; use class files to include them.
PTB_CLASSES: dict[str, tuple[str, ...]] = {
    "nouns": ("NN", "NNS", "NNP", "NNPS"),
    "verbs": ("VB", "VBD", "VBG", "VBN", "VBP", "VBZ"),
    "modals": ("MD",),
    "adjectives": ("JJ", "JJR", "JJS"),
    "adverbs": ("RB", "RBR", "RBS", "WRB"),
    "determiners": ("DT", "PDT", "WDT"),
    "prepositions": ("IN",),
    "to": ("TO",),
    "pronouns": ("PRP", "PRP$", "WP", "WP$"),
    "numbers": ("CD",),
    "conjunctions": ("CC",),
    "particles": ("RP",),
    "possessives": ("POS",),
}

# The 12 universal tags of Petrov, Das & McDonald (2012); "." (punctuation) is named PUNCT
# here because class names end up in file names and plot labels.
UNIVERSAL_TAGS = (
    "NOUN",
    "VERB",
    "ADJ",
    "ADV",
    "PRON",
    "DET",
    "ADP",
    "NUM",
    "CONJ",
    "PRT",
    ".",
    "X",
)
_UNIVERSAL_NAMES = {".": "PUNCT"}
BUILTIN_CLASS_SETS = ("ptb", "universal", "universal-ptb", "universal-brown")

# Penn Treebank tags -> universal tags, after Petrov, Das & McDonald (2012), "A Universal
# Part-of-Speech Tagset" (LREC).  Written out here (grouped by universal tag) rather than
# read from a data file so the package carries no third-party tables.  Points worth
# knowing: MD is a VERB; EX, PDT and WDT are determiners; POS, RP and TO are particles;
# WRB is an adverb; UH, FW, LS and SYM are X; every punctuation tag, "$" and "#"
# included, is ".".
_PTB_BY_UNIVERSAL: dict[str, tuple[str, ...]] = {
    "NOUN": ("NN", "NNS", "NNP", "NNPS"),
    "VERB": ("VB", "VBD", "VBG", "VBN", "VBP", "VBZ", "MD"),
    "ADJ": ("JJ", "JJR", "JJS"),
    "ADV": ("RB", "RBR", "RBS", "WRB"),
    "PRON": ("PRP", "PRP$", "WP", "WP$"),
    "DET": ("DT", "PDT", "WDT", "EX"),
    "ADP": ("IN",),
    "NUM": ("CD",),
    "CONJ": ("CC",),
    "PRT": ("POS", "RP", "TO"),
    ".": (".", ",", ":", "``", "''", "-LRB-", "-RRB-", "(", ")", "#", "$", "!", "?"),
    "X": ("FW", "LS", "SYM", "UH"),
}
# Labels outside the 45-tag set that occur in treebank releases (ambiguous "A|B" tags,
# phrase labels or typos used as POS tags); the published table maps them too, so a POS
# map built from such a release loses no words.
_PTB_IRREGULAR: dict[str, str] = {
    "JJRJR": "ADJ", "JJ|RB": "ADJ", "JJ|VBG": "ADJ",
    "IN|RP": "ADP",
    "RB|RP": "ADV", "RB|VBG": "ADV",
    "NN|NNS": "NOUN", "NN|SYM": "NOUN", "NN|VBG": "NOUN", "NP": "NOUN",
    "PRP|VBP": "PRON",
    "PRT": "PRT",
    "VBD|VBN": "VERB", "VBG|NN": "VERB", "VBP|TO": "VERB", "VP": "VERB",
    "CD|RB": "X", "RN": "X", "WH": "X",
}  # fmt: skip
PTB_UNIVERSAL: dict[str, str] = {
    **{fine: coarse for coarse, tags in _PTB_BY_UNIVERSAL.items() for fine in tags},
    **_PTB_IRREGULAR,
}

TAG_MAP_HINT = (
    "pass a fine -> universal tag map (tag_map=FILE in Python, --tag-map FILE on the command "
    "line), two tab-separated columns per line, e.g. ../shared/data/tagsets/en-brown.map "
    "from Petrov et al.'s universal-pos-tags tables"
)


def read_universal_map(path: str | os.PathLike, encoding: str = "utf-8") -> dict[str, str]:
    """A fine -> universal tag map file: ``FINE<TAB>UNIVERSAL`` per line (e.g. Petrov et
    al.'s ``en-brown.map``).  The universal column must be one of the 12 universal tags
    (``PUNCT`` is accepted for ``.``); blank lines and ``#`` comments are skipped."""
    path = Path(path)
    if not path.is_file():
        raise ClassError(f"tag map not found: {path} ({TAG_MAP_HINT})")
    mapping: dict[str, str] = {}
    with open(path, encoding=encoding) as handle:
        for lineno, line in enumerate(handle, 1):
            text = line.rstrip("\n")
            # "#" is a tag (PTB's pound sign), so only "# " or a bare "#" line is a comment.
            if not text.strip() or text.startswith("# ") or text.strip() == "#":
                continue
            parts = text.split("\t") if "\t" in text else text.split()
            parts = [p.strip() for p in parts]
            if len(parts) != 2 or not all(parts):
                raise ClassError(f"{path}:{lineno}: expected 'FINE<TAB>UNIVERSAL', got {text!r}")
            fine, coarse = parts
            coarse = "." if coarse.upper() == "PUNCT" else coarse.upper()
            if coarse not in UNIVERSAL_TAGS:
                raise ClassError(
                    f"{path}:{lineno}: {parts[1]!r} is not a universal tag; use one of "
                    f"{' '.join(UNIVERSAL_TAGS)} (or PUNCT for '.')"
                )
            if mapping.get(fine, coarse) != coarse:
                raise ClassError(
                    f"{path}:{lineno}: tag {fine!r} mapped to {coarse} here but to "
                    f"{mapping[fine]} on an earlier line"
                )
            mapping[fine] = coarse
    if not mapping:
        raise ClassError(f"tag map {path} is empty")
    return mapping


TagMap = str | os.PathLike | Mapping[str, str]


def universal_mapping(tagset: str = "ptb", tag_map: TagMap | None = None) -> dict[str, str]:
    """Fine tag -> universal tag.

    With ``tag_map`` (a map file, see :func:`read_universal_map`, or a dict), that map;
    otherwise the built-in Penn Treebank table :data:`PTB_UNIVERSAL` for ``tagset="ptb"``.
    Brown tags (``tagset="brown"``) have no built-in table: they need ``tag_map``.
    """
    if tag_map is not None:
        if not isinstance(tag_map, Mapping):
            return read_universal_map(tag_map)
        mapping = {}
        for fine, coarse in tag_map.items():
            upper = "." if str(coarse).upper() == "PUNCT" else str(coarse).upper()
            if upper not in UNIVERSAL_TAGS:
                raise ClassError(
                    f"tag map sends {fine!r} to {coarse!r}, which is not a universal tag; use "
                    f"one of {' '.join(UNIVERSAL_TAGS)} (or PUNCT for '.')"
                )
            mapping[str(fine)] = upper
        return mapping
    if tagset == "ptb":
        return dict(PTB_UNIVERSAL)
    if tagset == "brown":
        raise ClassError(f"universal classes over Brown tags need a tag map: {TAG_MAP_HINT}")
    raise ClassError(f"no universal mapping for tag set {tagset!r}; choose ptb or brown")


def universal_classes(
    tagset: str = "ptb", tag_map: TagMap | None = None
) -> dict[str, tuple[str, ...]]:
    """Universal class name -> the fine tags it gathers (and the universal tag itself,
    so a map already written in universal tags works too)."""
    groups: dict[str, list[str]] = {u: [u] for u in UNIVERSAL_TAGS}
    for fine, universal in universal_mapping(tagset, tag_map).items():
        groups.setdefault(universal, [universal]).append(fine)
    return {_UNIVERSAL_NAMES.get(u, u): tuple(tags) for u, tags in groups.items()}


def _looks_brown(word_tags: Mapping[str, Iterable[str]]) -> bool:
    lower = upper = 0
    for tags in word_tags.values():
        for t in tags:
            if t.lower() != t:
                upper += 1
            elif t.upper() != t:
                lower += 1
    return lower > upper


def _case_fold_map(word_tags: Mapping[str, Iterable[str]]) -> dict[str, list[str]]:
    return {w: [t.upper() for t in tags] for w, tags in word_tags.items()}


def builtin_class_tags(
    name: str,
    word_tags: Mapping[str, Iterable[str]] | None = None,
    tag_map: TagMap | None = None,
) -> tuple[dict[str, tuple[str, ...]], bool]:
    """The class -> tags table of a built-in set and whether tags compare case-folded.

    ``name`` is ``ptb``, ``universal`` (PTB or Brown tags, told apart by the POS map's
    tag case), ``universal-ptb`` or ``universal-brown``, optionally followed by
    ``:class+class`` to keep only some classes (``ptb:nouns+verbs``).  The universal
    sets use ``tag_map`` (fine -> universal tag) when given, else the built-in PTB
    table; Brown tags need ``tag_map``.  Tags compare case-folded for Brown tags and
    for a given ``tag_map`` (Brown tags come in either case, and no tag set in use
    tells tags apart by case alone).
    """
    base, _, subset = name.partition(":")
    base = base.strip().lower()
    if base == "ptb":
        table, fold = dict(PTB_CLASSES), False
    elif base in ("universal", "universal-ptb", "universal-brown"):
        tagset = "ptb"
        if base == "universal-brown" or (
            base == "universal" and word_tags is not None and _looks_brown(word_tags)
        ):
            tagset = "brown"
        table = universal_classes(tagset, tag_map)
        fold = tagset == "brown" or tag_map is not None
    else:
        raise ClassError(
            f"unknown built-in class set {name!r}; choose one of {', '.join(BUILTIN_CLASS_SETS)} "
            "(optionally ':name+name'), or give class files"
        )
    if subset:
        wanted = [s.strip() for s in subset.split("+") if s.strip()]
        by_lower = {k.lower(): k for k in table}
        unknown = [w for w in wanted if w.lower() not in by_lower]
        if unknown:
            raise ClassError(
                f"built-in set {base!r} has no class {', '.join(unknown)}; it has {', '.join(table)}"
            )
        table = {by_lower[w.lower()]: table[by_lower[w.lower()]] for w in wanted}
    return table, fold
