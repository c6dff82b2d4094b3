"""The ``diffedit`` command line: each command parses, calls one library function, prints."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import List, Optional

import typer
from typing_extensions import Annotated

from . import __version__
from .errors import DiffeditError

app = typer.Typer(
    name="diffedit",
    help=(
        "Real-image editing with diffusion autoencoders (Diff-AE).\n\n"
        "Inputs may be image files, latent files (.safetensors from 'encode'), folders (searched "
        "recursively), glob patterns, or '-' to read paths from stdin. Outputs never overwrite inputs; "
        "every file is written atomically.\n\n"
        "Examples:\n\n"
        "  diffedit encode photos/ --out latents/\n\n"
        "  diffedit decode latents/ --out recon/ --steps 100\n\n"
        "  diffedit interpolate a.png b.png --frames 10\n\n"
        "  diffedit convert last.ckpt --out models/ffhq256"
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)

# -- shared options --------------------------------------------------------
ModelOpt = Annotated[Optional[str], typer.Option(
    "--model", "-m", help="Local model folder, name of a shipped model, or Hub id 'org/name[@revision]'. "
    "Default: the shipped 'toyfaces' model.", show_default=False)]
OutOpt = Annotated[Optional[str], typer.Option("--out", "-o", help="Output folder (default: diffedit-out/) or, for one input, a file name.", show_default=False)]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto, cpu or cuda[:N].")]
PrecisionOpt = Annotated[Optional[str], typer.Option("--precision", help="fp32, fp16 or bf16 (default: fp16 on CUDA, fp32 on CPU).", show_default=False)]
BatchOpt = Annotated[int, typer.Option("--batch-size", "-b", min=1, help="Images per batch.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed for random x_T; image i uses seed + i, so batching never changes results.")]
StepsOpt = Annotated[int, typer.Option("--steps", min=1, max=1000, help="DDIM decoding steps (official editing notebook: 100).")]
InvStepsOpt = Annotated[int, typer.Option("--inv-steps", min=1, max=1000, help="DDIM inversion steps for x_T (official: 250).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON line per output on stdout.")]
SkipOpt = Annotated[bool, typer.Option("--skip-existing", help="Skip inputs whose output exists (resume an interrupted run).")]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace existing outputs (never inputs).")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]


def _opts(device, precision, batch_size, seed, steps=100, inv_steps=250, skip_existing=False, overwrite=False):
    from .jobs import RunOptions

    return RunOptions(device=device, precision=precision, batch_size=batch_size, seed=seed, steps=steps,
                      inv_steps=inv_steps, skip_existing=skip_existing, overwrite=overwrite)


def _load(model: Optional[str], device: str, components=("latent", "classifier")):
    from .models import load_model
    from .pipeline import pick_device, prepare

    dev = pick_device(device)
    loaded = load_model(model, device="cpu", components=components)
    prepare(loaded.autoencoder, dev)
    for module in [loaded.latent, loaded.classifier, *loaded.extra.values()]:
        if module is not None:
            module.to(dev)
    return loaded


def _reporter(json_lines: bool, quiet: bool):
    from .jobs import Reporter

    return Reporter(json_lines=json_lines, quiet=quiet or not sys.stderr.isatty() and os.environ.get("DIFFEDIT_PROGRESS") != "1")


@app.command()
def encode(
    inputs: Annotated[List[str], typer.Argument(help="Images, folders, globs or '-' (paths on stdin).", show_default=False)],
    out: OutOpt = None, model: ModelOpt = None, inv_steps: InvStepsOpt = 250, batch_size: BatchOpt = 8,
    device: DeviceOpt = "auto", precision: PrecisionOpt = None, skip_existing: SkipOpt = False,
    overwrite: OverwriteOpt = False, json_lines: JsonOpt = False, quiet: QuietOpt = False,
):
    """Encode images to latent files: z_sem (semantic code) + x_T (DDIM inversion).

    Writes one <name>.safetensors per image, recording the model, inversion
    steps, image size, source path and preprocessing (resize shorter side, centre crop).

    Example: diffedit encode photos/ --out latents/ --inv-steps 250
    """
    from .jobs import encode_files

    loaded = _load(model, device, components=())
    with _reporter(json_lines, quiet) as rep:
        code = encode_files(loaded, inputs, out, _opts(device, precision, batch_size, 0, inv_steps=inv_steps,
                                                        skip_existing=skip_existing, overwrite=overwrite), rep)
    raise typer.Exit(code)


@app.command()
def decode(
    inputs: Annotated[List[str], typer.Argument(help="Latent files or images (encoded on the fly), folders, globs, '-'.", show_default=False)],
    out: OutOpt = None, model: ModelOpt = None, steps: StepsOpt = 100, inv_steps: InvStepsOpt = 250,
    random_xt: Annotated[bool, typer.Option("--random-xt", help="Ignore the stored x_T and draw it from --seed.")] = False,
    seed: SeedOpt = 0, batch_size: BatchOpt = 8, device: DeviceOpt = "auto", precision: PrecisionOpt = None,
    skip_existing: SkipOpt = False, overwrite: OverwriteOpt = False, json_lines: JsonOpt = False, quiet: QuietOpt = False,
):
    """Decode (z_sem, x_T) to images with deterministic DDIM.

    Given images instead of latent files, this reconstructs them (encode + decode).

    Example: diffedit decode latents/ --out recon/ --steps 100
    """
    from .jobs import decode_files

    loaded = _load(model, device, components=())
    with _reporter(json_lines, quiet) as rep:
        code = decode_files(loaded, inputs, out, _opts(device, precision, batch_size, seed, steps, inv_steps,
                                                        skip_existing, overwrite), rep, random_xT=random_xt)
    raise typer.Exit(code)


@app.command()
def interpolate(
    a: Annotated[str, typer.Argument(help="First image or latent file.", show_default=False)],
    b: Annotated[str, typer.Argument(help="Second image or latent file.", show_default=False)],
    frames: Annotated[int, typer.Option("--frames", "-n", min=2, help="Number of frames including A and B.")] = 10,
    out: Annotated[Optional[str], typer.Option("--out", "-o", help="Output folder (default: diffedit-out/interp_A_B).", show_default=False)] = None,
    model: ModelOpt = None, steps: StepsOpt = 100, inv_steps: InvStepsOpt = 250, batch_size: BatchOpt = 8,
    device: DeviceOpt = "auto", precision: PrecisionOpt = None, overwrite: OverwriteOpt = False,
    json_lines: JsonOpt = False, quiet: QuietOpt = False,
):
    """Interpolate between two faces: lerp z_sem, slerp x_T.

    Writes frame_000.png ..., grid.png (all frames in a row) and interpolation.gif.

    Example: diffedit interpolate a.png b.png --frames 10 --out interp/
    """
    from .jobs import interpolate_pair

    loaded = _load(model, device, components=())
    with _reporter(json_lines, quiet) as rep:
        code = interpolate_pair(loaded, a, b, out, frames, _opts(device, precision, batch_size, 0, steps, inv_steps,
                                                                  overwrite=overwrite), rep)
    raise typer.Exit(code)


@app.command()
def convert(
    checkpoints: Annotated[List[Path], typer.Argument(help="Official Diff-AE Lightning checkpoints (last.ckpt): autoencoder, latent and/or classifier.", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Model folder to create (or add components to).", show_default=False)],
    weights: Annotated[str, typer.Option("--weights", help="ema (what the official code samples with) or raw.")] = "ema",
    preset: Annotated[Optional[str], typer.Option("--preset", help="ffhq256, ffhq128, bedroom128, horse128 or celeba64 (default: infer from key shapes).", show_default=False)] = None,
    image_size: Annotated[Optional[int], typer.Option("--image-size", help="Override the image size (default: from the x_T buffer).", show_default=False)] = None,
    name: Annotated[Optional[str], typer.Option("--name", help="Model name stored in model_index.json.", show_default=False)] = None,
    trust_pickle: Annotated[bool, typer.Option("--trust-pickle", help="Allow the checkpoint to execute arbitrary pickled code. Only for files you trust.")] = False,
    overwrite: OverwriteOpt = False,
):
    """Convert official Diff-AE checkpoints to a diffedit model folder (config.json + model.safetensors per component).

    Nothing in the checkpoint is executed unless --trust-pickle is given; Lightning's
    callbacks / optimizer state are skipped safely.

    Example: diffedit convert ffhq256_autoenc/last.ckpt ffhq256_autoenc_latent/last.ckpt ffhq256_autoenc_cls/last.ckpt --out models/ffhq256
    """
    from rich.console import Console

    from .convert import convert_checkpoints

    console = Console(stderr=True, highlight=False, soft_wrap=True)
    written = convert_checkpoints(checkpoints, out, weights=weights, preset=preset, image_size=image_size,
                                  trust_pickle=trust_pickle, name=name, overwrite=overwrite, log=console.print)
    for comp, source in written.items():
        typer.echo(f"{comp}: {source} -> {out / comp}")


@app.command("models")
def list_models():
    """List the models shipped with diffedit (usable offline by name with --model)."""
    from .models import shipped_models

    shipped = shipped_models()
    if not shipped:
        typer.echo("no shipped models installed")
    for name, path in shipped.items():
        typer.echo(f"{name}\t{path}")


def _version_callback(value: bool):
    if value:
        typer.echo(f"diffedit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: Annotated[bool, typer.Option("--version", callback=_version_callback, is_eager=True, help="Show the version and exit.")] = False):
    """Real-image editing with diffusion autoencoders."""


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point: user errors are one line on stderr and a non-zero exit, never a traceback."""
    try:  # recent Typer vendors click as typer._click
        from typer._click import exceptions as click_exc
    except ImportError:  # pragma: no cover - older Typer
        from click import exceptions as click_exc

    command = typer.main.get_command(app)
    try:
        result = command.main(args=argv, prog_name="diffedit", standalone_mode=False)
        return int(result or 0)
    except click_exc.NoArgsIsHelpError as exc:  # bare 'diffedit CMD': show its help
        sys.stderr.write(exc.ctx.get_help() + "\n" if exc.ctx is not None else "")
        return 2
    except typer.Exit as exc:
        return exc.exit_code
    except click_exc.UsageError as exc:
        hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
        sys.stderr.write(f"error: {' '.join(exc.format_message().split())}{hint}\n")
        return 2
    except typer.Abort:
        sys.stderr.write("error: aborted\n")
        return 130
    except DiffeditError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("error: interrupted\n")
        return 130
    except Exception as exc:  # a bug, not bad input: still one line unless asked for the traceback
        if os.environ.get("DIFFEDIT_DEBUG"):
            raise
        sys.stderr.write(f"error: internal error: {type(exc).__name__}: {' '.join(str(exc).split())[:300]} "
                         "(set DIFFEDIT_DEBUG=1 for a traceback)\n")
        return 1


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    run()
