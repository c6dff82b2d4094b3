"""Writing output files: atomically, and exclusively unless the caller overwrites on purpose.

Every output (image, latent file, grid, GIF) is written to a temporary file in the target's folder and then
moved into place, so a reader never sees a half-written file and an interrupted run leaves none behind.
``exclusive=True`` publishes with a hard link, which fails if the target appeared in the meantime (another run,
another program): an output is never replaced without ``overwrite``. Permissions follow the umask.
"""

from __future__ import annotations

import errno
import os
import tempfile
from typing import IO, Callable, Union

from ..errors import InputError, opt

PathLike = Union[str, "os.PathLike[str]"]


class OutputExists(InputError):
    """An exclusive write found its target already there (another run or program wrote it meanwhile)."""

EXISTS_HINT = f"use {opt('skip_existing')} to resume or {opt('overwrite')}"


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _publish(tmp: str, name: str, exclusive: bool) -> None:
    if not exclusive:
        os.replace(tmp, name)
        return
    try:
        os.link(tmp, name)
    except FileExistsError:
        raise OutputExists(f"output '{name}' already exists ({EXISTS_HINT})") from None
    except OSError as exc:  # file systems without hard links: check, then rename (a small race remains)
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
            raise
        if os.path.lexists(name):
            raise OutputExists(f"output '{name}' already exists ({EXISTS_HINT})") from None
        os.replace(tmp, name)
        return
    os.unlink(tmp)


def atomic_write(path: PathLike, write: Callable[[IO[bytes]], None], exclusive: bool = False) -> None:
    """Call ``write(file)`` on a temporary file next to ``path``, then move it to ``path``.

    The temporary name is short enough for any legal ``path`` (at most 255 bytes per name). On any failure
    the temporary file is removed and an existing ``path`` is left untouched; OS errors (a full disk, a
    read-only folder) become one-line InputErrors naming ``path``.
    """
    name = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(name))
    stem = os.fsdecode(os.fsencode(os.path.basename(name))[:64])  # bytes: names need not be UTF-8
    try:
        tmp = tempfile.NamedTemporaryFile(dir=directory, prefix=f".{stem}.", suffix=".tmp", delete=False)
    except OSError as exc:
        raise InputError(f"cannot write '{name}': {exc.strerror or exc}") from None
    try:
        with tmp:
            write(tmp)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.chmod(tmp.name, 0o666 & ~_current_umask())
        _publish(tmp.name, name, exclusive)
    except BaseException as exc:
        try:
            os.unlink(tmp.name)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError):
            raise InputError(f"cannot write '{name}': {exc.strerror or exc}") from None
        raise


def write_bytes(path: PathLike, data: bytes, exclusive: bool = False) -> None:
    """:func:`atomic_write` of a ready byte string."""
    atomic_write(path, lambda fh: fh.write(data), exclusive)
