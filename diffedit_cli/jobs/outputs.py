"""The output planner: every file a run writes is claimed here before any compute.

A claim is refused (one line naming the file) when the target is one of the run's inputs (images, latent files,
donors, parts, direction files, models: even with ``--overwrite``), when two outputs of the run would share it,
when it is a folder or a dangling symlink, or, without ``overwrite``, when it already exists. Files are then
published exclusively (:mod:`diffedit_cli.io.files`) unless overwriting, so a file that appears while the run
computes (another run, another program) is never replaced.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, Iterable, Optional

from ..errors import InputError
from ..io.files import EXISTS_HINT


def refuse_empty_out(out: Optional[str]) -> None:
    """An empty ``--out`` (an unset shell variable) is refused, never read as the current folder or the default."""
    if out is not None and not str(out).strip():
        raise InputError("out is an empty string (an unset shell variable?): give a file or folder name", param="out")


def out_folder(out: Optional[str], default: Path) -> Path:
    """``--out`` or the default folder (:func:`refuse_empty_out` first)."""
    refuse_empty_out(out)
    return Path(out) if out is not None else Path(default)


def _key(path: Path) -> Path:
    return Path(os.path.abspath(os.path.realpath(path)))


class OutputPlan:
    """The targets of one run. ``inputs``: every file the run reads (never written); ``overwrite``: replace
    existing outputs (never inputs)."""

    def __init__(self, inputs: Iterable[os.PathLike] = (), overwrite: bool = False):
        self.inputs = {_key(Path(p)) for p in inputs}
        self.overwrite = overwrite
        self.claimed: Dict[Path, str] = {}
        self.out_dir: Optional[Path] = None  # the folder checked by :meth:`folder`

    def folder(self, folder: Path, what: str = "output folder") -> Path:
        """Check that ``folder`` can hold outputs (created later, when writing)."""
        folder = Path(folder)
        if folder.is_symlink() and not folder.exists():
            raise InputError(f"{what} '{folder}' is a dangling symlink", param="out")
        if folder.exists() and not folder.is_dir():
            raise InputError(f"{what} '{folder}' exists and is not a folder", param="out")
        if _key(folder) in self.inputs:
            raise InputError(f"{what} '{folder}' is one of the inputs", param="out")
        self.out_dir = folder
        return folder

    def claim(self, target: Path, source: str = "") -> Path:
        """Reserve ``target`` for one output of this run; raises InputError when it must not be written."""
        target = Path(target)
        key = _key(target)
        if key in self.inputs:
            raise InputError(f"output '{target}' would overwrite an input; choose another --out")
        if key in self.claimed:
            other = self.claimed[key]
            raise InputError(f"two outputs of this run would be written to '{target}'"
                             + (f" ('{other}' and '{source}')" if other and source else "")
                             + "; rename one input or give them separate runs")
        if target.is_symlink() and not target.exists():
            raise InputError(f"output '{target}' is a dangling symlink")
        if target.is_dir():
            raise InputError(f"output '{target}' is a folder")
        if target.exists() and not self.overwrite:
            raise InputError(f"output '{target}' already exists ({EXISTS_HINT})")
        self.claimed[key] = source
        return target

    @property
    def exclusive(self) -> bool:
        """Publish without replacing a file that appeared meanwhile (always, unless overwriting)."""
        return not self.overwrite
