"""Text in: corpora and vocabularies, tagged corpora and POS maps, word classes,
word2vec embeddings.

Other subpackages, the command line and the public API import from here, never from
the modules inside, so the modules can be split without breaking them."""

from __future__ import annotations

from .class_tables import (
    BUILTIN_CLASS_SETS,
    PTB_CLASSES,
    PTB_UNIVERSAL,
    UNIVERSAL_TAGS,
    ClassError,
    builtin_class_tags,
    read_universal_map,
    universal_classes,
    universal_mapping,
)
from .classes import (
    ALL,
    ClassSet,
    ClassWarning,
    combine,
    from_class_files,
    load_classes,
    missing_from_map,
)
from .corpus import (
    BOS,
    EOS,
    TOKENIZATIONS,
    UNK,
    CorpusError,
    Vocabulary,
    batchify,
    check_tokenization,
    iter_batches,
    iter_sentences,
    iter_words,
    num_batches,
    read_tokens,
    unk_warning,
)
from .embeddings import (
    MISSING_INITS,
    EmbeddingError,
    align_embeddings,
    iter_word2vec,
    load_embedding_matrix,
    load_embeddings,
)
from .frequency import band_labels, parse_bands, stratify, word_ranks
from .prepare import oov_rate, prepare_tagged, word_tags_from_counts
from .tag_files import read_class_file, read_pos_map, read_tag_counts, write_pos_map
from .tagged import (
    FORMATS,
    TAGSETS,
    TaggedError,
    detect_format,
    iter_tagged_sentences,
    normalize_sentence,
)
from .token_classes import TaggedText, TokenClassSet, load_token_classes, read_tagged_text
from .word_language_model import word_language_model_vocab

__all__ = [
    "ALL",
    "BOS",
    "BUILTIN_CLASS_SETS",
    "ClassError",
    "ClassSet",
    "ClassWarning",
    "CorpusError",
    "EOS",
    "EmbeddingError",
    "FORMATS",
    "MISSING_INITS",
    "PTB_CLASSES",
    "PTB_UNIVERSAL",
    "TAGSETS",
    "TOKENIZATIONS",
    "TaggedError",
    "TaggedText",
    "TokenClassSet",
    "UNIVERSAL_TAGS",
    "UNK",
    "Vocabulary",
    "align_embeddings",
    "band_labels",
    "batchify",
    "builtin_class_tags",
    "check_tokenization",
    "combine",
    "detect_format",
    "from_class_files",
    "iter_batches",
    "iter_sentences",
    "iter_tagged_sentences",
    "iter_word2vec",
    "iter_words",
    "load_classes",
    "load_embedding_matrix",
    "load_embeddings",
    "load_token_classes",
    "missing_from_map",
    "normalize_sentence",
    "num_batches",
    "oov_rate",
    "parse_bands",
    "prepare_tagged",
    "read_class_file",
    "read_pos_map",
    "read_tag_counts",
    "read_tagged_text",
    "read_tokens",
    "read_universal_map",
    "stratify",
    "universal_classes",
    "universal_mapping",
    "unk_warning",
    "word_language_model_vocab",
    "word_ranks",
    "word_tags_from_counts",
    "write_pos_map",
]
