"""The output planner: every file a run writes is claimed here before any compute.

A claim is refused (one line naming the file) when the target is one of the run's inputs (images, latent files,
donors, parts, direction files, models: even with ``overwrite``), when two outputs of the run would share it,
when it is a folder or a dangling symlink, or, without ``overwrite``, when it already exists. Files are then
published exclusively (:mod:`diffedit_cli.io.files`) unless overwriting, so a file that appears while the run
computes (another run, another program) is never replaced.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Dict, Iterable, Optional

from ..errors import InputError, opt
from .files import EXISTS_HINT


def refuse_empty_out(out: Optional[str]) -> None:
    """An empty ``out`` (an unset shell variable) is refused, never read as the current folder or the default."""
    if out is not None and not str(out).strip():
        raise InputError("out is an empty string (an unset shell variable?): give a file or folder name", param="out")


def out_folder(out: Optional[str], default: Path) -> Path:
    """``out`` or the default folder (:func:`refuse_empty_out` first)."""
    refuse_empty_out(out)
    return Path(out) if out is not None else Path(default)


def _key(path: Path) -> Path:
    return Path(os.path.abspath(os.path.realpath(path)))


class OutputPlan:
    """The targets of one run. ``inputs``: every file the run reads (never written); ``overwrite``: replace
    existing outputs (never inputs); ``skip_existing``: an existing output means "done" (see :meth:`existing`)."""

    def __init__(self, inputs: Iterable[os.PathLike] = (), overwrite: bool = False, skip_existing: bool = False):
        self.inputs: Dict[Path, Path] = {_key(Path(p)): Path(p) for p in inputs}
        self.overwrite = overwrite
        self.skip_existing = skip_existing
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

    def fresh_folder(self, folder: Path, what: str, accepts: Optional[Callable[[Path], bool]] = None) -> Path:
        """A folder the run fills as a whole (a dataset, a model, a training run): refused when it is an input,
        not a folder, or holds anything, unless ``accepts(folder)`` says it holds this run's kind of output
        already (a model to add components to, a run to resume). Nothing is created here."""
        folder = self.folder(folder)
        if folder.is_dir() and any(folder.iterdir()) and not (accepts is not None and accepts(folder)):
            held = ", ".join(sorted(p.name for p in folder.iterdir())[:4])
            raise InputError(f"'{folder}' is not empty ({held}): {what} goes to a new or empty folder, never "
                             "among other files", param="out")
        return folder

    def reserve(self, target: Path, source: str = "", shown: Optional[str] = None,
                hint: str = "rename one input or give them separate runs") -> Path:
        """Reserve ``target`` for the output of ``source``, whether or not it exists yet (see :meth:`existing`).

        InputError when it is an input, when an earlier output of the run has it (the first keeps it: ``shown``
        names it in the message, ``hint`` says what to do), or when it is a folder or a dangling symlink."""
        target = Path(target)
        key = _key(target)
        if key in self.inputs:
            raise InputError(f"output '{target}' would overwrite the input '{self.inputs[key]}'; choose another {opt('out')}")
        if key in self.claimed and not (source and self.claimed[key] == source):  # a source may ask again
            first = self.claimed[key]
            both = f"'{source}' and '{first}' would both" if source and first else "two outputs of this run would"
            raise InputError(f"{both} be written to '{shown or target}'; {hint}")
        if target.is_symlink() and not target.exists():
            raise InputError(f"output '{target}' is a dangling symlink")
        if target.is_dir():
            raise InputError(f"output '{target}' is a folder")
        self.claimed[key] = source
        return target

    def claim(self, target: Path, source: str = "") -> Path:
        """:meth:`reserve`, and refused when ``target`` exists (unless overwriting): for outputs that are not
        skipped one by one."""
        target = self.reserve(target, source)
        if target.exists() and not self.overwrite:
            raise InputError(f"output '{target}' already exists ({EXISTS_HINT})")
        return target

    def existing(self, target: Path) -> Optional[str]:
        """What an existing ``target`` means: None (write it: absent, or overwriting), "skip" (done already,
        with ``skip_existing``) or "refuse"."""
        if self.overwrite or not Path(target).exists():
            return None
        return "skip" if self.skip_existing else "refuse"

    @property
    def exclusive(self) -> bool:
        """Publish without replacing a file that appeared meanwhile (always, unless overwriting)."""
        return not self.overwrite
