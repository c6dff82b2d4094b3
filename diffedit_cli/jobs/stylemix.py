"""Style mixing (HDAE paper Fig. 10): A's code with some resolution levels taken from B.

``style_mix(model, A-inputs, B-inputs, levels)`` decodes, for every pair (A_i, B_j), the code of A_i whose
``levels`` come from B_j (:func:`diffedit_cli.pipeline.decode_levels`), with A_i's x_T (DDIM inversion, or
the x_T stored in its latent file) or, with ``random_xT``, x_T drawn from ``seed + i``. Outputs in one folder:

* ``mix_<A>__<B>.png`` per pair;
* ``grid.png``: a StyleGAN-style grid, B inputs along the top row, A inputs down the left column (inputs that
  are latent files are shown by their decode), mix (i, j) in row i, column j.

On plain Diff-AE models the chosen levels' UNet blocks get B's code (our extension; see docs/hdae.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import torch

from ..io import images as imageio
from .. import pipeline
from ..errors import InputError, opt
from ..networks.hierarchy import check_levels, format_levels
from ..io.outputs import OutputPlan, out_folder
from .inputs import DEFAULT_OUT, Item, batched, collect_inputs
from .options import RunOptions
from .report import Reporter
from .runner import decode_codes, load_codes, shown_inputs
from ..io.models import DiffAEModel


def mix_target(out_dir: Path, a: Item, b: Item) -> Path:
    return out_dir / f"mix_{a.path.stem}__{b.path.stem}.png"


def style_mix(model: DiffAEModel, a_specs: Sequence[str], b_specs: Sequence[str], levels: Sequence[int],
              out: Optional[str], opts: RunOptions, reporter: Reporter, random_xT: bool = False) -> int:
    """Mix every A with every B at ``levels`` (0-based, 0 = finest). Returns the exit code."""
    level_list = check_levels(levels, model.autoencoder)
    opts.validate(model, invert=not random_xT)
    a_items, a_errors = collect_inputs(a_specs, "any")
    b_items, b_errors = collect_inputs(b_specs, "any")
    for spec, message in a_errors + b_errors:
        raise InputError(message)
    if not a_items or not b_items:
        raise InputError("style-mix needs at least one A and one B input")
    default = Path(DEFAULT_OUT) / f"stylemix_{a_items[0].path.stem}_{b_items[0].path.stem}"
    out_dir = out_folder(out, default)
    plan = OutputPlan([i.path for i in a_items + b_items], opts.overwrite)
    plan.folder(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()) and not opts.overwrite:
        raise InputError(f"output folder '{out_dir}' already exists and is not empty (use {opt('overwrite')})")
    for a_item in a_items:  # every file planned before compute: none over an input, none twice
        for b_item in b_items:
            plan.claim(mix_target(out_dir, a_item, b_item), f"{a_item.path} + {b_item.path}")
    plan.claim(out_dir / "grid.png")
    reporter.start("style mixing", len(a_items) * len(b_items))
    a_good, z_a, x_a = load_codes(model, a_items, opts, reporter, need_xT=not random_xT)
    b_good, z_b, x_b = load_codes(model, b_items, opts, reporter, need_xT=False)
    if not a_good or not b_good:
        return reporter.summary("mixes")
    if random_xT:
        x_a = pipeline.random_x_T(range(len(a_good)), model.image_size, opts.seed)
    pairs = [(i, j) for i in range(len(a_good)) for j in range(len(b_good))]
    mixes = []
    for chunk in batched(pairs, opts.batch_size):
        ai = torch.tensor([i for i, _ in chunk])
        bj = torch.tensor([j for _, j in chunk])
        mixes.append(decode_codes(model, z_a[ai], x_a[ai], opts, reporter, z_other=z_b[bj], levels=level_list))
    mixes = torch.cat(mixes)
    a_pixels = shown_inputs(model, a_good, z_a, x_a, opts)
    b_pixels = shown_inputs(model, b_good, z_b, None, opts)  # a latent B is shown from the run's random x_T
    out_dir.mkdir(parents=True, exist_ok=True)
    for (i, j), image in zip(pairs, mixes):
        target = mix_target(out_dir, a_good[i], b_good[j])
        imageio.save_image(image, target, exclusive=plan.exclusive)
        reporter.ok(f"{a_good[i].path} {b_good[j].path}", str(target), levels=format_levels(level_list))
        reporter.advance()
    blank = torch.ones_like(mixes[0])
    cells = [blank, *b_pixels]
    for i in range(len(a_good)):
        cells.append(a_pixels[i])
        cells.extend(mixes[i * len(b_good):(i + 1) * len(b_good)])
    imageio.save_image(imageio.display_grid(torch.stack(cells), len(b_good) + 1), out_dir / "grid.png",
                       exclusive=plan.exclusive)
    return reporter.summary("mixes")

