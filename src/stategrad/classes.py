"""Word classes for per-class averages: a multi-label membership of each vocabulary word.

A word counts for every class one of its possible tags is in (the original's
rule), so membership is a (V, C) boolean matrix.  Class 0 is always ``all``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .corpus import Vocabulary

ALL = "all"


class ClassError(ValueError):
    """Class definitions that cannot be used as asked."""


@dataclass
class ClassSet:
    names: list[str]
    membership: np.ndarray  # (V, C) bool; column 0 is "all"
    definitions: dict[str, Any] = field(default_factory=dict)

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

    def counts_in(self, tokens: np.ndarray) -> np.ndarray:
        """How many tokens of each class a text holds."""
        return self.membership[np.asarray(tokens)].sum(axis=0)
