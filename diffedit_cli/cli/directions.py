"""``diffedit directions``: find, inspect and name edit directions."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from typing_extensions import Annotated

from ..errors import DiffeditError
from ..sampling import DEFAULT
from .options import (NoCacheOpt, BatchOpt, DeviceOpt, InvStepsOpt, InvSamplerOpt, ModelOpt, OverwriteOpt, PrecisionOpt, QuietOpt, SamplerOpt, SpacingOpt, StepsOpt, check_alpha_value, ready_model, reporter_for, run_options)


DirOutOpt = Annotated[Path, typer.Option("--out", "-o", help="Direction file to write (.safetensors).", show_default=False)]


def direction_out(out: Path) -> Path:
    if out.suffix.lower() != ".safetensors":
        raise DiffeditError(f"--out '{out}': a direction file name must end in .safetensors")
    return out


def directions_pca_cmd(
    inputs: Annotated[List[str], typer.Argument(help="Images or latent files, folders, globs, '-' (hundreds or more).", show_default=False)],
    out: DirOutOpt, model: ModelOpt = None,
    components: Annotated[int, typer.Option("--components", "-k", min=1, help="Number of principal directions.")] = 20,
    batch_size: BatchOpt = 32, device: DeviceOpt = "auto", precision: PrecisionOpt = None,
    overwrite: OverwriteOpt = False, quiet: QuietOpt = False,
):
    """Unsupervised directions: the principal components of the inputs' normalised z_sem (GANSpace-style).

    Names are pc01, pc02, ... by explained variance; look at them with 'directions show', name them with
    'directions rename'.

    Example: diffedit directions pca faces/ --components 20 --out dirs.safetensors
    """
    from ..jobs.directions import pca_file

    loaded = ready_model(model, device, components=("latent", "classifier"))
    with reporter_for(False, quiet) as rep:
        found = pca_file(loaded, inputs, direction_out(out), components, run_options(device, precision, batch_size, 0,
                                                                                 overwrite=overwrite), rep)
    shares = ", ".join(f"{n} {float(v):.1%}" for n, v in zip(found.names[:5], found.explained[:5]))
    typer.echo(f"{len(found.names)} directions from {found.provenance['codes']} codes -> {out} (variance: {shares}, ...)")
    raise typer.Exit(1 if rep.failures else 0)


def directions_from_examples_cmd(
    positive: Annotated[List[str], typer.Option("--positive", "-p", help="Examples WITH the attribute (folders, files, globs; repeatable).", show_default=False)],
    negative: Annotated[List[str], typer.Option("--negative", "-n", help="Examples WITHOUT it.", show_default=False)],
    name: Annotated[str, typer.Option("--name", help="Name of the direction, e.g. Smile.", show_default=False)],
    out: DirOutOpt, model: ModelOpt = None,
    method: Annotated[str, typer.Option("--method", help="auto (logistic regression from 20 examples per side, else the difference of means), mean-difference or logistic.")] = "auto",
    batch_size: BatchOpt = 32, device: DeviceOpt = "auto", precision: PrecisionOpt = None,
    overwrite: OverwriteOpt = False, quiet: QuietOpt = False,
):
    """A direction from a few examples per side (warns below 5 per side).

    Example: diffedit directions from-examples --positive smiling/ --negative neutral/ --name Smile --out smile.safetensors
    """
    from ..jobs.directions import examples_file

    if method not in ("auto", "mean-difference", "logistic"):
        raise DiffeditError(f"--method '{method}': choose auto, mean-difference or logistic")
    loaded = ready_model(model, device, components=("latent", "classifier"))
    with reporter_for(False, quiet) as rep:
        found, used = examples_file(loaded, positive, negative, name, direction_out(out), method,
                                    run_options(device, precision, batch_size, 0, overwrite=overwrite), rep)
    typer.echo(f"{name}: {used} of {found.provenance['positives']} positive and {found.provenance['negatives']} "
               f"negative examples -> {out}")
    raise typer.Exit(1 if rep.failures else 0)


def directions_show_cmd(
    file: Annotated[Path, typer.Argument(help="Direction file.", show_default=False)],
    inputs: Annotated[List[str], typer.Option("--inputs", "-i", help="Faces to edit (images or latent files, folders).", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Grid image to write (.png).", show_default=False)],
    names: Annotated[Optional[List[str]], typer.Option("--name", help="Only these directions (repeatable).", show_default=False)] = None,
    alpha: Annotated[float, typer.Option("--alpha", callback=check_alpha_value, help="Sweep from -alpha to +alpha.")] = 0.5,
    columns: Annotated[int, typer.Option("--columns", min=2, max=64, help="Strengths per face.")] = 5,
    faces: Annotated[int, typer.Option("--faces", min=1, max=64, help="Faces per row.")] = 2,
    model: ModelOpt = None, steps: StepsOpt = 50, sampler: SamplerOpt = DEFAULT.sampler, spacing: SpacingOpt = DEFAULT.spacing, inv_steps: InvStepsOpt = 50, inv_sampler: InvSamplerOpt = DEFAULT.inv_sampler,
    batch_size: BatchOpt = 8, device: DeviceOpt = "auto", precision: PrecisionOpt = None,
    overwrite: OverwriteOpt = False, no_cache: NoCacheOpt = False, quiet: QuietOpt = False,
):
    """The overview to name directions by: one row per direction, a -alpha..+alpha sweep on a few faces.

    Example: diffedit directions show dirs.safetensors --inputs faces/ --out overview.png
    """
    from ..jobs.directions import show_grid

    loaded = ready_model(model, device, components=())
    with reporter_for(False, quiet) as rep:
        show_grid(loaded, file, inputs, out, alpha, columns, faces,
                  run_options(device, precision, batch_size, 0, steps, inv_steps, overwrite=overwrite, sampler=sampler, inv_sampler=inv_sampler, spacing=spacing, cache=not no_cache), rep, names)
    typer.echo(f"overview -> {out}")


def directions_rename_cmd(
    file: Annotated[Path, typer.Argument(help="Direction file (changed in place).", show_default=False)],
    renames: Annotated[List[str], typer.Argument(help="OLD=NEW pairs, e.g. pc01=Gender pc04=Smile.", show_default=False)],
):
    """Name directions after looking at 'directions show'.

    Example: diffedit directions rename dirs.safetensors pc01=Gender pc04=Smile
    """
    from ..jobs.directions import rename_file

    found = rename_file(file, renames)
    typer.echo(f"{file}: {', '.join(found.names)}")
