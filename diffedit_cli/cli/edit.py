"""Commands that change faces: edit, style-mix, swap, recombine."""

from __future__ import annotations

from typing import Dict, List, Optional

import typer
from typing_extensions import Annotated

from ..errors import DiffeditError, InputError
from ..sampling import DEFAULT
from .options import (ManifestOpt, ScaleOut, ShardOpt, NoCacheOpt, AlignOpt, AlignedOpt, BatchOpt, DetectorOpt, DeviceOpt, FaceOpt, FaceWeightsOpt, InvStepsOpt, InvSamplerOpt, JsonOpt, LevelsOpt, ModelOpt, OutOpt, OverwriteOpt, PrecisionOpt, QuietOpt, RelativeToOpt, SamplerOpt, SeedOpt, SkipOpt, SpacingOpt, StepsOpt, check_alpha_value, complete_attr, complete_slice, face_options, levels_of, parse_sweep, ready_model, reporter_for, run_options)


def edit_cmd(
    inputs: Annotated[Optional[List[str]], typer.Argument(help="Images or latent files, folders, globs, '-'.", show_default=False)] = None,
    attr: Annotated[Optional[List[str]], typer.Option("--attr", "-a", autocompletion=complete_attr, help="Attribute to move along: NAME (uses --alpha) or NAME=ALPHA; repeatable. Case-insensitive; No_X negates X.", show_default=False)] = None,
    alpha: Annotated[float, typer.Option("--alpha", callback=check_alpha_value, help="Edit strength in normalised-z units times sqrt(D) (official demo: 0.3; at most 10 in size).")] = 0.3,
    topk: Annotated[Optional[int], typer.Option("--topk", min=1, help="HDAE truncation: keep the K largest coordinates of the direction.", show_default=False)] = None,
    alpha_sweep: Annotated[Optional[str], typer.Option("--alpha-sweep", help="START:STOP:COUNT, e.g. -0.5:0.5:5: one row of decodes per input.", show_default=False)] = None,
    compare: Annotated[bool, typer.Option("--compare", help="Put the input on the left of the output, columns labelled; tiles of models under 256 px are enlarged (nearest-neighbour) to 256 px. With --paste-back: original photo | edited photo.")] = False,
    list_attrs: Annotated[bool, typer.Option("--list-attrs", help="List the model's attributes and exit.")] = False,
    out: OutOpt = None, model: ModelOpt = None, steps: StepsOpt = DEFAULT.steps, sampler: SamplerOpt = DEFAULT.sampler, spacing: SpacingOpt = DEFAULT.spacing, inv_steps: InvStepsOpt = DEFAULT.inv_steps, inv_sampler: InvSamplerOpt = DEFAULT.inv_sampler,
    batch_size: BatchOpt = 8, device: DeviceOpt = "auto", precision: PrecisionOpt = None,
    skip_existing: SkipOpt = False, overwrite: OverwriteOpt = False, no_cache: NoCacheOpt = False, shard: ShardOpt = None, manifest: ManifestOpt = None, json_lines: JsonOpt = False, quiet: QuietOpt = False,
    levels: LevelsOpt = None,
    align: AlignOpt = False, aligned: AlignedOpt = False, face: FaceOpt = "all", detector: DetectorOpt = "auto",
    face_weights: FaceWeightsOpt = None,
    paste_back: Annotated[bool, typer.Option("--paste-back", help="With --align: blend the edited faces back into the photo and write the whole photo (pixels outside the face masks unchanged).")] = False,
    direction: Annotated[Optional[List[str]], typer.Option("--direction", "-d", help="Move along a direction-file direction: FILE:NAME (uses --alpha) or FILE:NAME=ALPHA; repeatable; mixes with --attr ('diffedit directions').", show_default=False)] = None,
    relative_to: RelativeToOpt = None,
    orthogonal_to: Annotated[Optional[List[str]], typer.Option("--orthogonal-to", help="Remove from every edit direction its components along these (attributes or FILE:NAME; comma lists, repeatable), e.g. Male,Eyeglasses.", show_default=False)] = None,
):
    """Edit attributes by moving z_sem along linear-classifier directions (x_T from DDIM inversion).

    HDAE models: directions span all levels, --topk ranks the whole code, --levels restricts the edit to
    some levels (direction zeroed elsewhere and renormalised).

    Examples:

      diffedit edit face.png --attr Smiling --alpha 0.3

      diffedit edit faces/ --attr Smiling=0.3 --attr No_Beard=0.2 --topk 64 --out edited/

      diffedit edit face.png --attr Male --alpha-sweep -0.5:0.5:5 --compare

      diffedit edit face.png --attr Smiling --levels 1-2 --topk 32 --model runs/hdae-u

      diffedit edit photo.jpg --align --paste-back --attr Smiling   (real photo: detect, align, edit, blend back)

      diffedit edit face.png --direction dirs.safetensors:Smile=0.4 --orthogonal-to Male,Eyeglasses
    """
    from ..editing.plan import plan_edit
    from ..jobs.filejobs import edit_files

    scale = ScaleOut(shard, manifest, device)
    device = scale.device
    faces = face_options(align, aligned, face, detector, face_weights, device)
    if paste_back and faces is None:
        raise DiffeditError("--paste-back needs --align (it blends edited faces back into the photos they came from)")
    alphas = parse_sweep(alpha_sweep) if alpha_sweep else None
    loaded = ready_model(model, device, components=("classifier",))
    if list_attrs:
        for name in loaded.component("classifier").attributes:
            typer.echo(name)
        raise typer.Exit(0)
    if not inputs:
        raise DiffeditError("no inputs given (see 'diffedit edit --help')")
    attr, direction, orthogonal_to = attr or [], direction or [], orthogonal_to or []
    if not attr and not direction:
        raise DiffeditError("give at least one --attr NAME or NAME=ALPHA (see --list-attrs) or --direction FILE:NAME")
    if alphas is not None and len(attr) + len(direction) != 1:
        raise DiffeditError("--alpha-sweep takes exactly one --attr or --direction")
    run_opts = run_options(device, precision, batch_size, 0, steps, inv_steps, skip_existing, overwrite, sampler,
                           inv_sampler=inv_sampler, spacing=spacing, relative_to=relative_to, cache=not no_cache, shard=scale.shard)
    plan = plan_edit(loaded, attr, alpha, topk, alphas, levels_of(levels, loaded), direction, orthogonal_to)
    with reporter_for(json_lines, quiet) as rep:
        scale.attach(rep, skip_existing, overwrite, loaded)
        if faces is not None:
            from ..jobs.photos import edit_photos

            code = edit_photos(loaded, inputs, out, plan, run_opts, faces, rep, compare, paste_back)
        else:
            code = edit_files(loaded, inputs, out, plan, run_opts, rep, compare)
    raise typer.Exit(code)


# -- HDAE: style mixing ------------------------------------------------------------------------
def style_mix_cmd(
    a: Annotated[str, typer.Argument(help="A: image or latent file, folder or glob (codes kept).", show_default=False)],
    b: Annotated[str, typer.Argument(help="B: image or latent file, folder or glob (levels taken from it).", show_default=False)],
    levels: Annotated[str, typer.Option("--levels", help="Levels taken from B, 1 = finest ... L = coarsest: e.g. 3-4, 1,3.", show_default=False)],
    random_xt: Annotated[bool, typer.Option("--random-xt", help="Draw x_T from --seed instead of inverting A.")] = False,
    out: Annotated[Optional[str], typer.Option("--out", "-o", help="Output folder (default: diffedit-out/stylemix_A_B).", show_default=False)] = None,
    model: ModelOpt = None, steps: StepsOpt = DEFAULT.steps, sampler: SamplerOpt = DEFAULT.sampler, spacing: SpacingOpt = DEFAULT.spacing, inv_steps: InvStepsOpt = DEFAULT.inv_steps, inv_sampler: InvSamplerOpt = DEFAULT.inv_sampler, seed: SeedOpt = 0,
    batch_size: BatchOpt = 8, device: DeviceOpt = "auto", precision: PrecisionOpt = None,
    skip_existing: SkipOpt = False, overwrite: OverwriteOpt = False, no_cache: NoCacheOpt = False,
    shard: ShardOpt = None, manifest: ManifestOpt = None, json_lines: JsonOpt = False, quiet: QuietOpt = False,
):
    """Style mixing: A's semantic code with the chosen resolution levels taken from B.

    x_T is A's (DDIM inversion, or stored in A's latent file) unless --random-xt. With several A and B
    (folders, globs) every pair is mixed and grid.png is a StyleGAN-style grid (B across the top, A down the
    left). On plain Diff-AE models the UNet blocks of the chosen levels get B's code (our extension).

    Examples:

      diffedit style-mix a.png b.png --levels 3-4 --model runs/hdae-u

      diffedit style-mix rows/ cols/ --levels 1-2 --random-xt --seed 3 --out mix/

    Large grids: run shards (--shard 0/4 ... 3/4, or under torchrun) into one --out; they write no grid.png,
    and one run with --skip-existing afterwards keeps their mixes and draws it.
    """
    from ..jobs.stylemix import style_mix

    scale = ScaleOut(shard, manifest, device)
    loaded = ready_model(model, scale.device, components=())
    run_opts = run_options(scale.device, precision, batch_size, seed, steps, inv_steps, skip_existing, overwrite, sampler,
                           inv_sampler=inv_sampler, spacing=spacing, cache=not no_cache, shard=scale.shard)
    with reporter_for(json_lines, quiet) as rep:
        scale.attach(rep, skip_existing, overwrite, loaded)
        code = style_mix(loaded, [a], [b], levels_of(levels, loaded), out, run_opts, rep, random_xT=random_xt)
    raise typer.Exit(code)


def swap_cmd(
    a: Annotated[str, typer.Argument(help="Image(s) A to change: image or latent file, folder, glob.", show_default=False)],
    b: Annotated[str, typer.Argument(help="Image or latent file B that gives the slice(s).", show_default=False)],
    attr: Annotated[Optional[List[str]], typer.Option("--attr", "-a", autocompletion=complete_slice, help="GAE slice to take from B (e.g. hair, mouth, background); repeatable.", show_default=False)] = None,
    compare: Annotated[bool, typer.Option("--compare", help="Write A | B | result side by side.")] = False,
    residual: Annotated[bool, typer.Option("--residual", help="Add back A's GAE reconstruction error (keeps more of A).")] = False,
    out: OutOpt = None, model: ModelOpt = None, steps: StepsOpt = DEFAULT.steps, sampler: SamplerOpt = DEFAULT.sampler, spacing: SpacingOpt = DEFAULT.spacing, inv_steps: InvStepsOpt = DEFAULT.inv_steps, inv_sampler: InvSamplerOpt = DEFAULT.inv_sampler,
    batch_size: BatchOpt = 8, device: DeviceOpt = "auto", precision: PrecisionOpt = None,
    skip_existing: SkipOpt = False, overwrite: OverwriteOpt = False, no_cache: NoCacheOpt = False, shard: ShardOpt = None, manifest: ManifestOpt = None, json_lines: JsonOpt = False, quiet: QuietOpt = False,
    relative_to: RelativeToOpt = None,
):
    """Give A the attribute slice(s) of B with the model's group-supervised autoencoder (GAE).

    z_sem of A and B go through the GAE; A's slice (hair, mouth, ...) is replaced by B's and the result is
    decoded with A's x_T (DDIM inversion, or the x_T of A's latent file). A may be a folder: every image gets
    B's slice.

    Examples:

      diffedit swap a.png b.png --attr hair --compare --out a_with_b_hair.png

      diffedit swap faces/ b.png --attr mouth --attr eyes --out swapped/
    """
    from ..jobs.swapping import swap_files

    scale = ScaleOut(shard, manifest, device)
    loaded = ready_model(model, scale.device, components=("gae",))
    run_opts = run_options(scale.device, precision, batch_size, 0, steps, inv_steps, skip_existing, overwrite, sampler,
                           inv_sampler=inv_sampler, spacing=spacing, relative_to=relative_to, cache=not no_cache, shard=scale.shard)
    with reporter_for(json_lines, quiet) as rep:
        scale.attach(rep, skip_existing, overwrite, loaded)
        code = swap_files(loaded, [a], b, attr or [], out, run_opts, rep, compare=compare, residual=residual)
    raise typer.Exit(code)


def recombine_cmd(
    ctx: typer.Context,
    base: Annotated[Optional[str], typer.Option("--base", help="Image or latent file giving every slice not named otherwise (and x_T); required unless --list-slices.", show_default=False)] = None,
    random_xt: Annotated[bool, typer.Option("--random-xt", help="Decode with random x_T from --seed instead of the base's inverted x_T.")] = False,
    compare: Annotated[bool, typer.Option("--compare", help="Write base | part images | result side by side.")] = False,
    residual: Annotated[bool, typer.Option("--residual", help="Add back the base's GAE reconstruction error.")] = False,
    list_slices: Annotated[bool, typer.Option("--list-slices", help="List the GAE's slice names and exit.")] = False,
    out: Annotated[Optional[str], typer.Option("--out", "-o", help="Output image (default: diffedit-out/recombine_BASE.png).", show_default=False)] = None,
    model: ModelOpt = None, steps: StepsOpt = DEFAULT.steps, sampler: SamplerOpt = DEFAULT.sampler, spacing: SpacingOpt = DEFAULT.spacing, inv_steps: InvStepsOpt = DEFAULT.inv_steps, inv_sampler: InvSamplerOpt = DEFAULT.inv_sampler, seed: SeedOpt = 0,
    device: DeviceOpt = "auto", precision: PrecisionOpt = None, overwrite: OverwriteOpt = False, no_cache: NoCacheOpt = False,
    json_lines: JsonOpt = False, quiet: QuietOpt = False,
):
    """Recombine attribute slices of several faces: --base a.png --hair b.png --background c.png ...

    Every further option --SLICE FILE (a GAE slice name: identity, hair, mouth, eyes, accessories, background,
    pose for the toy-faces model; see --list-slices) takes that slice from FILE (image or latent file).

    Examples:

      diffedit recombine --base a.png --hair b.png --background c.png --compare --out mix.png

      diffedit recombine --base a.safetensors --mouth b.png --random-xt --seed 3
    """
    from ..jobs.swapping import recombine_files

    loaded = ready_model(model, device, components=("gae",))
    if list_slices:
        from ..editing.swapping import model_gae

        for name in model_gae(loaded).slice_names:
            typer.echo(name)
        raise typer.Exit(0)
    if base is None:
        raise DiffeditError("give --base IMAGE (the face every slice not named otherwise comes from; see 'diffedit recombine --help')")
    parts = parse_part_args(ctx.args)
    with reporter_for(json_lines, quiet) as rep:
        code = recombine_files(loaded, base, parts, out,
                               run_options(device, precision, 1, seed, steps, inv_steps, overwrite=overwrite, sampler=sampler, inv_sampler=inv_sampler, spacing=spacing, cache=not no_cache), rep,
                               random_xT=random_xt, compare=compare, residual=residual)
    raise typer.Exit(code)


def parse_part_args(args: List[str]) -> Dict[str, str]:
    """``["--hair", "b.png", "--background=c.png"]`` -> {"hair": "b.png", "background": "c.png"}."""
    parts: Dict[str, str] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--") or len(arg) < 3:
            raise InputError(f"unexpected argument '{arg}': give parts as --SLICE IMAGE (e.g. --hair b.png)")
        name, eq, value = arg[2:].partition("=")
        if not eq:
            if i + 1 >= len(args) or args[i + 1].startswith("--"):
                raise InputError(f"--{name} needs an image or latent file")
            value = args[i + 1]
            i += 1
        if name in parts:
            raise InputError(f"--{name} is given twice")
        parts[name] = value
        i += 1
    return parts
