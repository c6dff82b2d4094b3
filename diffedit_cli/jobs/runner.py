"""File-level batch jobs behind the CLI: inputs -> batches -> outputs, failures per file.

Inputs are files, folders (recursive), glob patterns or ``-`` (paths on stdin).
Outputs go to a folder (default ``diffedit-out``) mirroring input folder
structure, or to one file when there is one input; an output never replaces an
input, an existing output is an error unless ``skip_existing`` or
``overwrite``, and every file is written atomically.
"""

from __future__ import annotations

import glob
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, List, Optional, Sequence, Tuple

import torch

from ..io import images as imageio
from .. import defaults, pipeline
from ..editing.plan import EditPlan, plan_edit
from ..errors import DiffeditError, InputError, NumericalError
from ..io.files import EXISTS_HINT, OutputExists
from ..io.latents import LatentCode, check_latent_model, is_latent_path, latent_metadata, load_latent, save_latent
from ..io.models import DiffAEModel
from ..io.outputs import OutputPlan, out_folder, refuse_empty_out

DEFAULT_OUT = "diffedit-out"


# -- reporting -------------------------------------------------------------

class Reporter:
    """Progress bars on stderr, one JSON line per output on stdout, per-file failures."""

    def __init__(self, json_lines: bool = False, quiet: bool = False):
        from rich.console import Console

        self.console = Console(stderr=True, highlight=False)
        self.json_lines = json_lines
        self.quiet = quiet
        self.failures: List[Tuple[str, str]] = []
        self.done = 0
        self.skipped = 0
        self._progress = None
        self._items = None
        self._steps = None
        self.noun = "done"

    def __enter__(self):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        if not self.quiet:
            self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                      TimeElapsedColumn(), TimeRemainingColumn(), console=self.console, transient=False)
            self._progress.__enter__()
        return self

    def __exit__(self, *exc):
        if self._progress is not None:
            self._progress.__exit__(*exc)
        if exc[0] is not None and issubclass(exc[0], KeyboardInterrupt):
            self.console.print(f"interrupted: {self._counts(self.noun)} (finished outputs are complete; "
                               "rerun with --skip-existing to continue)")
        return False

    def start(self, description: str, total: int, noun: Optional[str] = None) -> None:
        """A progress bar over ``total`` items; ``noun`` (e.g. "encoded") words the counts if interrupted."""
        self.noun = noun or self.noun
        if self._progress is not None:
            self._items = self._progress.add_task(description, total=total)

    def advance(self, n: int = 1) -> None:
        if self._progress is not None and self._items is not None:
            self._progress.advance(self._items, n)

    def advancing(self):
        """A callable(done, total) that advances the item bar (see :meth:`start`) by what is newly done."""
        reported = [0]

        def update(done: int, total: int) -> None:
            self.advance(done - reported[0])
            reported[0] = done
        return update

    def steps(self, description: str):
        """A callable(done, total) driving a transient DDIM-step bar."""
        if self._progress is None:
            return None
        task = self._progress.add_task(description, total=1)

        def update(done: int, total: int) -> None:
            self._progress.update(task, completed=done, total=total, visible=done < total)
        return update

    def ok(self, source: str, output: str, **info) -> None:
        self.done += 1
        if self.json_lines:
            print(json.dumps({"input": source, "output": output, "status": "ok", **info}), flush=True)

    def skip(self, source: str, output: str) -> None:
        self.skipped += 1
        if self.json_lines:
            print(json.dumps({"input": source, "output": output, "status": "skipped"}), flush=True)

    def fail(self, source: str, message: str) -> None:
        self.failures.append((source, message))
        self.console.print(f"[red]error[/red]: {message}", markup=True, soft_wrap=True)
        if self.json_lines:
            print(json.dumps({"input": source, "status": "error", "error": message}), flush=True)

    def _counts(self, what: str) -> str:
        noun, _, rest = what.partition(" ")
        if self.done == 1 and noun in SINGULAR:  # "1 photo edited", not "1 photos edited"
            what = " ".join(filter(None, [SINGULAR[noun], rest]))
        parts = [f"{self.done} {what}"]
        if self.skipped:
            parts.append(f"{self.skipped} skipped (exist)")
        if self.failures:
            parts.append(f"{len(self.failures)} failed")
        return ", ".join(parts)

    def summary(self, what: str) -> int:
        """Print the closing line; exit code 1 if anything failed."""
        self.console.print(self._counts(what))
        return 1 if self.failures else 0


SINGULAR = {"mixes": "mix", "frames": "frame", "samples": "sample", "faces": "face", "photos": "photo"}


# -- inputs and outputs ----------------------------------------------------

@dataclass
class Item:
    """One input file; ``rel`` is its path relative to the folder it was found in."""

    path: Path
    rel: Path
    index: int = 0


def collect_inputs(specs: Sequence[str], kinds: str = "images", stdin=None,
                   relative_to: Optional[str] = None) -> Tuple[List[Item], List[Tuple[str, str]]]:
    """Expand files / folders / globs / ``-`` into items; returns (items, [(spec, error)]).

    Each item's ``rel`` (its output path under ``--out``) is its path inside a folder given as input, its bare name
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
                    errors.append((str(p), f"'{p}' is not inside the --relative-to folder '{relative_to}'"))
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
        "files given one by one (or read from stdin) keep only their names: --relative-to DIR keeps their "
        "folders under --out")


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
        raise InputError(f"--out '{out}': this command writes {writes}; give a folder or a name ending in "
                         f"{', '.join(sorted(known))}")
    return False


def prepare_output_folders(targets: Iterable[Path]) -> set:
    """Create the folders the outputs go to now, so that an unusable --out fails before any compute.

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


# -- shared options --------------------------------------------------------

@dataclass
class RunOptions:
    device: str = "auto"
    precision: Optional[str] = None
    batch_size: int = 8
    seed: int = 0
    steps: int = defaults.STEPS
    inv_steps: int = defaults.INV_STEPS
    skip_existing: bool = False
    overwrite: bool = False
    sampler: str = defaults.SAMPLER
    spacing: str = defaults.SPACING
    relative_to: Optional[str] = None  # outputs mirror the inputs' paths inside this folder (see collect_inputs)

    def validate(self, model: DiffAEModel, decode: bool = True, invert: bool = True) -> None:
        """Check step counts, sampler and spacing against the model's schedule before any work starts."""
        from ..diffusion import SAMPLERS, SAMPLING_SPACINGS, Parameterization

        if decode and self.sampler not in SAMPLERS:
            raise DiffeditError(f"sampler '{self.sampler}': choose from {', '.join(SAMPLERS)}", param="sampler")
        if (decode or invert) and self.spacing not in SAMPLING_SPACINGS:
            raise DiffeditError(f"spacing '{self.spacing}': choose from {', '.join(SAMPLING_SPACINGS)}", param="spacing")

        process = Parameterization.of(model.autoencoder.config)
        for flag, value, used in (("--steps", self.steps, decode), ("--inv-steps", self.inv_steps, invert)):
            if used:
                try:
                    process.schedule(value, self.spacing)
                except ValueError as err:
                    raise DiffeditError(f"{flag} {value}: {err}") from None
        self.resolved()

    def resolved(self) -> Tuple[torch.device, str]:
        device = pipeline.pick_device(self.device)
        return device, pipeline.pick_precision(self.precision, device)


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


def encode_codes(model: DiffAEModel, images: torch.Tensor, opts: RunOptions, reporter: Optional[Reporter] = None,
                 with_xT: bool = True, on_device: bool = False) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """images (N, 3, S, S) -> (z_sem (N, D), x_T (N, 3, S, S) or None), on the CPU or (``on_device``) where
    the autoencoder is."""
    _, precision = opts.resolved()
    ae = model.autoencoder
    z = pipeline.encode_semantic(ae, images, precision)
    x_T = None
    if with_xT:
        progress = reporter.steps(f"inverting ({opts.inv_steps} steps)") if reporter else None
        x_T = pipeline.invert(ae, images, z, opts.inv_steps, precision, progress, opts.spacing)
    if on_device:
        return z, x_T
    return z.cpu(), (x_T.cpu() if x_T is not None else None)


def decode_codes(model: DiffAEModel, z: torch.Tensor, x_T: torch.Tensor, opts: RunOptions,
                 reporter: Optional[Reporter] = None, what: str = "decoding", z_other: Optional[torch.Tensor] = None,
                 levels: Optional[Sequence[int]] = None) -> torch.Tensor:
    """z_sem (N, D) + x_T (N, 3, S, S) -> images (N, 3, S, S) in [-1, 1] on the CPU, with the run's steps,
    sampler, spacing and precision. With ``z_other`` (N, D), the blocks of ``levels`` (None: all) follow it
    (:func:`pipeline.decode_levels`)."""
    _, precision = opts.resolved()
    progress = reporter.steps(f"{what} ({opts.steps} steps)") if reporter else None
    if z_other is None:
        out = pipeline.decode(model.autoencoder, z, x_T, opts.steps, precision, progress, opts.sampler, opts.spacing)
    else:
        out = pipeline.decode_levels(model.autoencoder, z, z_other, levels, x_T, opts.steps, precision, progress,
                                     opts.sampler, opts.spacing)
    return out.cpu()


def shown_inputs(model: DiffAEModel, items: Sequence[Optional[Item]], z: torch.Tensor, x_T: Optional[torch.Tensor],
                 opts: RunOptions) -> torch.Tensor:
    """What a comparison shows for its inputs: (N, 3, S, S) in [-1, 1]. An image input is the image itself; a
    latent file (or a code with no item) is its decode, from its x_T (N, 3, S, S) or, without one, the run's
    random x_T for position k."""
    shown = []
    for k, item in enumerate(items):
        if item is not None and not is_latent_path(item.path):
            shown.append(imageio.load_image(item.path, model.image_size))
            continue
        x = x_T[k:k + 1] if x_T is not None else pipeline.random_x_T([k], model.image_size, opts.seed)
        shown.append(decode_codes(model, z[k:k + 1], x, opts)[0])
    return torch.stack(shown)


def plan_jobs(specs: Sequence[str], kinds: str, out: Optional[str], suffix: str, file_suffixes: Iterable[str],
              opts: "RunOptions", reporter: Reporter, what: str, noun: str,
              protect: Sequence[Path] = ()) -> List[Tuple[Item, Path]]:
    """Inputs -> [(item, output path)], reporting bad inputs, outputs that exist (see ``_existing``) and
    inputs that would share an output name (the first one keeps it). ``protect``: other files the run reads
    (a donor), never written either. Output folders are created here."""
    items, errors = collect_inputs(specs, kinds, relative_to=opts.relative_to)
    for spec, msg in errors:
        reporter.fail(spec, msg)
    if not items and not errors:
        raise InputError("no input files given")
    single = out_is_file(out, len(items), file_suffixes)
    out_path = Path(out or DEFAULT_OUT)
    if single and suffix != ".safetensors":
        imageio.check_writable_extension(out_path)
    plan = OutputPlan([i.path for i in items] + list(protect), opts.overwrite, opts.skip_existing)
    reporter.start(what, len(items), noun)
    todo = []
    for item in items:
        try:
            target = plan.reserve(output_path(item, out_path, single, suffix), str(item.path),
                                  hint=collision_hint(opts.relative_to))
        except DiffeditError as err:
            reporter.fail(str(item.path), str(err))
            reporter.advance()
            continue
        if not _existing(plan, target, item, reporter):
            todo.append((item, target))
    read_only = prepare_output_folders(t for _, t in todo)
    for item, target in [job for job in todo if job[1].parent in read_only]:
        reporter.fail(str(item.path), f"cannot write '{target}': permission denied (read-only folder)")
        reporter.advance()
    return [job for job in todo if job[1].parent not in read_only]


# -- the batch loop ----------------------------------------------------------

@dataclass
class Slot:
    """One image or latent code of an input, to run through the model, and where its result goes.

    ``pixels`` (3, S, S) in [-1, 1], or ``z`` (D,) and ``x_T`` (3, S, S) / None read from a latent file;
    ``index``: the input's position (seeds a random x_T); ``info``: what its report line adds (a face
    number); ``extra``: what a latent file written from it stores besides the codes (a face's alignment).
    """

    source: str
    target: Optional[Path]
    index: int = 0
    pixels: Optional[torch.Tensor] = None
    z: Optional[torch.Tensor] = None
    x_T: Optional[torch.Tensor] = None
    info: dict = field(default_factory=dict)
    extra: Optional[dict] = None


@dataclass
class Unit:
    """What one input yields: its slots (none when it failed or all its outputs are skipped) and, when its
    output is made of all of them (a photo with its faces pasted back), ``finish(results)``, which writes
    and reports that output."""

    source: str
    slots: List[Slot]
    finish: Optional[Callable[[List[Any]], None]] = None


_PENDING = object()  # a slot's result before its batch has run


def run_units(units: Iterable[Unit], opts: "RunOptions", compute: Callable[[List[Slot]], List[Any]],
              write: Callable[[Slot, Any], None], reporter: Reporter, info: Optional[dict] = None) -> None:
    """The batch loop of every file job.

    Slots of consecutive units are batched together (up to ``opts.batch_size``); an output that another run
    published while this one computed is a skip with ``opts.skip_existing``, else a per-file failure; ``compute(slots)`` runs the
    model on a batch and returns one result per slot; once all slots of a unit have their results the
    unit is written: ``write(slot, result)`` per slot (reported with ``slot.info`` and ``info``), or the
    unit's ``finish``. A failure is reported for its input and the run goes on; every unit advances the
    progress bar once.
    """
    queue: List[Tuple[Slot, List[Any], int]] = []  # (slot, its unit's results, its place there)
    waiting: List[Tuple[Unit, List[Any]]] = []  # units in input order, with their results so far

    def failed(source: str, err: DiffeditError, target: Optional[Path] = None) -> None:
        if isinstance(err, OutputExists) and opts.skip_existing and target is not None:
            reporter.skip(source, str(target))  # another run wrote it meanwhile: what --skip-existing asks for
            return
        named = f"'{source}': {err}" if isinstance(err, NumericalError) else str(err)  # say whose decode it was
        reporter.fail(source, named)

    def finish(unit: Unit, results: List[Any]) -> None:
        if unit.finish is not None:
            try:
                unit.finish(results)
            except DiffeditError as err:
                failed(unit.source, err)
        else:
            for slot, result in zip(unit.slots, results):
                try:
                    write(slot, result)
                    reporter.ok(slot.source, str(slot.target), **slot.info, **(info or {}))
                except DiffeditError as err:
                    failed(slot.source, err, slot.target)
        reporter.advance()

    def flush() -> None:
        for (_, results, k), out in zip(queue, compute([slot for slot, _, _ in queue])):
            results[k] = out
        queue.clear()
        while waiting and all(r is not _PENDING for r in waiting[0][1]):
            finish(*waiting.pop(0))

    for unit in units:
        if not unit.slots:
            reporter.advance()
            continue
        results = [_PENDING] * len(unit.slots)
        waiting.append((unit, results))
        for k, slot in enumerate(unit.slots):
            queue.append((slot, results, k))
            if len(queue) >= max(1, opts.batch_size):
                flush()
    if queue:
        flush()



def file_units(todo: Sequence[Tuple[Item, Optional[Path]]], model: DiffAEModel, reporter: Reporter,
               need_xT: bool = True) -> Iterable[Unit]:
    """Input files as units of one slot: an image's pixels, or a latent file's codes (checked against the
    model; ``need_xT``: it must hold an x_T). An unreadable input is reported and yields no slot."""
    for item, target in todo:
        source = str(item.path)
        try:
            if is_latent_path(item.path):
                code = load_latent(item.path)
                check_latent_model(code, model, item.path)
                if need_xT and code.x_T is None:
                    raise InputError(f"'{item.path}' holds no x_T; encode with inversion or use --random-xt")
                slot = Slot(source, target, item.index, z=code.z_sem, x_T=code.x_T)
            else:
                slot = Slot(source, target, item.index, pixels=imageio.load_image(item.path, model.image_size))
        except DiffeditError as err:
            reporter.fail(source, str(err))
            yield Unit(source, [])
            continue
        yield Unit(source, [slot])


def slot_codes(model: DiffAEModel, slots: Sequence[Slot], opts: RunOptions, reporter: Optional[Reporter] = None,
               need_xT: bool = True) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """(z_sem (N, D), x_T (N, 3, S, S) or None) of slots, where the autoencoder is (a batch's codes stay on
    its device from encoding to decoding): latent codes as read, images encoded (and, with ``need_xT``,
    inverted) in one batch."""
    device = next(model.autoencoder.parameters()).device
    images = [k for k, s in enumerate(slots) if s.pixels is not None]
    z = [s.z.to(device) if s.z is not None else None for s in slots]
    x_T = [s.x_T.to(device) if s.x_T is not None else None for s in slots]
    if images:
        z_img, x_img = encode_codes(model, torch.stack([slots[k].pixels for k in images]), opts, reporter, need_xT,
                                    on_device=True)
        for j, k in enumerate(images):
            z[k] = z_img[j]
            x_T[k] = x_img[j] if x_img is not None else None
    return torch.stack(z), (torch.stack(x_T) if need_xT else None)


def load_codes(model: DiffAEModel, items: Sequence[Item], opts: RunOptions, reporter: Reporter,
               need_xT: bool = True) -> Tuple[List[Item], Optional[torch.Tensor], Optional[torch.Tensor]]:
    """(readable items, z_sem, x_T) of images / latent files; unreadable ones are reported (and advance)."""
    good, slots = [], []
    for item, unit in zip(items, file_units([(i, None) for i in items], model, reporter, need_xT)):
        if unit.slots:
            good.append(item)
            slots.extend(unit.slots)
        else:
            reporter.advance()
    if not slots:
        return [], None, None
    z, x_T = slot_codes(model, slots, opts, reporter, need_xT)
    return good, z.cpu(), (x_T.cpu() if x_T is not None else None)


def encode_units(model: DiffAEModel, units: Iterable[Unit], opts: RunOptions, reporter: Reporter,
                 preprocessing: str) -> None:
    """Write each slot's z_sem and inverted x_T to its latent file (``slot.extra`` into the metadata)."""
    def compute(slots):
        z, x_T = encode_codes(model, torch.stack([s.pixels for s in slots]), opts, reporter)
        return list(zip(z, x_T))

    def write(slot, codes):
        meta = latent_metadata(model, opts.inv_steps, slot.source, preprocessing, extra=slot.extra,
                               inv_spacing=opts.spacing)
        save_latent(slot.target, LatentCode(codes[0], codes[1], meta), exclusive=not opts.overwrite)

    run_units(units, opts, compute, write, reporter)


def encode_files(model: DiffAEModel, specs: Sequence[str], out: Optional[str], opts: RunOptions,
                 reporter: Reporter) -> int:
    """Encode images to latent files (z_sem + inverted x_T). Returns the exit code."""
    opts.validate(model, decode=False)
    todo = plan_jobs(specs, "images", out, ".safetensors", {".safetensors"}, opts, reporter, "encoding", "encoded")
    encode_units(model, file_units(todo, model, reporter), opts, reporter, imageio.PREPROCESSING)
    return reporter.summary("encoded")


def decode_files(model: DiffAEModel, specs: Sequence[str], out: Optional[str], opts: RunOptions, reporter: Reporter,
                 random_xT: bool = False, ext: str = ".png") -> int:
    """Decode latent files (or images, encoded on the fly) to images."""
    opts.validate(model)
    todo = plan_jobs(specs, "any", out, ext, imageio.IMAGE_EXTENSIONS, opts, reporter, "decoding", "decoded")

    def compute(slots):
        z, x_T = slot_codes(model, slots, opts, reporter, need_xT=not random_xT)
        if random_xT:
            x_T = pipeline.random_x_T([s.index for s in slots], model.image_size, opts.seed)
        return list(decode_codes(model, z, x_T, opts, reporter))

    def write(slot, image):
        imageio.save_image(image, slot.target, exclusive=not opts.overwrite)

    run_units(file_units(todo, model, reporter, need_xT=not random_xT), opts, compute, write, reporter)
    return reporter.summary("decoded")


def interpolate_pair(model: DiffAEModel, a: str, b: str, out: Optional[str], frames: int, opts: RunOptions,
                     reporter: Reporter, gif_ms: int = 120, levels: Optional[Sequence[int]] = None) -> int:
    """Interpolate two images / latent files: lerp z_sem, slerp x_T; frames + grid + GIF.

    ``levels`` (0-based, 0 = finest; :func:`diffedit_cli.hierarchy.parse_levels` reads the ``--levels`` text):
    only those levels move from A to B, the others keep A's code, and x_T stays A's
    (see :func:`diffedit_cli.pipeline.decode_levels`).
    """
    level_list = check_interpolation(model, frames, levels, opts)
    items, errors = collect_inputs([a, b], "any")
    if errors:
        raise InputError(errors[0][1])
    if len(items) != 2:
        raise InputError("interpolate needs two different inputs A and B")
    plan = interpolation_folder(out, items[0].path.stem, items[1].path.stem, opts, frames, [i.path for i in items])
    reporter.start("interpolating", frames)
    good, z, x_T = load_codes(model, items, opts, reporter)
    if len(good) != 2:
        return reporter.summary("frames")
    imgs = interpolate_codes(model, z, x_T, frames, level_list, opts, reporter)
    return write_interpolation(imgs, plan, f"{a} {b}", reporter, gif_ms)


def check_interpolation(model: DiffAEModel, frames: int, levels: Optional[Sequence[int]], opts: RunOptions):
    """Checks an interpolation's settings; returns the checked levels (or None)."""
    from ..hierarchy import check_levels

    if frames < 2:
        raise InputError("frames must be at least 2")
    level_list = check_levels(levels, model.autoencoder)
    opts.validate(model)
    return level_list


def interpolation_folder(out: Optional[str], stem_a: str, stem_b: str, opts: RunOptions, frames: int,
                         inputs: Sequence[Path] = ()) -> OutputPlan:
    """The outputs of an interpolation (default folder ``diffedit-out/interp_<a>_<b>``), planned before compute:
    the folder is refused when it holds files (unless overwriting), and no output may be an input."""
    out_dir = out_folder(out, Path(DEFAULT_OUT) / f"interp_{stem_a}_{stem_b}")
    plan = OutputPlan(inputs, opts.overwrite)
    plan.folder(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()) and not opts.overwrite:
        raise InputError(f"output folder '{out_dir}' already exists and is not empty (use --overwrite)")
    for name in [f"frame_{k:03d}.png" for k in range(frames)] + ["grid.png", "interpolation.gif"]:
        plan.claim(out_dir / name)
    return plan


def interpolate_codes(model: DiffAEModel, z: torch.Tensor, x_T: torch.Tensor, frames: int,
                      levels: Optional[Sequence[int]], opts: RunOptions, reporter: Reporter) -> torch.Tensor:
    """Frames (frames, 3, S, S) in [-1, 1] from codes z (2, D) and x_T (2, 3, S, S) of A and B."""
    w = torch.linspace(0, 1, frames)
    zs = pipeline.lerp(z[0], z[1], w)
    xs = pipeline.slerp(x_T[0], x_T[1], w) if levels is None else x_T[:1].repeat(frames, 1, 1, 1)
    z_base = z[:1].repeat(frames, 1)
    imgs = []
    for chunk in batched(list(range(frames)), opts.batch_size):
        part = slice(chunk[0], chunk[-1] + 1)
        imgs.append(decode_codes(model, z_base[part], xs[part], opts, reporter, z_other=zs[part], levels=levels))
        reporter.advance(len(chunk))
    return torch.cat(imgs)


def write_interpolation(imgs: torch.Tensor, plan: OutputPlan, source: str, reporter: Reporter, gif_ms: int = 120) -> int:
    """frame_NNN.png, grid.png and interpolation.gif of frames (F, 3, S, S) into the planned folder; returns the
    exit code."""
    frames, out_dir = len(imgs), plan.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    for k in range(frames):
        imageio.save_image(imgs[k], out_dir / f"frame_{k:03d}.png", exclusive=plan.exclusive)
    imageio.save_image(imageio.make_grid(imgs, ncol=frames), out_dir / "grid.png", exclusive=plan.exclusive)
    imageio.save_gif(list(imgs), out_dir / "interpolation.gif", duration_ms=gif_ms, pingpong=True,
                     exclusive=plan.exclusive)
    reporter.done = frames
    reporter.ok(source, str(out_dir), frames=frames, grid=str(out_dir / "grid.png"), gif=str(out_dir / "interpolation.gif"))
    reporter.done = frames
    return reporter.summary("frames")


# -- editing ---------------------------------------------------------------

def decode_edit(model: DiffAEModel, plan: EditPlan, z: torch.Tensor, x_T: torch.Tensor, opts: RunOptions,
                reporter: Reporter) -> torch.Tensor:
    """Decode ``plan``'s edits of codes z (N, D) with their x_T (N, 3, S, S): (N, columns, 3, S, S) in [-1, 1], CPU."""
    n, columns = len(z), plan.columns
    what = "decoding" if columns == 1 else "decoding sweep"
    dec = decode_codes(model, z.repeat(columns, 1), x_T.repeat(columns, 1, 1, 1), opts, reporter, what,
                       z_other=plan.codes(z), levels=plan.route)
    return dec.reshape(columns, n, *dec.shape[1:]).transpose(0, 1)


def edit_info(plan: EditPlan, orthogonal: Sequence[str] = ()) -> dict:
    """What a report line says about the edit."""
    return dict(edits=plan.labels, topk=plan.topk, levels=plan.levels, alphas=plan.alphas,
                orthogonal_to=list(orthogonal) or None)


def column_labels(plan: EditPlan) -> List[str]:
    """What each decode of an edit is, for the labels of a comparison: the sweep's alphas, or the edits."""
    if plan.alphas is not None:
        name = next(iter(plan.labels), "alpha")
        return [f"{name} {a:+.2f}" for a in plan.alphas]
    return [", ".join(f"{n} {a:+.2f}" for n, a in plan.labels.items())]


def edit_units(model: DiffAEModel, units: Iterable[Unit], plan: EditPlan, opts: RunOptions, reporter: Reporter,
               compare: bool = False, info: Optional[dict] = None) -> None:
    """Decode ``plan``'s edits of every slot. A unit without ``finish`` writes one image per slot: the edit,
    or a row of them (a sweep), after the input with ``compare`` (a latent file's input: its reconstruction).
    A unit with ``finish`` gets per slot the decodes (columns, 3, S, S) in [-1, 1]."""

    labels = (["input"] if compare else []) + column_labels(plan)

    def compute(slots):
        z, x_T = slot_codes(model, slots, opts, reporter)
        outs = decode_edit(model, plan, z, x_T, opts, reporter)
        return [(outs[k], z[k], x_T[k]) for k in range(len(slots))]

    def write(slot, result):
        outs, z, x_T = result
        panels = list(outs)
        if compare:
            before = slot.pixels
            if before is None:
                before = decode_codes(model, z[None], x_T[None], opts)[0]
            panels = [before] + panels
        image = panels[0] if len(panels) == 1 else imageio.display_grid(torch.stack(panels), len(panels), labels)
        slot.target.parent.mkdir(parents=True, exist_ok=True)
        imageio.save_image(image, slot.target, exclusive=not opts.overwrite)

    run_units(units, opts, compute, write, reporter, info)


def edit_files(model: DiffAEModel, specs: Sequence[str], out: Optional[str], opts: RunOptions, reporter: Reporter,
               attrs: Sequence[str], alpha: float = 0.3, topk: Optional[int] = None,
               alphas: Optional[Sequence[float]] = None, compare: bool = False,
               levels: Optional[Sequence[int]] = None, directions: Sequence[str] = (),
               orthogonal: Sequence[str] = ()) -> int:
    """Edit images / latent files along classifier directions and direction-file directions; one output per input.

    The edit (``attrs``, ``alpha``, ``topk``, ``alphas``, ``levels``, ``directions``, ``orthogonal``) is
    :func:`diffedit_cli.editing.plan.plan_edit`'s. With ``alphas`` the output is a row of decodes at each
    alpha of the (single) edit; with ``compare`` the (resized) input is put on the left.
    """
    plan = plan_edit(model, attrs, alpha, topk, alphas, levels, directions, orthogonal)
    opts.validate(model)
    todo = plan_jobs(specs, "any", out, ".png", imageio.IMAGE_EXTENSIONS, opts, reporter, "editing", "edited")
    edit_units(model, file_units(todo, model, reporter), plan, opts, reporter, compare, edit_info(plan, orthogonal))
    return reporter.summary("edited")


# -- sampling --------------------------------------------------------------

GRID_SAMPLES = 64  # grid.png shows the first samples only: a 100,000-sample run still writes a viewable grid


def sample_images(model: DiffAEModel, n: int, out: Optional[str], opts: RunOptions, reporter: Reporter,
                  where: Sequence[str] = (), latent_steps: int = 100, max_tries: int = 50) -> int:
    """Latent DDIM -> z_sem -> image DDIM; ``where`` keeps samples the classifier labels so (rejection sampling)."""
    from ..diffusion import respaced_timesteps
    from ..editing.attributes import resolve_attribute
    from ..pipeline import sample_latents

    latent = model.component("latent")
    try:  # the latent schedule's step counts, checked before any work
        respaced_timesteps(latent.config.diffusion_steps, latent_steps)
    except ValueError as err:
        raise DiffeditError(f"latent_steps {latent_steps}: {err}", param="latent_steps") from None
    conditions = []
    if where:
        classifier = model.component("classifier")
        conditions = [resolve_attribute(w, classifier.attributes) for w in where]
    opts.validate(model, invert=False)
    out_dir = out_folder(out, Path(DEFAULT_OUT) / "samples")
    resume = opts.skip_existing and not opts.overwrite  # samples already written are kept and not recomputed
    plan = OutputPlan((), opts.overwrite or resume)
    plan.folder(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()) and not (opts.overwrite or resume):
        raise InputError(f"output folder '{out_dir}' already exists and is not empty (use --skip-existing to "
                         "complete an interrupted run, or --overwrite)")
    targets = [plan.claim(out_dir / f"sample_{k:04d}.png") for k in range(n)]
    grid_path = plan.claim(out_dir / "grid.png")
    reporter.start("sampling", n)
    kept: List[torch.Tensor] = []
    drawn = 0
    gen = torch.Generator().manual_seed(opts.seed)
    while len(kept) < n and drawn < n * max_tries:  # every code first (cheap), so a resumed run draws the same
        batch = max(opts.batch_size, n - len(kept)) if conditions else min(opts.batch_size, n - len(kept))
        z_T = torch.randn(batch, latent.config.num_channels, generator=gen)
        drawn += batch
        z = sample_latents(latent, z_T.to(latent.conds_mean.device), latent_steps).cpu()
        if conditions:
            with torch.no_grad():
                logits = classifier(z.to(next(classifier.parameters()).device)).cpu()
            ok = torch.ones(len(z), dtype=torch.bool)
            for index, sign in conditions:
                ok &= (logits[:, index] > 0) if sign > 0 else (logits[:, index] <= 0)
            z = z[ok]
        kept.extend(z[: n - len(kept)])
    if len(kept) < n:
        raise DiffeditError(f"only {len(kept)} of {drawn} latent samples satisfy --where {' '.join(where)}; "
                            "the condition may be too rare for this model")
    z = torch.stack(kept)
    out_dir.mkdir(parents=True, exist_ok=True)
    shown = {}  # the first GRID_SAMPLES images, for grid.png

    def report(k: int, skipped: bool) -> None:
        if skipped:
            reporter.skip(f"sample {k}", str(targets[k]))
        else:
            reporter.ok(f"sample {k}", str(targets[k]), seed=opts.seed, index=k, latent_steps=latent_steps,
                        where=list(where))

    todo = []
    for k in range(n):
        if resume and targets[k].exists():
            report(k, True)
            reporter.advance()
        else:
            todo.append(k)
    for chunk in batched(todo, opts.batch_size):  # decoded and written as they go: memory stays one batch
        x_T = pipeline.random_x_T(chunk, model.image_size, opts.seed)  # image k's x_T from seed + k
        images = decode_codes(model, z[torch.tensor(chunk)], x_T, opts, reporter)
        for k, image in zip(chunk, images):
            try:
                imageio.save_image(image, targets[k], exclusive=not opts.overwrite)
                report(k, False)
            except OutputExists as err:  # another run wrote it meanwhile
                report(k, True) if resume else reporter.fail(f"sample {k}", str(err))
            if k < GRID_SAMPLES:
                shown[k] = image
        reporter.advance(len(chunk))
    if not (resume and grid_path.exists()):
        tiles = [shown[k] if k in shown else imageio.load_image(targets[k], model.image_size)
                 for k in range(min(n, GRID_SAMPLES))]
        imageio.save_image(imageio.make_grid(torch.stack(tiles), ncol=min(8, n)), grid_path,
                           exclusive=not opts.overwrite)
    if conditions:
        reporter.console.print(f"kept {n} of {drawn} latent samples satisfying {' and '.join(where)}")
    return reporter.summary("samples")
