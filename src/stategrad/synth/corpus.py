"""A generated corpus on disk: the three text splits, the metadata with the ground truth
(``synth.json``) and the planted embeddings; writing and reading it."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import write_text_atomic
from ..data import ClassSet, Vocabulary, write_class_map
from .config import SPLITS, SynthConfig, SynthError
from .embeddings import default_scales, planted_embeddings, save_embeddings
from .language import Sentences, SynthLanguage

FORMAT = "stategrad-synth"
FORMAT_VERSION = 1
METADATA_FILE = "synth.json"
EMBEDDINGS_FILE = "embeddings.npz"
#: The ground-truth classes as ``word<TAB>class`` lines, for ``gradients --class-map``.
CLASSES_FILE = "classes.tsv"


@dataclass
class SynthCorpus:
    """A generated corpus on disk and its metadata."""

    directory: Path
    metadata: dict[str, Any]

    @property
    def language(self) -> SynthLanguage:
        return SynthLanguage(SynthConfig.from_dict(self.metadata["config"]))

    def path(self, split: str) -> Path:
        return self.directory / self.metadata["files"][split]

    @property
    def classes_path(self) -> Path | None:
        """The class map of the ground-truth classes (``None`` for a corpus written
        before synth wrote one)."""
        name = self.metadata["files"].get("classes")
        return self.directory / name if name else None

    @property
    def embeddings_path(self) -> Path | None:
        name = self.metadata["files"].get("embeddings")
        return self.directory / name if name else None

    def class_set(self, vocab: Vocabulary) -> ClassSet:
        """The ground-truth classes over an LM vocabulary, for per-class gradients."""
        truth = self.metadata["ground_truth"]
        definitions = {name: {"words": words, **{k: v for k, v in truth[name].items()
                                                  if k in ("memory_span", "remembered")}}
                       for name, words in self.metadata["classes"].items()}
        return ClassSet.from_word_sets(vocab, self.metadata["classes"], definitions)

    def memory_spans(self) -> dict[str, int]:
        return {k: int(v["memory_span"]) for k, v in self.metadata["ground_truth"].items()}


def generate_corpus(
    config: SynthConfig, directory: str | os.PathLike, *, overwrite: bool = False
) -> SynthCorpus:
    """Write ``train.txt valid.txt test.txt``, ``classes.tsv`` (the ground-truth classes
    of ``synth.json``'s ``classes`` as ``word<TAB>class`` lines, for ``--class-map``),
    ``synth.json`` and (with ``embedding_dim``) ``embeddings.npz`` into ``directory``;
    returns the corpus with its metadata."""
    config.check()
    directory = Path(directory)
    files = {s: f"{s}.txt" for s in SPLITS}
    targets = [directory / f for f in [*files.values(), CLASSES_FILE, METADATA_FILE,
                                       EMBEDDINGS_FILE]]
    existing = [p.name for p in targets if p.exists()]
    if existing and not overwrite:
        raise SynthError(
            f"{directory} already holds {', '.join(existing)}; choose an empty directory "
            "or allow overwriting (--force)"
        )
    directory.mkdir(parents=True, exist_ok=True)
    language = SynthLanguage(config)
    entropy = language.entropy()

    # Independent streams per split: changing one split's size leaves the others unchanged.
    streams = np.random.SeedSequence(config.seed).spawn(len(SPLITS) + 1)
    texts, splits = _write_splits(language, config, directory, files, streams)
    # Scored from the written files, so the numbers describe exactly what a model reads.
    empirical = {split: language.score_file(directory / files[split]) for split in ("valid", "test")}
    vocab = Vocabulary.build(directory / files["train"])
    embedding_info = None
    if config.embedding_dim:
        seed = int(streams[-1].generate_state(1)[0])
        embedding_info = _write_embeddings(language, config, directory, texts["train"], vocab, seed)
        files["embeddings"] = EMBEDDINGS_FILE
    classes = language.classes()
    write_class_map(directory / CLASSES_FILE, classes)
    files["classes"] = CLASSES_FILE

    metadata = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "config": config.to_dict(),
        "files": files,
        "splits": splits,
        "vocabulary": {
            "language_words": len(language.words) - 1,  # <eos> aside
            "lm_vocabulary_size": len(vocab),  # Vocabulary.build on train.txt
            "absent_from_train": sorted(set(language.words) - set(vocab.words)),
        },
        "classes": classes,
        "ground_truth": language.ground_truth(),
        "entropy": entropy.to_dict(),
        "empirical": empirical,
        "embeddings": embedding_info,
        "description": (
            "Fillers need no memory; a trigger of class c fixes the word exactly k_c steps "
            "later (its target) through the property named in ground_truth; dependencies "
            "never cross sentence boundaries."
        ),
    }
    write_text_atomic(directory / METADATA_FILE, json.dumps(metadata, indent=1) + "\n")
    return SynthCorpus(directory, metadata)


def _write_splits(language: SynthLanguage, config: SynthConfig, directory: Path,
                  files: dict[str, str], streams) -> tuple[dict[str, Sentences], dict[str, Any]]:
    """Sample and write each split from its own stream; the texts and their sizes."""
    splits: dict[str, Any] = {}
    texts: dict[str, Sentences] = {}
    for split, stream in zip(SPLITS, streams, strict=False):
        text = language.sample(getattr(config, f"{split}_tokens"), np.random.default_rng(stream))
        text.write(directory / files[split])
        texts[split] = text
        splits[split] = {"sentences": text.n_sentences, "tokens": text.n_tokens,
                         "words": text.n_tokens - text.n_sentences}
    return texts, splits


def _write_embeddings(language: SynthLanguage, config: SynthConfig, directory: Path,
                      train: Sentences, vocab: Vocabulary, seed: int) -> dict[str, Any]:
    """Planted embeddings weighted by the train split's token counts, in the LM
    vocabulary's order; what :func:`planted_embeddings` says about them."""
    counts_internal = np.bincount(train.ids, minlength=len(language.words))
    counts = np.array([counts_internal[language.word_index[w]] if w in language.word_index
                       else 0 for w in vocab.words], dtype=np.int64)
    vectors, info = planted_embeddings(language, vocab, counts, dim=config.embedding_dim,
                                       scales=default_scales(config), seed=seed)
    save_embeddings(directory / EMBEDDINGS_FILE, vectors, vocab.words)
    info["profile"] = config.variance
    info["vocabulary_order"] = "Vocabulary.build on train.txt"
    return info


def load_corpus(directory: str | os.PathLike) -> SynthCorpus:
    """A generated corpus from its directory (or the path of its ``synth.json``)."""
    path = Path(directory)
    meta_path = path if path.is_file() else path / METADATA_FILE
    if not meta_path.is_file():
        raise SynthError(f"no {METADATA_FILE} in {path}: not a generated synthetic corpus")
    try:
        metadata = json.loads(meta_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise SynthError(f"{meta_path} is not valid JSON: {exc}") from None
    if metadata.get("format") != FORMAT:
        raise SynthError(f"{meta_path} is not a {FORMAT} metadata file")
    if metadata.get("version") != FORMAT_VERSION:
        raise SynthError(
            f"{meta_path} has format version {metadata.get('version')}, "
            f"this stategrad reads version {FORMAT_VERSION}"
        )
    return SynthCorpus(meta_path.parent, metadata)
