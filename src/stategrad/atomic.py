"""Writing a file so that it is either complete or not there.

The content goes to ``<name>.tmp`` beside the target, which is renamed over the target
only once it is complete: a full disk, a read-only folder or a crash leaves the earlier
file untouched, and the temporary file is removed on any error.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
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


def torch_save_atomic(obj: object, path: str | os.PathLike) -> None:
    """``torch.save`` through :func:`write_atomic`: a crash or a full disk never leaves half
    a file under ``path``; raises OSError with nothing left behind."""
    import torch  # here, not above: the plain-file writers do not need it

    path = Path(path)
    try:
        write_atomic(path, lambda tmp: torch.save(obj, tmp))
    except RuntimeError as exc:
        # torch's zip writer reports a failed write (a full disk) as RuntimeError.
        free = shutil.disk_usage(path.parent).free
        raise OSError(f"write failed, {free:,} bytes free on that disk ({exc})") from exc


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a synced temp file in the same folder renamed
    into place; on any error the temp file is removed, an earlier file at ``path`` stays,
    and the OSError is raised again (the caller names the file)."""
    path = Path(path)
    with synced_temp(path) as fd:
        with open(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    return path


@contextlib.contextmanager
def synced_temp(path: Path) -> Iterator[int]:
    """A new temp file beside ``path`` (its descriptor; the caller writes and syncs it),
    renamed over ``path`` when the block ends without error and removed when it fails.
    Temp files of earlier writes a kill -9 interrupted are removed once ``path`` is in
    place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(name)
    try:
        yield fd
        os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp makes it private
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    remove_stale_temps(path)


def remove_stale_temps(path: Path) -> None:
    """Temp files of earlier writes of ``path`` that a kill -9 interrupted: once the file
    is in place they are garbage (an interrupted write never replaced anything)."""
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        stale.unlink(missing_ok=True)


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
