"""Writing a file so that it is either complete or not there.

The content goes to ``<name>.tmp`` beside the target, which is renamed over the target
only once it is complete: a full disk, a read-only folder or a crash leaves the earlier
file untouched, and the temporary file is removed on any error.
(:func:`stategrad.lm.models.torch_save_atomic` does the same for checkpoints.)
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path


def write_atomic(path: str | os.PathLike, write: Callable[[Path], object],
                 suffix: str = ".tmp") -> Path:
    """Call ``write(tmp)`` to fill a temporary file, then rename it to ``path``.

    ``suffix`` is the temporary file's ending (``.tmp.npz`` where a writer insists on
    its own extension, as numpy's savez does)."""
    path = Path(path)
    tmp = path.with_name(path.name + suffix)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_text_atomic(path: str | os.PathLike, text: str, encoding: str = "utf-8",
                      newline: str | None = None) -> Path:
    def write(tmp: Path) -> None:
        with open(tmp, "w", encoding=encoding, newline=newline) as handle:
            handle.write(text)
    return write_atomic(path, write)
