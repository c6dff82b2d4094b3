"""The one job loop: units of slots (an image or a code each) batched across inputs, results written per input as
soon as all its slots are done, failures per file; and the code helpers every job uses (encode, decode, load)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable, List, Optional, Sequence, Tuple

import torch

from ..io import images as imageio
from .. import pipeline
from ..errors import DiffeditError, InputError, NumericalError, opt
from ..io.files import OutputExists
from ..io.latents import LatentCode, check_latent_model, is_latent_path, latent_metadata, load_latent, save_latent
from ..io.models import DiffAEModel
from .report import Reporter
from .options import RunOptions
from .inputs import Item


def encode_codes(model: DiffAEModel, images: torch.Tensor, opts: RunOptions, reporter: Optional[Reporter] = None,
                 with_xT: bool = True, on_device: bool = False,
                 sources: Optional[Sequence[str]] = None) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """images (N, 3, S, S) -> (z_sem (N, D), x_T (N, 3, S, S) or None), on the CPU or (``on_device``) where
    the autoencoder is. With ``opts.cache``, images inverted before with the same model and settings are read
    from it (and new inversions stored, ``sources`` naming where each image came from)."""
    if with_xT and opts.cache is not None:
        return _cached_codes(model, images, opts, reporter, on_device, sources)
    ae = model.autoencoder
    z = pipeline.encode_semantic(ae, images, opts.sampling.precision)
    x_T = None
    if with_xT:
        progress = reporter.steps(f"inverting ({opts.sampling.inv_steps} steps)") if reporter else None
        x_T = pipeline.invert(ae, images, z, opts.sampling, progress)
    if on_device:
        return z, x_T
    return z.cpu(), (x_T.cpu() if x_T is not None else None)


def _cached_codes(model: DiffAEModel, images: torch.Tensor, opts: RunOptions, reporter: Optional[Reporter],
                  on_device: bool, sources: Optional[Sequence[str]]) -> Tuple[torch.Tensor, torch.Tensor]:
    """:func:`encode_codes` through the latent cache: only the images it does not hold are inverted."""
    cache = opts.cache
    device, precision = opts.resolved()
    keys = [cache.key(img, model.fingerprint, opts.sampling.inv_steps, opts.sampling.spacing, precision, device.type,
                      opts.sampling.inv_sampler)
            for img in images]
    found = [cache.get(k) for k in keys]
    missing = [i for i, hit in enumerate(found) if hit is None]
    if missing:
        z_new, x_new = encode_codes(model, images[missing], replace(opts, cache=None), reporter, True, True)
        for j, i in enumerate(missing):
            source = sources[i] if sources is not None else ""
            meta = {**latent_metadata(model, opts.sampling.inv_steps, source, "as the network saw it (cached)",
                                      inv_spacing=opts.sampling.spacing, inv_sampler=opts.sampling.inv_sampler), "precision": precision, "device": device.type}
            cache.put(keys[i], z_new[j], x_new[j], meta)
            found[i] = (z_new[j], x_new[j])
    target = next(model.autoencoder.parameters()).device if on_device else torch.device("cpu")
    z = torch.stack([hit[0].to(target) for hit in found])
    x_T = torch.stack([hit[1].to(target) for hit in found])
    return z, x_T


def decode_codes(model: DiffAEModel, z: torch.Tensor, x_T: torch.Tensor, opts: RunOptions,
                 reporter: Optional[Reporter] = None, what: str = "decoding", z_other: Optional[torch.Tensor] = None,
                 levels: Optional[Sequence[int]] = None) -> torch.Tensor:
    """z_sem (N, D) + x_T (N, 3, S, S) -> images (N, 3, S, S) in [-1, 1] on the CPU, with the run's sampling.
    With ``z_other`` (N, D), the blocks of ``levels`` (None: all) follow it (:func:`pipeline.decode_levels`)."""
    progress = reporter.steps(f"{what} ({opts.sampling.steps} steps)") if reporter else None
    if z_other is None:
        out = pipeline.decode(model.autoencoder, z, x_T, opts.sampling, progress)
    else:
        out = pipeline.decode_levels(model.autoencoder, z, z_other, levels, x_T, opts.sampling, progress)
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
            reporter.skip(source, str(target))  # another run wrote it meanwhile: what skip_existing asks for
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
                    raise InputError(f"'{item.path}' holds no x_T; encode with inversion or use {opt('random_xt')}")
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
                                    on_device=True, sources=[slots[k].source for k in images])
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
        meta = latent_metadata(model, opts.sampling.inv_steps, slot.source, preprocessing, extra=slot.extra,
                               inv_spacing=opts.sampling.spacing, inv_sampler=opts.sampling.inv_sampler)
        save_latent(slot.target, LatentCode(codes[0], codes[1], meta), exclusive=not opts.overwrite)

    run_units(units, opts, compute, write, reporter)
