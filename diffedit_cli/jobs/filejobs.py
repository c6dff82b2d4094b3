"""The file jobs behind ``encode``, ``decode`` and ``edit``: inputs -> the job loop -> one output per input."""

from __future__ import annotations

from typing import Iterable, List, Optional, Sequence

import torch

from ..io import images as imageio
from .. import pipeline
from ..editing.plan import EditPlan
from ..io.models import DiffAEModel
from .report import Reporter
from .options import RunOptions
from .inputs import plan_jobs
from .runner import Unit, decode_codes, encode_units, file_units, run_units, slot_codes


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


def decode_edit(model: DiffAEModel, plan: EditPlan, z: torch.Tensor, x_T: torch.Tensor, opts: RunOptions,
                reporter: Reporter) -> torch.Tensor:
    """Decode ``plan``'s edits of codes z (N, D) with their x_T (N, 3, S, S): (N, columns, 3, S, S) in [-1, 1], CPU."""
    n, columns = len(z), plan.columns
    what = "decoding" if columns == 1 else "decoding sweep"
    dec = decode_codes(model, z.repeat(columns, 1), x_T.repeat(columns, 1, 1, 1), opts, reporter, what,
                       z_other=plan.codes(z), levels=plan.route)
    return dec.reshape(columns, n, *dec.shape[1:]).transpose(0, 1)


def edit_info(plan: EditPlan) -> dict:
    """What a report line says about the edit."""
    return dict(edits=plan.labels, topk=plan.topk, levels=plan.levels, alphas=plan.alphas,
                orthogonal_to=plan.orthogonal or None)


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


def edit_files(model: DiffAEModel, specs: Sequence[str], out: Optional[str], plan: EditPlan, opts: RunOptions,
               reporter: Reporter, compare: bool = False) -> int:
    """Edit images / latent files as ``plan`` says (:func:`diffedit_cli.editing.plan.plan_edit`); one output per
    input. With a sweep (``plan.alphas``) the output is a row of decodes at each alpha; with ``compare`` the
    (resized) input is put on the left."""
    opts.validate(model)
    todo = plan_jobs(specs, "any", out, ".png", imageio.IMAGE_EXTENSIONS, opts, reporter, "editing", "edited")
    edit_units(model, file_units(todo, model, reporter), plan, opts, reporter, compare, edit_info(plan))
    return reporter.summary("edited")
