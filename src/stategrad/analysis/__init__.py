"""What the gradients say: embedding statistics and normalisation, spectra,
memory curves and spans, relative memory, uncertainty bands, the POS probe.

Everything works on a :class:`~stategrad.gradients.GradientResult` (the engine's sums
and counts per delay and class) plus, for normalisation, the statistics of the
embeddings of a reference text.  The mathematics is the project's ``method.md``:

- ``embedding_stats``: ``mu``, ``Sigma`` of the embeddings, ``L = cholesky(Sigma)``,
  ``Z = L^-1``; the normalised average gradient of delay d is ``Gbar_d L``.
  ``normalization`` turns whatever ``normalize=`` is given (statistics, L, a file) into L.
- ``spectra``: the singular values of ``Gbar_d L`` per delay and class;
  ``memory``: their sum against d (the memory curve) and the memory span.
- ``relative_memory``: a difference vector ``v`` between two mean embeddings gives
  ``n = Z v / |Z v|``; relative memory ``|Gbar_d L n| / s_1`` and subspace cosine ``|V_k n|``.
- ``uncertainty``: jackknife / bootstrap bands over the result's blocks; ``probe``: the
  POS probe; ``embeddings``: embedding arrays in and out; ``tables``: shared formatting.

A (delay, class) cell without occurrences has no average: the functions say so
(``EmptyClassError`` from single-cell functions, ``None`` entries plus an ``empty`` list
in tables), never a silent NaN in a printed or written number.

Other subpackages, the command line and the public API import from here, never from
the modules inside, so the modules can be split without breaking them."""

from __future__ import annotations

from .ablation import (
    AblationCurve,
    AblationTable,
    CorrelationTable,
    ablation_curves,
    ablation_table,
    memory_ablation_correlation,
)
from .checks import check_finite
from .embedding_stats import (
    LEGACY_SUFFIXES,
    ConditioningWarning,
    EmbeddingStats,
    SingularCovarianceError,
    embedding_stats_for_model,
    embedding_stats_from_array,
    embedding_stats_from_tokens,
    load_embedding_stats,
    weighting_text,
)
from .embeddings import (
    embedding_matrix,
    export_token_embeddings,
    export_word_embeddings,
    load_npy,
    read_token_embeddings,
)
from .errors import AnalysisError
from .memory import MemoryCurveArrays, memory_curve_arrays, memory_curves, memory_span
from .normalization import checked_normalizer, normalization_info, normalizer_matrix
from .probe import (
    ProbeData,
    ProbeError,
    class_means,
    pos_probe,
    read_tag_map,
    repeated_probe,
    text_examples,
    train_probe,
    type_examples,
)
from .relative_memory import (
    DifferenceVector,
    class_difference_vector,
    difference_vector,
    mean_embedding,
    relative_memory,
    whitened_direction,
    word_ids,
)
from .spectra import SingularValueTable, singular_value_table, spectra, spectrum
from .uncertainty import (
    Replicates,
    UncertaintyError,
    band,
    describe,
    direction_statistic,
    replicates,
    singular_values,
    sv_sum,
    top_k,
)

__all__ = [
    "AblationCurve",
    "AblationTable",
    "AnalysisError",
    "CorrelationTable",
    "ablation_curves",
    "ablation_table",
    "memory_ablation_correlation",
    "ConditioningWarning",
    "DifferenceVector",
    "EmbeddingStats",
    "LEGACY_SUFFIXES",
    "MemoryCurveArrays",
    "ProbeData",
    "ProbeError",
    "Replicates",
    "SingularCovarianceError",
    "SingularValueTable",
    "UncertaintyError",
    "band",
    "check_finite",
    "checked_normalizer",
    "class_difference_vector",
    "class_means",
    "describe",
    "difference_vector",
    "direction_statistic",
    "embedding_matrix",
    "embedding_stats_for_model",
    "embedding_stats_from_array",
    "embedding_stats_from_tokens",
    "export_token_embeddings",
    "export_word_embeddings",
    "load_embedding_stats",
    "load_npy",
    "mean_embedding",
    "memory_curve_arrays",
    "memory_curves",
    "memory_span",
    "normalization_info",
    "normalizer_matrix",
    "pos_probe",
    "read_tag_map",
    "read_token_embeddings",
    "relative_memory",
    "repeated_probe",
    "replicates",
    "singular_value_table",
    "singular_values",
    "spectra",
    "spectrum",
    "sv_sum",
    "text_examples",
    "top_k",
    "train_probe",
    "type_examples",
    "weighting_text",
    "whitened_direction",
    "word_ids",
]
