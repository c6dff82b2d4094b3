"""Inputs and where their outputs go: files, folders (recursive), globs or ``-`` (paths on stdin) -> items; output
names mirror the input tree under ``out`` (or one file for one input), planned through :mod:`diffedit_cli.io.outputs`
before any compute."""

from __future__ import annotations

import glob
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, List, Optional, Sequence, Tuple


from ..io import images as imageio
from ..errors import DiffeditError, InputError, opt
from ..io.files import EXISTS_HINT
from ..io.latents import is_latent_path
from ..io.outputs import OutputPlan, refuse_empty_out
from .report import Reporter
from . import shards
from .options import RunOptions


DEFAULT_OUT = "diffedit-out"


@dataclass
class Item:
    """One input file; ``rel`` is its path relative to the folder it was found in."""

    path: Path
    rel: Path
    index: int = 0


def collect_inputs(specs: Sequence[str], kinds: str = "images", stdin=None,
                   relative_to: Optional[str] = None) -> Tuple[List[Item], List[Tuple[str, str]]]:
    """Expand files / folders / globs / ``-`` into items; returns (items, [(spec, error)]).

    Each item's ``rel`` (its output path under ``out``) is its path inside a folder given as input, its bare name
    for a file, a glob match or a path read from stdin, or, with ``relative_to``, its path inside that folder
    (so a list of files from several folders keeps their tree)."""
    base = Path(relative_to).expanduser().resolve() if relative_to else None
    if base is not None and not base.is_dir():
        raise InputError(f"relative_to '{relative_to}' is not a folder", param="relative_to")
    accept = (lambda p: imageio.is_image_path(p) or is_latent_path(p)) if kinds == "any" else imageio.is_image_path
    items: List[Item] = []
    errors: List[Tuple[str, str]] = []
    expanded: List[str] = []
    for spec in specs:
        if not str(spec).strip():
            raise InputError("an input is an empty string (an unset shell variable?): give a file, folder or pattern")
        if spec == "-":
            stream = stdin or sys.stdin
            listed = [line.strip() for line in stream if line.strip()]
            if not listed:
                raise InputError("no input paths on stdin ('-' reads one path per line)")
            expanded.extend(listed)
        else:
            expanded.append(spec)
    seen = set()
    for spec in expanded:
        path = Path(spec).expanduser()
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and accept(p) and not p.name.startswith("."))
            if not found:
                errors.append((spec, f"folder '{spec}' holds no usable input files"))
            pairs = [(p, p.relative_to(path)) for p in found]
        elif path.exists():
            if kinds == "images" and is_latent_path(path):
                errors.append((spec, f"'{spec}' is a latent file; this command takes images"))
                continue
            pairs = [(path, Path(path.name))]
        elif any(ch in spec for ch in "*?["):
            found = sorted(Path(p) for p in glob.glob(spec, recursive=True) if Path(p).is_file() and accept(Path(p)))
            if not found:
                errors.append((spec, f"pattern '{spec}' matches no input files"))
            pairs = [(p, Path(p.name)) for p in found]
        elif path.is_symlink():
            errors.append((spec, f"input '{spec}' is a broken symlink or a symlink loop"))
            pairs = []
        else:
            errors.append((spec, f"input '{spec}' not found"))
            pairs = []
        for p, rel in pairs:
            key = p.resolve()
            if base is not None:
                try:
                    rel = key.relative_to(base)
                except ValueError:
                    errors.append((str(p), f"'{p}' is not inside the {opt('relative_to')} folder '{relative_to}'"))
                    continue
            if key not in seen:
                seen.add(key)
                items.append(Item(p, rel, len(items)))
    return items, errors


def output_path(item: Item, out: Path, single_file: bool, suffix: str) -> Path:
    """Where ``item``'s output goes: ``out`` itself, or its relative path under ``out`` with ``suffix``."""
    return out if single_file else out / item.rel.with_suffix(suffix)


def collision_hint(relative_to: Optional[str]) -> str:
    """What to do when two inputs would be written to one output name."""
    return "rename one or give them separate runs" if relative_to else (
        f"files given one by one (or read from stdin) keep only their names: {opt('relative_to')} DIR keeps their "
        f"folders under {opt('out')}")


def out_is_file(out: Optional[str], n_items: int, suffixes: Iterable[str]) -> bool:
    """Whether ``out`` names one output file (else a folder); refuses names that cannot work, before any work."""
    refuse_empty_out(out)
    if out is None:
        return False
    path = Path(out)
    suffix = path.suffix.lower()
    known = {s.lower() for s in suffixes}
    if path.is_file() and n_items > 1:
        raise InputError(f"out '{out}' is an existing file but there are {n_items} inputs; give a folder", param="out")
    if suffix in known:
        if n_items > 1:
            raise InputError(f"out '{out}' is a file name but there are {n_items} inputs; give a folder", param="out")
        return True
    writes = "latent files (.safetensors)" if known == {".safetensors"} else "images"
    other = imageio.IMAGE_EXTENSIONS | {".safetensors"}
    if suffix in other:
        raise InputError(f"out '{out}': this command writes {writes}; give a folder or a name ending in "
                         f"{', '.join(sorted(known))}", param="out")
    return False


def prepare_output_folders(targets: Iterable[Path]) -> set:
    """Create the folders the outputs go to now, so that an unusable out fails before any compute.

    Returns the folders this process may not write to (read-only): their items fail one by one, up front.
    """
    read_only = set()
    for folder in sorted({t.parent for t in targets}):
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise InputError(f"cannot create output folder '{folder}': {err.strerror or err}") from None
        if not folder.is_dir():
            raise InputError(f"cannot create output folder '{folder}': a file has that name")
        if not os.access(folder, os.W_OK | os.X_OK):
            read_only.add(folder)
    return read_only


def batched(seq: Sequence, size: int) -> Iterable[Sequence]:
    for i in range(0, len(seq), max(1, size)):
        yield seq[i:i + size]


def report_existing(plan: OutputPlan, target: Path, source: str, reporter: Reporter) -> bool:
    """True (reported as skipped or failed) when ``target`` exists and the run must not write it."""
    decision = plan.existing(target)
    if decision == "skip":
        reporter.skip(source, str(target))
    elif decision == "refuse":
        reporter.fail(source, f"output '{target}' already exists ({EXISTS_HINT})")
    return decision is not None


def _existing(plan: OutputPlan, target: Path, item: Item, reporter: Reporter) -> bool:
    """True (reported, and counted as done) if the item must not be processed because its output exists."""
    if report_existing(plan, target, str(item.path), reporter):
        reporter.advance()
        return True
    return False


def plan_outputs(specs: Sequence[str], kinds: str, out: Optional[str], suffix: str, file_suffixes: Iterable[str],
                 opts: "RunOptions", reporter: Reporter, what: str, noun: str, protect: Sequence[Path] = (),
                 per_face: bool = False) -> Tuple[OutputPlan, List[Tuple[Item, Path]]]:
    """Inputs -> (the run's output plan, [(item, output path)]), reporting bad inputs and inputs that would share
    an output name (the first keeps it). ``protect``: other files the run reads (a donor), never written either.
    ``per_face``: the paths are bases of per-face names (``photo_NN.png``; photo.jpg and photo.png collide too)."""
    items, errors = collect_inputs(specs, kinds, relative_to=opts.relative_to)
    for spec, msg in errors:
        reporter.fail(spec, msg)
    if not items and not errors:
        raise InputError("no input files given")
    single = out_is_file(out, len(items), file_suffixes)
    if opts.shard is not None:
        if single:
            raise InputError(f"{opt('shard')} splits folder runs; '{out}' names one output file", param="shard")
        items = shards.select(items, opts.shard)
    out_path = Path(out or DEFAULT_OUT)
    if single and suffix != ".safetensors":
        imageio.check_writable_extension(out_path)
    plan = OutputPlan([i.path for i in items] + list(protect), opts.overwrite, opts.skip_existing)
    reporter.start(what, len(items), noun)
    todo = []
    for item in items:
        target = output_path(item, out_path, single, suffix)
        shown = f"{target.stem}_NN{target.suffix}" if per_face else None
        try:
            todo.append((item, plan.reserve(target, str(item.path), shown, collision_hint(opts.relative_to))))
        except DiffeditError as err:
            reporter.fail(str(item.path), str(err))
            reporter.advance()
    return plan, todo


def plan_jobs(specs: Sequence[str], kinds: str, out: Optional[str], suffix: str, file_suffixes: Iterable[str],
              opts: "RunOptions", reporter: Reporter, what: str, noun: str,
              protect: Sequence[Path] = ()) -> List[Tuple[Item, Path]]:
    """:func:`plan_outputs` for one output per input, less those whose output exists (skipped or refused, see
    :meth:`OutputPlan.existing`) or whose folder is read-only. Output folders are created here."""
    plan, planned = plan_outputs(specs, kinds, out, suffix, file_suffixes, opts, reporter, what, noun, protect)
    todo = [(item, target) for item, target in planned if not _existing(plan, target, item, reporter)]
    read_only = prepare_output_folders(t for _, t in todo)
    for item, target in [job for job in todo if job[1].parent in read_only]:
        reporter.fail(str(item.path), f"cannot write '{target}': permission denied (read-only folder)")
        reporter.advance()
    return [job for job in todo if job[1].parent not in read_only]
