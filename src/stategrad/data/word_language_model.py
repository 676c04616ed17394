"""The vocabulary of PyTorch's ``word_language_model`` example, which saves none.

That example's ``data.py`` numbers words by first appearance over ``train.txt``,
``valid.txt`` and ``test.txt`` of its data folder, in that order, each line split at
whitespace and followed by ``<eos>``.  A model it trained reads its ids in that order
only: the same words in another order run, and give wrong numbers.
"""

from __future__ import annotations

import os
from pathlib import Path

from .corpus import EOS, CorpusError, Vocabulary

SPLITS = ("train.txt", "valid.txt", "test.txt")


def word_language_model_vocab(data_dir: str | os.PathLike, encoding: str = "utf-8") -> Vocabulary:
    """The ids ``word_language_model`` gave the words of ``data_dir`` (its ``--data``)."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise CorpusError(f"word_language_model data folder not found: {data_dir}")
    missing = [name for name in SPLITS if not (data_dir / name).is_file()]
    if missing:
        raise CorpusError(f"{data_dir} is not a word_language_model data folder: it has no "
                          f"{', '.join(missing)}")
    index: dict[str, int] = {}
    for name in SPLITS:
        path = data_dir / name
        try:
            with open(path, encoding=encoding) as handle:
                for line in handle:
                    for word in line.split() + [EOS]:
                        if word not in index:
                            index[word] = len(index)
        except UnicodeDecodeError as exc:
            raise CorpusError(f"{path} is not valid {encoding} text ({exc.reason} at byte "
                              f"{exc.start}); give the file's encoding") from None
        except OSError as exc:
            raise CorpusError(f"cannot read {path}: {exc.strerror or exc}") from None
    return Vocabulary(tuple(index))
