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
  ``n = Z v / |Z v|``; relative memory ``|Gbar_d L n| / s_1`` and subspace cosine ``|V_k n|``
  (their chance values: ``direction_null``, random directions; ``property_bands``, noise
  floor and bands); ``locate``: the delay where a curve falls or bends down most.
- ``identity``: identity memory, the sum of singular values of ``Gbar_{d,c} L P_c``
  (``P_c`` the directions in which class c's words differ).
- ``uncertainty``: jackknife / bootstrap bands over the result's blocks (Student t,
  bias correction, simultaneous bands); ``noise_floor``: what a statistic would be for a
  class without memory (sign-flipped blocks); ``compare``: paired differences on the
  same blocks; ``state_whitening``: ``W_s = Cov(s)^-1/2`` for scale-free comparisons;
  ``probe``: the
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
from .compare import CompareError, PairedDifference, Side, check_same_blocks, paired_difference
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
from .identity import (
    IdentityTable,
    class_subspace,
    identity_floor,
    identity_memory,
    identity_statistic,
    identity_table,
    noise_from,
)
from .locate import floor_signal, largest_bend, largest_fall, locate_property
from .memory import MemoryCurveArrays, memory_curve_arrays, memory_curves, memory_span
from .noise_floor import NoiseFloor, noise_floor
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
from .state_whitening import (
    StateStats,
    StateStatsError,
    check_state_stats,
    load_state_stats,
    state_stats_for_model,
    state_whitened,
    whiten_result,
)
from .uncertainty import (
    Replicates,
    UncertaintyError,
    band,
    describe,
    direction_statistic,
    replicates,
    singular_values,
    sv_sum,
    t_quantile,
    top_k,
)

__all__ = [
    "AblationCurve",
    "AblationTable",
    "AnalysisError",
    "CompareError",
    "CorrelationTable",
    "ablation_curves",
    "ablation_table",
    "memory_ablation_correlation",
    "ConditioningWarning",
    "DifferenceVector",
    "EmbeddingStats",
    "LEGACY_SUFFIXES",
    "MemoryCurveArrays",
    "NoiseFloor",
    "PairedDifference",
    "ProbeData",
    "ProbeError",
    "Replicates",
    "Side",
    "SingularCovarianceError",
    "SingularValueTable",
    "StateStats",
    "StateStatsError",
    "UncertaintyError",
    "band",
    "check_finite",
    "check_same_blocks",
    "check_state_stats",
    "checked_normalizer",
    "class_difference_vector",
    "class_means",
    "class_subspace",
    "IdentityTable",
    "identity_floor",
    "identity_memory",
    "identity_statistic",
    "identity_table",
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
    "load_state_stats",
    "mean_embedding",
    "memory_curve_arrays",
    "memory_curves",
    "memory_span",
    "noise_floor",
    "noise_from",
    "normalization_info",
    "normalizer_matrix",
    "paired_difference",
    "pos_probe",
    "read_tag_map",
    "read_token_embeddings",
    "relative_memory",
    "largest_fall",
    "largest_bend",
    "locate_property",
    "floor_signal",
    "repeated_probe",
    "replicates",
    "singular_value_table",
    "singular_values",
    "spectra",
    "spectrum",
    "state_stats_for_model",
    "state_whitened",
    "sv_sum",
    "t_quantile",
    "text_examples",
    "top_k",
    "train_probe",
    "type_examples",
    "weighting_text",
    "whiten_result",
    "whitened_direction",
    "word_ids",
]
