"""File-level swap and recombination (``diffedit swap`` / ``diffedit recombine``) over the GAE code operations of
:mod:`diffedit_cli.editing.swapping`: images or latent files in, images out, through the batch machinery of
:mod:`.runner` (input collection, per-file failures, atomic writes, ``json`` lines). The image is decoded from
z_sem' with x_T inverted from the image that keeps its layout (A for swap, the base for recombine) or, for
recombine, with random x_T.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional, Sequence

import torch

from .. import pipeline
from ..editing.swapping import model_gae, recombine_codes, swap_codes
from ..errors import InputError, opt
from ..io import images as imageio
from ..io.latents import is_latent_path
from ..io.models import DiffAEModel
from ..io.outputs import OutputPlan
from .inputs import DEFAULT_OUT, Item, collect_inputs, plan_jobs, prepare_output_folders, report_existing
from .options import RunOptions
from .report import Reporter
from .runner import decode_codes, file_units, load_codes, run_units, shown_inputs, slot_codes


def _one_item(spec: str, what: str) -> Item:
    """The single image / latent file ``spec`` names (nothing read yet); a bad one is an InputError."""
    items, errors = collect_inputs([spec], "any")
    if errors:
        raise InputError(f"{what}: {errors[0][1]}")
    if len(items) != 1:
        raise InputError(f"{what} must be one image or latent file, '{spec}' gives {len(items)}")
    return items[0]


def _one_code(model: DiffAEModel, item: Item, what: str, opts: RunOptions, need_xT: bool):
    """(z_sem (D,), x_T or None) of one input; a bad one is an InputError."""
    silent = Reporter(quiet=True)
    # a latent file carries its x_T for free: comparisons show it decoded from that, not from random noise
    good, z, x_T = load_codes(model, [item], opts, silent, need_xT=need_xT or is_latent_path(item.path))
    if not good:
        raise InputError(f"{what}: {silent.failures[0][1]}")
    return z[0], (x_T[0] if x_T is not None else None)


def _shown_one(model: DiffAEModel, item: Optional[Item], z: torch.Tensor, x_T: Optional[torch.Tensor],
               opts: RunOptions) -> torch.Tensor:
    """:func:`shown_inputs` for one input: z (D,), x_T (3, S, S) or None -> (3, S, S)."""
    return shown_inputs(model, [item], z[None], None if x_T is None else x_T[None], opts)[0]


def swap_files(model: DiffAEModel, inputs: Sequence[str], donor: str, attrs: Sequence[str], out: Optional[str],
               opts: RunOptions, reporter: Reporter, compare: bool = False, residual: bool = False) -> int:
    """Give every input (image / latent file / folder) the ``attrs`` slices of ``donor``; one image per input.

    x_T comes from each input (DDIM inversion, or the latent file's). ``compare`` writes input | donor | result.
    """
    gae = model_gae(model)
    if not attrs:
        raise InputError(f"give at least one {opt('attr')} (slices: {', '.join(gae.slice_names)})")
    slices = [gae.resolve_slice(a) for a in attrs]
    opts.validate(model)
    donor_item = _one_item(donor, "donor B")
    todo = plan_jobs(inputs, "any", out, ".png", imageio.IMAGE_EXTENSIONS, opts, reporter, "swapping", "swapped",
                     protect=[donor_item.path])
    z_donor, x_donor = _one_code(model, donor_item, "donor B", opts, need_xT=False)
    donor_pixels = []

    def compute(slots):
        z, x_T = slot_codes(model, slots, opts, reporter)
        outs = decode_codes(model, swap_codes(gae, z, z_donor, slices, residual), x_T, opts, reporter)
        return [(outs[k], z[k], x_T[k]) for k in range(len(slots))]

    def write(slot, result):
        image, z, x_T = result
        if compare:
            if not donor_pixels:
                donor_pixels.append(_shown_one(model, donor_item, z_donor, x_donor, opts))
            before = slot.pixels if slot.pixels is not None else _shown_one(model, None, z, x_T, opts)
            image = imageio.display_grid(torch.stack([before, donor_pixels[0], image]), 3,
                                         ["input", "donor", "with the donor's " + ", ".join(slices)])
        imageio.save_image(image, slot.target, exclusive=not opts.overwrite)

    run_units(file_units(todo, model, reporter), opts, compute, write, reporter,
              dict(donor=str(donor_item.path), slices=slices))
    return reporter.summary("swapped")


def recombine_files(model: DiffAEModel, base: str, parts: Dict[str, str], out: Optional[str], opts: RunOptions,
                    reporter: Reporter, random_xT: bool = False, compare: bool = False, residual: bool = False) -> int:
    """One image: the base with each slice ``name`` from ``parts[name]`` (image or latent file).

    x_T is the base's (inverted, or from its latent file) or, with ``random_xT``, drawn from ``opts.seed``.
    ``compare`` writes base | part images... | result.
    """
    gae = model_gae(model)
    if not parts:
        raise InputError(f"give at least one part as {opt('SLICE')} IMAGE (slices: {', '.join(gae.slice_names)})")
    resolved = {}
    for name, spec in parts.items():
        slice_name = gae.resolve_slice(name)
        if slice_name in resolved:
            raise InputError(f"slice '{slice_name}' is given twice")
        resolved[slice_name] = spec
    opts.validate(model, invert=not random_xT)
    base_item = _one_item(base, opt("base"))
    items = {name: _one_item(spec, opt(name)) for name, spec in resolved.items()}
    target = Path(out) if out else Path(DEFAULT_OUT) / f"recombine_{base_item.path.stem}.png"
    if target.suffix.lower() not in imageio.IMAGE_EXTENSIONS:
        target = target / f"recombine_{base_item.path.stem}.png"
    plan = OutputPlan([base_item.path, *(i.path for i in items.values())], opts.overwrite, opts.skip_existing)
    plan.reserve(target, str(base_item.path))
    reporter.start("recombining", 1)
    if report_existing(plan, target, str(base_item.path), reporter):
        reporter.advance()
        return reporter.summary("recombined")
    prepare_output_folders([target])
    z_base, x_base = _one_code(model, base_item, opt("base"), opts, need_xT=not random_xT)
    codes, part_xT = {}, {}
    for name, item in items.items():
        codes[name], part_xT[name] = _one_code(model, item, opt(name), opts, need_xT=False)
    z_new = recombine_codes(gae, z_base, codes, residual)
    x_T = pipeline.random_x_T([0], model.image_size, opts.seed) if random_xT else x_base[None]
    image = decode_codes(model, z_new, x_T, opts, reporter)[0]
    if compare:
        panels = [_shown_one(model, base_item, z_base, x_base, opts)]
        panels += [_shown_one(model, items[n], codes[n], part_xT[n], opts) for n in resolved]
        image = imageio.display_grid(torch.stack(panels + [image]), len(panels) + 1,
                                     ["base"] + [f"{n} from" for n in resolved] + ["result"])
    imageio.save_image(image, target, exclusive=plan.exclusive)  # never over a file that appeared meanwhile
    reporter.ok(str(base_item.path), str(target), parts={n: str(items[n].path) for n in resolved},
                x_T="random" if random_xT else "base")
    reporter.advance()
    return reporter.summary("recombined")
