"""Jobs that make several images from a few codes: interpolation frames and unconditional samples, written as they
are made."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Sequence

import torch

from .. import pipeline
from ..diffusion import respaced_timesteps
from ..editing.attributes import resolve_attribute
from ..errors import DiffeditError, InputError, opt
from ..io import images as imageio
from ..io.files import OutputExists
from ..io.models import DiffAEModel
from ..io.outputs import OutputPlan, out_folder
from ..networks.hierarchy import check_levels
from ..pipeline import sample_latents
from .inputs import DEFAULT_OUT, batched, collect_inputs
from .options import RunOptions
from .report import Reporter
from .runner import decode_codes, load_codes


def interpolate_pair(model: DiffAEModel, a: str, b: str, out: Optional[str], frames: int, opts: RunOptions,
                     reporter: Reporter, gif_ms: int = 120, levels: Optional[Sequence[int]] = None) -> int:
    """Interpolate two images / latent files: lerp z_sem, slerp x_T; frames + grid + GIF.

    ``levels`` (0-based, 0 = finest; :func:`diffedit_cli.networks.hierarchy.parse_levels` reads the ``levels`` text):
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
        raise InputError(f"output folder '{out_dir}' already exists and is not empty (use {opt('overwrite')})")
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


GRID_SAMPLES = 64  # grid.png shows the first samples only: a 100,000-sample run still writes a viewable grid


def sample_images(model: DiffAEModel, n: int, out: Optional[str], opts: RunOptions, reporter: Reporter,
                  where: Sequence[str] = (), latent_steps: int = 100, max_tries: int = 50) -> int:
    """Latent DDIM -> z_sem -> image DDIM; ``where`` keeps samples the classifier labels so (rejection sampling)."""
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
        raise InputError(f"output folder '{out_dir}' already exists and is not empty (use {opt('skip_existing')} to "
                         f"complete an interrupted run, or {opt('overwrite')})")
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
        raise DiffeditError(f"only {len(kept)} of {drawn} latent samples satisfy {opt('where')} {' '.join(where)}; "
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
