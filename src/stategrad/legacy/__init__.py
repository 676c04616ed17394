"""The original code's formats and command line: the ``.config`` reader, ``stategrad
run``, the per-delay gradient folders, the original's export layout and normalisation
files.  Nothing below this subpackage imports it.

Other subpackages, the command line and the public API import from here, never from
the modules inside, so the modules can be split without breaking them."""

from __future__ import annotations

from .config import (
    LegacyRun,
    config_key_names,
    convert_legacy_value,
    legacy_to_run,
    load_config,
    load_legacy_config,
    load_run,
    parse_legacy_config,
)
from .export import (
    EXPORT_TIME_STEP,
    check_export_target,
    export_original_layout,
    export_result_averages,
)
from .gradient_dirs import (
    LegacyError,
    iter_delay_matrices,
    legacy_average,
    legacy_averages,
    legacy_svs,
    np2npz,
    save_legacy_average,
)
from .normalization_files import save_legacy_stats
from .run import LegacyResult, run_legacy, save_embedding_table

__all__ = [
    "EXPORT_TIME_STEP",
    "LegacyError",
    "LegacyResult",
    "LegacyRun",
    "check_export_target",
    "config_key_names",
    "convert_legacy_value",
    "export_original_layout",
    "export_result_averages",
    "iter_delay_matrices",
    "legacy_average",
    "legacy_averages",
    "legacy_svs",
    "legacy_to_run",
    "load_config",
    "load_legacy_config",
    "load_run",
    "np2npz",
    "parse_legacy_config",
    "run_legacy",
    "save_embedding_table",
    "save_legacy_average",
    "save_legacy_stats",
]
