"""Style mixing (HDAE paper Fig. 10): A's code with some resolution levels taken from B.

``style_mix(model, A-inputs, B-inputs, levels)`` decodes, for every pair (A_i, B_j), the code of A_i whose
``levels`` come from B_j (:func:`diffedit_cli.pipeline.decode_levels`), with A_i's x_T (DDIM inversion, or
the x_T stored in its latent file) or, with ``random_xT``, x_T drawn from ``seed + i``. Outputs in one folder:

* ``mix_<A>__<B>.png`` per pair;
* ``grid.png``: a StyleGAN-style grid, B inputs along the top row, A inputs down the left column (inputs that
  are latent files are shown by their decode), mix (i, j) in row i, column j.

With a shard (``opts.shard``, or torchrun's environment) a run makes the pairs of its shard only, into the shared
folder, and no grid; ``skip_existing`` keeps the pairs already made, so an unsharded run after the shards (or after
a crash) completes the folder and draws the grid.

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
from ..io.latents import is_latent_path
from .inputs import DEFAULT_OUT, Item, batched, collect_inputs
from .options import RunOptions
from .report import Reporter
from .runner import decode_codes, load_codes
from .shards import in_shard
from ..io.models import DiffAEModel


def mix_target(out_dir: Path, a: Item, b: Item) -> Path:
    return out_dir / f"mix_{a.path.stem}__{b.path.stem}.png"


def style_mix(model: DiffAEModel, a_specs: Sequence[str], b_specs: Sequence[str], levels: Sequence[int],
              out: Optional[str], opts: RunOptions, reporter: Reporter, random_xT: bool = False) -> int:
    """Mix every A with every B at ``levels`` (0-based, 0 = finest). Returns the exit code.

    ``opts.shard``: only the pairs whose output name falls in the shard (:mod:`.shards`), into a shared folder, and
    no grid (it needs every pair). ``opts.skip_existing``: pairs whose output exists are kept and not computed
    again; the grid is then drawn with them (so one unsharded ``skip_existing`` run after the shards writes it)."""
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
    shared = opts.skip_existing or opts.shard is not None  # a folder other runs (shards, an earlier try) fill too
    if out_dir.exists() and any(out_dir.iterdir()) and not opts.overwrite and not shared:
        raise InputError(f"output folder '{out_dir}' already exists and is not empty (use {opt('overwrite')}, "
                         f"or {opt('skip_existing')} to complete it)")
    pairs = [(a, b) for a in a_items for b in b_items
             if in_shard(mix_target(out_dir, a, b).relative_to(out_dir), opts.shard)]
    kept, todo = [], []
    for a_item, b_item in pairs:  # every file planned before compute: none over an input, none twice
        target = mix_target(out_dir, a_item, b_item)
        if opts.skip_existing and target.is_file():
            kept.append((a_item, b_item))
            continue
        plan.claim(target, f"{a_item.path} + {b_item.path}")
        todo.append((a_item, b_item))
    grid_path = out_dir / "grid.png"
    grid = opts.shard is None and not (opts.skip_existing and grid_path.is_file())
    if grid:
        plan.claim(grid_path)
    reporter.start("style mixing", len(pairs))
    for a_item, b_item in kept:
        reporter.skip(f"{a_item.path} {b_item.path}", str(mix_target(out_dir, a_item, b_item)))
        reporter.advance()
    # codes of the inputs a mix to compute needs, and of latent inputs the grid shows by their decode
    used = {id(item) for pair in todo for item in pair}
    a_need = [a for a in a_items if id(a) in used or (grid and is_latent_path(a.path))]
    b_need = [b for b in b_items if id(b) in used or (grid and is_latent_path(b.path))]
    a_good, z_a, x_a = load_codes(model, a_need, opts, reporter, need_xT=not random_xT) if a_need else ([], None, None)
    b_good, z_b, x_b = load_codes(model, b_need, opts, reporter, need_xT=False) if b_need else ([], None, None)
    failed = set(map(id, a_need)) - set(map(id, a_good)) | set(map(id, b_need)) - set(map(id, b_good))
    if random_xT and a_good:
        # x_T drawn from seed + A's position among all A inputs: the same with or without shards
        position = {id(a): k for k, a in enumerate(a_items)}
        x_a = pipeline.random_x_T([position[id(g)] for g in a_good], model.image_size, opts.seed)
    row = {id(a): k for k, a in enumerate(a_good)}
    col = {id(b): k for k, b in enumerate(b_good)}
    todo = [(a, b) for a, b in todo if id(a) in row and id(b) in col]
    out_dir.mkdir(parents=True, exist_ok=True)
    mixes = {}
    for chunk in batched(todo, opts.batch_size):
        ai = torch.tensor([row[id(a)] for a, _ in chunk])
        bj = torch.tensor([col[id(b)] for _, b in chunk])
        decoded = decode_codes(model, z_a[ai], x_a[ai], opts, reporter, z_other=z_b[bj], levels=level_list)
        for (a_item, b_item), image in zip(chunk, decoded):
            target = mix_target(out_dir, a_item, b_item)
            imageio.save_image(image, target, exclusive=plan.exclusive)
            reporter.ok(f"{a_item.path} {b_item.path}", str(target), levels=format_levels(level_list))
            reporter.advance()
            mixes[(id(a_item), id(b_item))] = image
    if grid:
        write_grid(model, a_items, b_items, failed, mixes, out_dir, opts, (a_good, z_a, x_a), (b_good, z_b), plan)
    return reporter.summary("mixes")


def write_grid(model: DiffAEModel, a_items, b_items, failed, mixes, out_dir: Path, opts: RunOptions, a_codes,
               b_codes, plan: OutputPlan) -> None:
    """grid.png: B inputs along the top, A inputs down the left, mix (i, j) in row i, column j; mixes not computed
    in this run are read from their files. Inputs that could not be read are left out."""
    a_rows = [a for a in a_items if id(a) not in failed]
    b_cols = [b for b in b_items if id(b) not in failed]
    if not a_rows or not b_cols:
        return

    def pixels(items, good, z, x_T):
        """Image inputs as they are; latent inputs by their decode (codes loaded above)."""
        index = {id(g): k for k, g in enumerate(good)}
        out = []
        for position, item in enumerate(items):
            if is_latent_path(item.path):
                k = index[id(item)]
                x = x_T[k:k + 1] if x_T is not None else pipeline.random_x_T([position], model.image_size, opts.seed)
                out.append(decode_codes(model, z[k:k + 1], x, opts)[0])
            else:
                out.append(imageio.load_image(item.path, model.image_size))
        return out

    a_pixels = pixels(a_rows, *a_codes)
    b_pixels = pixels(b_cols, *b_codes, None)  # a latent B is shown from the run's random x_T
    cells = [torch.ones_like(a_pixels[0]), *b_pixels]
    for a_item, a_pixel in zip(a_rows, a_pixels):
        cells.append(a_pixel)
        for b_item in b_cols:
            mix = mixes.get((id(a_item), id(b_item)))
            cells.append(mix if mix is not None else imageio.load_image(mix_target(out_dir, a_item, b_item),
                                                                         model.image_size))
    imageio.save_image(imageio.display_grid(torch.stack(cells), len(b_cols) + 1), out_dir / "grid.png",
                       exclusive=plan.exclusive)
