"""The ``diffedit`` command line: each command parses, calls one library function, prints."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import warnings
from pathlib import Path
from typing import List, Optional

import typer
from typing_extensions import Annotated

from . import __version__, defaults
from .errors import DiffeditError, flag_message

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
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)

# -- shell completion of values (--model, --attr, GAE slices): read the model's JSON files, nothing heavier ----

def _complete_model(incomplete: str) -> List[str]:
    from .io.models import shipped_models
    from .io.registry import KNOWN

    return [name for name in [*shipped_models(), *KNOWN] if name.startswith(incomplete)]


def _completion_config(ctx: typer.Context, component: str) -> dict:
    """The ``component``'s config of the model named on the command line so far (shipped, folder or cached)."""
    from .io.catalog import converted_folders
    from .io.models import DEFAULT_MODEL, INDEX_FILE, shipped_models
    from .io.registry import KNOWN

    spec = (ctx.params or {}).get("model") or DEFAULT_MODEL
    shipped = shipped_models()
    if spec in shipped:
        folder = shipped[spec]
    elif Path(spec).expanduser().is_dir() and (Path(spec).expanduser() / INDEX_FILE).is_file():
        folder = Path(spec).expanduser()
    else:
        cached = converted_folders(KNOWN[spec].repo if spec in KNOWN else spec.split("@")[0].split(":")[0])
        if not cached:
            return {}
        folder = cached[0]
    try:
        return json.loads((folder / component / "config.json").read_text()).get("config", {})
    except (OSError, ValueError):
        return {}


def _complete_attr(ctx: typer.Context, incomplete: str) -> List[str]:
    names = _completion_config(ctx, "classifier").get("attributes", [])
    names = names + [f"No_{n}" for n in names if not n.startswith("No_")]
    return [n for n in names if n.lower().startswith(incomplete.lower())]


def _complete_slice(ctx: typer.Context, incomplete: str) -> List[str]:
    slices = [str(s[0]) for s in _completion_config(ctx, "gae").get("slices", [])]
    return [n for n in slices if n.lower().startswith(incomplete.lower())]


# -- shared options --------------------------------------------------------
ModelOpt = Annotated[Optional[str], typer.Option(
    "--model", "-m", autocompletion=_complete_model, help="A shipped model (toyfaces: 64 px cartoon faces), a known pretrained one (ffhq256: the "
    "official FFHQ-256 Diff-AE, downloaded and converted on first use; 'diffedit models'), a Hub id "
    "'org/name[@revision]' or a local folder, holding a diffedit model or official Diff-AE weights (Lightning "
    "checkpoints or state dicts; ':NAME' picks one of several models, e.g. org/name:ffhq256). "
    "Default: the shipped 'toyfaces' model.", show_default=False)]
OutOpt = Annotated[Optional[str], typer.Option("--out", "-o", help="Output folder (default: diffedit-out/) or, for one input, a file name.", show_default=False)]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto, cpu or cuda[:N].")]
def _precision_choice(value: Optional[str]) -> Optional[str]:
    if value is not None and value not in defaults.PRECISIONS:
        raise typer.BadParameter(f"'{value}': choose {', '.join(defaults.PRECISIONS)}")
    return value


PrecisionOpt = Annotated[Optional[str], typer.Option("--precision", callback=_precision_choice, help="fp32, fp16 or bf16 (default: fp16 on CUDA; on a CPU bf16 where it is native (AVX512-BF16 / AMX), else fp32; $DIFFEDIT_CPU_PRECISION overrides). fp32 reproduces the official numbers.", show_default=False)]
MAX_BATCH = 4096  # larger asks only for memory: batches never change results
BatchOpt = Annotated[int, typer.Option("--batch-size", "-b", min=1, max=MAX_BATCH, help="Images per batch.")]
MAX_FACES = 1_000_000  # evaluation and generated training sets
MAX_SEED = 2 ** 62  # torch generators take 64-bit seeds; image i of a run uses seed + i
SeedOpt = Annotated[int, typer.Option("--seed", min=0, max=MAX_SEED, help="Seed for random x_T; image i uses seed + i, so batching never changes results.")]
TrainSeedOpt = Annotated[int, typer.Option("--seed", min=0, max=MAX_SEED, help="Seed of the run (initial weights, batch order, noise): the same seed and data give the same weights.")]


def _check_lr(value: float) -> float:
    """--lr: a finite learning rate in (0, 1]."""
    import math

    if not math.isfinite(value) or not 0 < value <= 1:
        raise typer.BadParameter(f"{value} is not a learning rate: give a number in (0, 1], e.g. 1e-4")
    return value


def _check_ema(value: float) -> float:
    """--ema-decay: in [0, 1) (0: no averaging; 1 or more would never move, or diverge)."""
    import math

    if not math.isfinite(value) or not 0 <= value < 1:
        raise typer.BadParameter(f"{value}: the EMA decay must be in [0, 1), e.g. 0.999")
    return value


def _check_alpha(value: float) -> float:
    from .editing.attributes import check_alpha

    try:
        return check_alpha(value, "--alpha")
    except DiffeditError as err:
        raise typer.BadParameter(str(err).split(": ", 1)[1]) from None
StepsOpt = Annotated[int, typer.Option("--steps", min=1, max=1000, help="Decoding steps = network calls (the official editing notebook: --sampler ddim --spacing uniform --steps 100; measured trade-off: docs/speed.md).")]
SamplerOpt = Annotated[str, typer.Option("--sampler", help="Decoder: dpmpp-2m (DPM-Solver++ 2M: better than DDIM at equal --steps) or ddim (official).")]
SpacingOpt = Annotated[str, typer.Option("--spacing", help="Timesteps of decoding and inversion: quadratic (dense at low noise: better at few --steps, docs/speed.md) or uniform (the model's own; official).")]
InvStepsOpt = Annotated[int, typer.Option("--inv-steps", min=1, max=1000, help="DDIM inversion steps for x_T (official: 250 with --spacing uniform).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON line per output on stdout.")]
SkipOpt = Annotated[bool, typer.Option("--skip-existing", help="Skip inputs whose output exists (resume an interrupted run).")]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace existing outputs (never inputs).")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]
RelativeToOpt = Annotated[Optional[str], typer.Option("--relative-to", help="Name each output by its input's path inside this folder (keeps the tree of files listed one by one or read from stdin: find DIR ... | diffedit encode - --relative-to DIR).", show_default=False)]
# -- HDAE: resolution levels of the semantic code --------------------------------------------
LevelsOpt = Annotated[Optional[str], typer.Option(
    "--levels", help="Resolution levels, 1 = finest ... L = coarsest (UNet levels; L = len(channel_mult)): "
    "e.g. 3-4, 1,3 or all. On plain Diff-AE models the levels select UNet blocks (our extension).",
    show_default=False)]

# -- real photos (faces) options: see diffedit_cli/faces ---------------------------------------------------
AlignOpt = Annotated[bool, typer.Option("--align", help="Inputs are photos: detect faces and FFHQ-align them to the model's size first.")]
AlignedOpt = Annotated[bool, typer.Option("--aligned", help="Inputs are already FFHQ-aligned crops: no detection (the default without --align).")]
FaceOpt = Annotated[str, typer.Option("--face", help="With --align: all, largest, or a face number (0 = leftmost). Outputs are named <stem>_<NN>.")]
AlignFaceOpt = Annotated[str, typer.Option("--face", help="all, largest, or a face number (0 = leftmost). Outputs are named <stem>_<NN>.")]
DetectorOpt = Annotated[str, typer.Option("--detector", help="auto (facexlib if its weights are cached, else dlib), facexlib, facexlib-mobile or dlib.")]
FaceWeightsOpt = Annotated[Optional[str], typer.Option("--face-weights", help="Folder of facexlib weights (default: $DIFFEDIT_FACE_WEIGHTS or ~/.cache/diffedit/facexlib); downloaded there on first use.", show_default=False)]


def _face_options(align: bool, aligned: bool, face: str, detector: str, face_weights: Optional[str], device: str = "cpu"):
    """FaceOptions for --align, or None for aligned inputs; refuses contradictory flags."""
    from .faces.detection import check_detector_name, check_face_spec

    if align and aligned:
        raise DiffeditError("--align and --aligned contradict each other: choose one")
    check_face_spec(face)
    check_detector_name(detector)
    if not align:
        return None
    from .jobs.photos import FaceOptions
    from .pipeline import pick_device

    return FaceOptions(detector=detector, face=face, weights=face_weights, device=str(pick_device(device)))
# -- end of real photos options ------------------------------------------------------------------------------


def _opts(device, precision, batch_size, seed, steps=defaults.STEPS, inv_steps=defaults.INV_STEPS, skip_existing=False,
          overwrite=False, sampler=defaults.SAMPLER, spacing=defaults.SPACING, relative_to=None):
    from .jobs.runner import RunOptions

    return RunOptions(device=device, precision=precision, batch_size=batch_size, seed=seed, steps=steps,
                      inv_steps=inv_steps, skip_existing=skip_existing, overwrite=overwrite, sampler=sampler,
                      spacing=spacing, relative_to=relative_to)


def _load(model: Optional[str], device: str, components=("latent", "classifier")):
    from .pipeline import load

    return load(model, device, components)


MAX_SWEEP = 64


def _parse_sweep(spec: str) -> List[float]:
    """``"-0.5:0.5:5"`` -> [-0.5, -0.25, 0, 0.25, 0.5]."""
    import torch

    from .editing.attributes import check_alpha
    from .errors import InputError

    try:
        start, stop, count = spec.split(":")
        n = int(count)
        if n < 2:
            raise ValueError
        start, stop = float(start), float(stop)
    except ValueError:
        raise InputError(f"--alpha-sweep '{spec}': expected START:STOP:COUNT, e.g. -0.5:0.5:5") from None
    if n > MAX_SWEEP:  # every column is decoded and held for the row image
        raise InputError(f"--alpha-sweep '{spec}': at most {MAX_SWEEP} strengths in one sweep")
    for value in (start, stop):
        check_alpha(value, f"--alpha-sweep {spec}")
    return torch.linspace(start, stop, n).tolist()


def _levels(text: Optional[str], loaded) -> Optional[List[int]]:
    """The ``--levels`` text -> 0-based levels of the loaded model."""
    from .hierarchy import num_levels, parse_levels

    return parse_levels(text, num_levels(loaded.autoencoder))


def _reporter(json_lines: bool, quiet: bool):
    from .jobs.runner import Reporter

    return Reporter(json_lines=json_lines, quiet=quiet or not sys.stderr.isatty() and os.environ.get("DIFFEDIT_PROGRESS") != "1")


@app.command()
def encode(
    inputs: Annotated[List[str], typer.Argument(help="Images, folders, globs or '-' (paths on stdin).", show_default=False)],
    out: OutOpt = None, model: ModelOpt = None, inv_steps: InvStepsOpt = defaults.INV_STEPS,
    spacing: SpacingOpt = defaults.SPACING, batch_size: BatchOpt = 8,
    device: DeviceOpt = "auto", precision: PrecisionOpt = None, skip_existing: SkipOpt = False,
    overwrite: OverwriteOpt = False, json_lines: JsonOpt = False, quiet: QuietOpt = False,
    align: AlignOpt = False, aligned: AlignedOpt = False, face: FaceOpt = "all", detector: DetectorOpt = "auto",
    face_weights: FaceWeightsOpt = None, relative_to: RelativeToOpt = None,
):
    """Encode images to latent files: z_sem (semantic code) + x_T (DDIM inversion).

    Writes one <name>.safetensors per image, recording the model, inversion
    steps, image size, source path and preprocessing (resize shorter side, centre crop).

    With --align, every face of each photo is detected, FFHQ-aligned and encoded to
    <name>_<NN>.safetensors; the alignment (quad, crop<->photo affines) is in the metadata.

    Examples:

      diffedit encode photos/ --out latents/ --inv-steps 250

      diffedit encode group.jpg --align --face all --out latents/

      find /data -name '*.png' | diffedit encode - --relative-to /data --out latents/   (keeps the tree)
    """
    from .jobs.runner import encode_files

    faces = _face_options(align, aligned, face, detector, face_weights, device)
    loaded = _load(model, device, components=())
    run_opts = _opts(device, precision, batch_size, 0, inv_steps=inv_steps, skip_existing=skip_existing, overwrite=overwrite,
                     spacing=spacing, relative_to=relative_to)
    with _reporter(json_lines, quiet) as rep:
        if faces is not None:
            from .jobs.photos import encode_photos

            code = encode_photos(loaded, inputs, out, run_opts, faces, rep)
        else:
            code = encode_files(loaded, inputs, out, run_opts, rep)
    raise typer.Exit(code)


@app.command()
def decode(
    inputs: Annotated[List[str], typer.Argument(help="Latent files or images (encoded on the fly), folders, globs, '-'.", show_default=False)],
    out: OutOpt = None, model: ModelOpt = None, steps: StepsOpt = defaults.STEPS, sampler: SamplerOpt = defaults.SAMPLER, spacing: SpacingOpt = defaults.SPACING, inv_steps: InvStepsOpt = defaults.INV_STEPS,
    random_xt: Annotated[bool, typer.Option("--random-xt", help="Ignore the stored x_T and draw it from --seed.")] = False,
    seed: SeedOpt = 0, batch_size: BatchOpt = 8, device: DeviceOpt = "auto", precision: PrecisionOpt = None,
    skip_existing: SkipOpt = False, overwrite: OverwriteOpt = False, json_lines: JsonOpt = False, quiet: QuietOpt = False,
    relative_to: RelativeToOpt = None,
):
    """Decode (z_sem, x_T) to images with deterministic DDIM.

    Given images instead of latent files, this reconstructs them (encode + decode).

    Example: diffedit decode latents/ --out recon/ --steps 100
    """
    from .jobs.runner import decode_files

    loaded = _load(model, device, components=())
    with _reporter(json_lines, quiet) as rep:
        code = decode_files(loaded, inputs, out, _opts(device, precision, batch_size, seed, steps, inv_steps,
                                                        skip_existing, overwrite, sampler, spacing=spacing,
                                                        relative_to=relative_to), rep, random_xT=random_xt)
    raise typer.Exit(code)


@app.command()
def interpolate(
    a: Annotated[str, typer.Argument(help="First image or latent file.", show_default=False)],
    b: Annotated[str, typer.Argument(help="Second image or latent file.", show_default=False)],
    frames: Annotated[int, typer.Option("--frames", "-n", min=2, max=1000, help="Number of frames including A and B.")] = 10,
    out: Annotated[Optional[str], typer.Option("--out", "-o", help="Output folder (default: diffedit-out/interp_A_B).", show_default=False)] = None,
    model: ModelOpt = None, steps: StepsOpt = defaults.STEPS, sampler: SamplerOpt = defaults.SAMPLER, spacing: SpacingOpt = defaults.SPACING, inv_steps: InvStepsOpt = defaults.INV_STEPS, batch_size: BatchOpt = 8,
    device: DeviceOpt = "auto", precision: PrecisionOpt = None, overwrite: OverwriteOpt = False,
    json_lines: JsonOpt = False, quiet: QuietOpt = False, levels: LevelsOpt = None,
    align: AlignOpt = False, aligned: AlignedOpt = False, face: FaceOpt = "largest", detector: DetectorOpt = "auto",
    face_weights: FaceWeightsOpt = None,
):
    """Interpolate between two faces: lerp z_sem, slerp x_T.

    Writes frame_000.png ..., grid.png (all frames in a row) and interpolation.gif.
    With --levels only those resolution levels move from A to B (x_T stays A's).

    Examples:

      diffedit interpolate a.png b.png --frames 10 --out interp/

      diffedit interpolate a.png b.png --levels 4-5 --model runs/hdae-u

      diffedit interpolate a.jpg b.jpg --align   (photos: the largest face of each, FFHQ-aligned)
    """
    from .jobs.runner import interpolate_pair

    faces = _face_options(align, aligned, face, detector, face_weights, device)
    loaded = _load(model, device, components=())
    run_opts = _opts(device, precision, batch_size, 0, steps, inv_steps, overwrite=overwrite, sampler=sampler, spacing=spacing)
    with _reporter(json_lines, quiet) as rep:
        if faces is not None:
            from .jobs.photos import interpolate_photos

            code = interpolate_photos(loaded, a, b, out, frames, run_opts, faces, rep, levels=_levels(levels, loaded))
        else:
            code = interpolate_pair(loaded, a, b, out, frames, run_opts, rep, levels=_levels(levels, loaded))
    raise typer.Exit(code)


@app.command()
def edit(
    inputs: Annotated[Optional[List[str]], typer.Argument(help="Images or latent files, folders, globs, '-'.", show_default=False)] = None,
    attr: Annotated[Optional[List[str]], typer.Option("--attr", "-a", autocompletion=_complete_attr, help="Attribute to move along: NAME (uses --alpha) or NAME=ALPHA; repeatable. Case-insensitive; No_X negates X.", show_default=False)] = None,
    alpha: Annotated[float, typer.Option("--alpha", callback=_check_alpha, help="Edit strength in normalised-z units times sqrt(D) (official demo: 0.3; at most 10 in size).")] = 0.3,
    topk: Annotated[Optional[int], typer.Option("--topk", min=1, help="HDAE truncation: keep the K largest coordinates of the direction.", show_default=False)] = None,
    alpha_sweep: Annotated[Optional[str], typer.Option("--alpha-sweep", help="START:STOP:COUNT, e.g. -0.5:0.5:5: one row of decodes per input.", show_default=False)] = None,
    compare: Annotated[bool, typer.Option("--compare", help="Put the input on the left of the output, columns labelled; tiles of models under 256 px are enlarged (nearest-neighbour) to 256 px. With --paste-back: original photo | edited photo.")] = False,
    list_attrs: Annotated[bool, typer.Option("--list-attrs", help="List the model's attributes and exit.")] = False,
    out: OutOpt = None, model: ModelOpt = None, steps: StepsOpt = defaults.STEPS, sampler: SamplerOpt = defaults.SAMPLER, spacing: SpacingOpt = defaults.SPACING, inv_steps: InvStepsOpt = defaults.INV_STEPS,
    batch_size: BatchOpt = 8, device: DeviceOpt = "auto", precision: PrecisionOpt = None,
    skip_existing: SkipOpt = False, overwrite: OverwriteOpt = False, json_lines: JsonOpt = False, quiet: QuietOpt = False,
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
    from .jobs.runner import edit_files

    faces = _face_options(align, aligned, face, detector, face_weights, device)
    if paste_back and faces is None:
        raise DiffeditError("--paste-back needs --align (it blends edited faces back into the photos they came from)")
    alphas = _parse_sweep(alpha_sweep) if alpha_sweep else None
    loaded = _load(model, device, components=("classifier",))
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
    run_opts = _opts(device, precision, batch_size, 0, steps, inv_steps, skip_existing, overwrite, sampler, spacing=spacing,
                     relative_to=relative_to)
    with _reporter(json_lines, quiet) as rep:
        if faces is not None:
            from .jobs.photos import edit_photos

            code = edit_photos(loaded, inputs, out, run_opts, faces, rep, attr, alpha, topk, compare, paste_back,
                               alphas, _levels(levels, loaded), direction, orthogonal_to)
        else:
            code = edit_files(loaded, inputs, out, run_opts, rep, attr, alpha, topk, alphas, compare,
                              _levels(levels, loaded), direction, orthogonal_to)
    raise typer.Exit(code)


@app.command()
def sample(
    n: Annotated[int, typer.Option("--n", "-n", min=1, max=100000, help="Number of images.")] = 16,
    where: Annotated[Optional[List[str]], typer.Option("--where", help="Keep only samples the classifier labels with this attribute (No_X: without); repeatable.", show_default=False)] = None,
    out: Annotated[Optional[str], typer.Option("--out", "-o", help="Output folder (default: diffedit-out/samples).", show_default=False)] = None,
    model: ModelOpt = None, steps: StepsOpt = defaults.STEPS, sampler: SamplerOpt = defaults.SAMPLER, spacing: SpacingOpt = defaults.SPACING,
    latent_steps: Annotated[int, typer.Option("--latent-steps", min=1, max=1000, help="Latent DDIM steps.")] = 100,
    seed: SeedOpt = 0, batch_size: BatchOpt = 8, device: DeviceOpt = "auto", precision: PrecisionOpt = None,
    skip_existing: Annotated[bool, typer.Option("--skip-existing", help="Keep the samples already in --out and write the missing ones (complete an interrupted run with the same --n, --seed and settings).")] = False,
    overwrite: OverwriteOpt = False, json_lines: JsonOpt = False, quiet: QuietOpt = False,
):
    """Generate new images: latent DDIM for z_sem, then the image decoder.

    Writes sample_NNNN.png as they are decoded, then grid.png (the first 64). --where does class-conditional
    rejection sampling with the model's classifier (Diff-AE section 5.6). Sample k is the same whatever the
    batch size, so an interrupted run is completed with --skip-existing.

    Examples:

      diffedit sample --n 16 --where Smiling --seed 1

      diffedit sample --n 10000 --out samples/ --skip-existing   (resume after Ctrl-C)
    """
    from .jobs.runner import sample_images

    loaded = _load(model, device, components=("latent", "classifier"))
    with _reporter(json_lines, quiet) as rep:
        code = sample_images(loaded, n, out, _opts(device, precision, batch_size, seed, steps, skip_existing=skip_existing,
                                                   overwrite=overwrite, sampler=sampler, spacing=spacing), rep,
                             where or [], latent_steps)
    raise typer.Exit(code)


# -- HDAE: style mixing ------------------------------------------------------------------------
@app.command("style-mix")
def style_mix_cmd(
    a: Annotated[str, typer.Argument(help="A: image or latent file, folder or glob (codes kept).", show_default=False)],
    b: Annotated[str, typer.Argument(help="B: image or latent file, folder or glob (levels taken from it).", show_default=False)],
    levels: Annotated[str, typer.Option("--levels", help="Levels taken from B, 1 = finest ... L = coarsest: e.g. 3-4, 1,3.", show_default=False)],
    random_xt: Annotated[bool, typer.Option("--random-xt", help="Draw x_T from --seed instead of inverting A.")] = False,
    out: Annotated[Optional[str], typer.Option("--out", "-o", help="Output folder (default: diffedit-out/stylemix_A_B).", show_default=False)] = None,
    model: ModelOpt = None, steps: StepsOpt = defaults.STEPS, sampler: SamplerOpt = defaults.SAMPLER, spacing: SpacingOpt = defaults.SPACING, inv_steps: InvStepsOpt = defaults.INV_STEPS, seed: SeedOpt = 0,
    batch_size: BatchOpt = 8, device: DeviceOpt = "auto", precision: PrecisionOpt = None,
    overwrite: OverwriteOpt = False, json_lines: JsonOpt = False, quiet: QuietOpt = False,
):
    """Style mixing: A's semantic code with the chosen resolution levels taken from B.

    x_T is A's (DDIM inversion, or stored in A's latent file) unless --random-xt. With several A and B
    (folders, globs) every pair is mixed and grid.png is a StyleGAN-style grid (B across the top, A down the
    left). On plain Diff-AE models the UNet blocks of the chosen levels get B's code (our extension).

    Examples:

      diffedit style-mix a.png b.png --levels 3-4 --model runs/hdae-u

      diffedit style-mix rows/ cols/ --levels 1-2 --random-xt --seed 3 --out mix/
    """
    from .jobs.stylemix import style_mix

    loaded = _load(model, device, components=())
    with _reporter(json_lines, quiet) as rep:
        code = style_mix(loaded, [a], [b], _levels(levels, loaded), out, _opts(device, precision, batch_size, seed, steps, inv_steps,
                                                               overwrite=overwrite, sampler=sampler, spacing=spacing), rep, random_xT=random_xt)
    raise typer.Exit(code)


@app.command()
def convert(
    checkpoints: Annotated[List[Path], typer.Argument(help="Official Diff-AE weight files or folders of them: Lightning checkpoints (last.ckpt), state dicts with the official names (.safetensors, .pt, .pth, .bin; EMA-stripped or prefixed), latent.pkl; autoencoder, latent, classifier and/or latent statistics.", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Model folder to create (or add components to).", show_default=False)],
    weights: Annotated[str, typer.Option("--weights", help="ema (what the official code samples with) or raw.")] = "ema",
    preset: Annotated[Optional[str], typer.Option("--preset", help="ffhq256, ffhq128, bedroom128, horse128 or celeba64 (default: infer from key shapes).", show_default=False)] = None,
    image_size: Annotated[Optional[int], typer.Option("--image-size", min=8, max=4096, help="Override the image size (default: from the x_T buffer, else from the layout: official models attend at 16 px).", show_default=False)] = None,
    name: Annotated[Optional[str], typer.Option("--name", help="Model name stored in model_index.json.", show_default=False)] = None,
    trust_pickle: Annotated[bool, typer.Option("--trust-pickle", help="Allow the checkpoint to execute arbitrary pickled code. Only for files you trust.")] = False,
    overwrite: OverwriteOpt = False,
):
    """Convert official Diff-AE checkpoints to a diffedit model folder (config.json + model.safetensors per component).

    Nothing in the checkpoint is executed unless --trust-pickle is given; Lightning's
    callbacks / optimizer state are skipped safely.

    Each file is classified by its keys and shapes. '--model' converts such files by itself (once, into the
    cache); 'convert' writes a model folder where you choose.

    Examples:

      diffedit convert ffhq256_autoenc/last.ckpt ffhq256_autoenc_latent/last.ckpt ffhq256_autoenc_cls/last.ckpt --out models/ffhq256

      diffedit convert ffhq256_autoenc_ema.safetensors ffhq256_autoenc_cls.safetensors ffhq256_autoenc_latent.safetensors --out models/ffhq256
    """
    from rich.console import Console

    from .io.convert import convert_checkpoints

    console = Console(stderr=True, highlight=False, soft_wrap=True)
    written = convert_checkpoints(checkpoints, out, weights=weights, preset=preset, image_size=image_size,
                                  trust_pickle=trust_pickle, name=name, overwrite=overwrite, log=console.print)
    for comp, source in written.items():
        typer.echo(f"{comp}: {source} -> {out / comp}")


@app.command()
def align(
    inputs: Annotated[List[str], typer.Argument(help="Photos, folders, globs or '-' (paths on stdin).", show_default=False)],
    out: OutOpt = None,
    size: Annotated[Optional[int], typer.Option("--size", min=8, max=4096, help="Crop size in pixels (default: the model's image size).", show_default=False)] = None,
    model: ModelOpt = None, face: AlignFaceOpt = "all", detector: DetectorOpt = "auto", face_weights: FaceWeightsOpt = None,
    device: DeviceOpt = "auto", skip_existing: SkipOpt = False, overwrite: OverwriteOpt = False,
    json_lines: JsonOpt = False, quiet: QuietOpt = False, relative_to: RelativeToOpt = None,
):
    """Detect faces in photos and write FFHQ-aligned crops <name>_<NN>.png (NN: face number, 0 = leftmost).

    The alignment (quad, crop<->photo affines, landmarks, detector) is stored in each PNG's
    'diffedit_alignment' text chunk.

    Examples:

      diffedit align photos/ --out aligned/ --size 256

      diffedit align group.jpg --face largest --detector dlib
    """
    from .jobs.photos import align_files, warn_if_not_photo_model

    faces = _face_options(True, False, face, detector, face_weights, device)
    if size is None:
        from .io.models import load_model

        loaded = load_model(model, device="cpu", components=())
        warn_if_not_photo_model(loaded)
        size = loaded.image_size
    with _reporter(json_lines, quiet) as rep:
        code = align_files(inputs, out, size, faces, _opts(device, None, 1, 0, skip_existing=skip_existing,
                                                           overwrite=overwrite, relative_to=relative_to), rep)
    raise typer.Exit(code)


directions_app = typer.Typer(help="Find, inspect and name edit directions beyond the classifier's (direction files "
                             "for 'diffedit edit --direction FILE:NAME').", no_args_is_help=True)
app.add_typer(directions_app, name="directions")
DirOutOpt = Annotated[Path, typer.Option("--out", "-o", help="Direction file to write (.safetensors).", show_default=False)]


def _direction_out(out: Path) -> Path:
    if out.suffix.lower() != ".safetensors":
        raise DiffeditError(f"--out '{out}': a direction file name must end in .safetensors")
    return out


@directions_app.command("pca")
def directions_pca(
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
    from .jobs.directions import pca_file

    loaded = _load(model, device, components=("latent", "classifier"))
    with _reporter(False, quiet) as rep:
        found = pca_file(loaded, inputs, _direction_out(out), components, _opts(device, precision, batch_size, 0,
                                                                                 overwrite=overwrite), rep)
    shares = ", ".join(f"{n} {float(v):.1%}" for n, v in zip(found.names[:5], found.explained[:5]))
    typer.echo(f"{len(found.names)} directions from {found.provenance['codes']} codes -> {out} (variance: {shares}, ...)")
    raise typer.Exit(1 if rep.failures else 0)


@directions_app.command("from-examples")
def directions_from_examples(
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
    from .jobs.directions import examples_file

    if method not in ("auto", "mean-difference", "logistic"):
        raise DiffeditError(f"--method '{method}': choose auto, mean-difference or logistic")
    loaded = _load(model, device, components=("latent", "classifier"))
    with _reporter(False, quiet) as rep:
        found, used = examples_file(loaded, positive, negative, name, _direction_out(out), method,
                                    _opts(device, precision, batch_size, 0, overwrite=overwrite), rep)
    typer.echo(f"{name}: {used} of {found.provenance['positives']} positive and {found.provenance['negatives']} "
               f"negative examples -> {out}")
    raise typer.Exit(1 if rep.failures else 0)


@directions_app.command("show")
def directions_show(
    file: Annotated[Path, typer.Argument(help="Direction file.", show_default=False)],
    inputs: Annotated[List[str], typer.Option("--inputs", "-i", help="Faces to edit (images or latent files, folders).", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Grid image to write (.png).", show_default=False)],
    names: Annotated[Optional[List[str]], typer.Option("--name", help="Only these directions (repeatable).", show_default=False)] = None,
    alpha: Annotated[float, typer.Option("--alpha", callback=_check_alpha, help="Sweep from -alpha to +alpha.")] = 0.5,
    columns: Annotated[int, typer.Option("--columns", min=2, max=64, help="Strengths per face.")] = 5,
    faces: Annotated[int, typer.Option("--faces", min=1, max=64, help="Faces per row.")] = 2,
    model: ModelOpt = None, steps: StepsOpt = 50, sampler: SamplerOpt = defaults.SAMPLER, spacing: SpacingOpt = defaults.SPACING, inv_steps: InvStepsOpt = 50,
    batch_size: BatchOpt = 8, device: DeviceOpt = "auto", precision: PrecisionOpt = None,
    overwrite: OverwriteOpt = False, quiet: QuietOpt = False,
):
    """The overview to name directions by: one row per direction, a -alpha..+alpha sweep on a few faces.

    Example: diffedit directions show dirs.safetensors --inputs faces/ --out overview.png
    """
    from .jobs.directions import show_grid

    loaded = _load(model, device, components=())
    with _reporter(False, quiet) as rep:
        show_grid(loaded, file, inputs, out, alpha, columns, faces,
                  _opts(device, precision, batch_size, 0, steps, inv_steps, overwrite=overwrite, sampler=sampler, spacing=spacing), rep, names)
    typer.echo(f"overview -> {out}")


@directions_app.command("rename")
def directions_rename(
    file: Annotated[Path, typer.Argument(help="Direction file (changed in place).", show_default=False)],
    renames: Annotated[List[str], typer.Argument(help="OLD=NEW pairs, e.g. pc01=Gender pc04=Smile.", show_default=False)],
):
    """Name directions after looking at 'directions show'.

    Example: diffedit directions rename dirs.safetensors pc01=Gender pc04=Smile
    """
    from .jobs.directions import rename_file

    found = rename_file(file, renames)
    typer.echo(f"{file}: {', '.join(found.names)}")


data_app = typer.Typer(help="Generate datasets.", no_args_is_help=True)
train_app = typer.Typer(help="Train models (resumable; a run folder is also a model folder usable with --model).",
                        no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(train_app, name="train")


@data_app.command("toyfaces")
def data_toyfaces(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to create.", show_default=False)],
    n: Annotated[int, typer.Option("--n", min=1, max=10_000_000, help="Number of faces.")] = 20000,
    seed: Annotated[int, typer.Option("--seed", min=0, max=MAX_SEED, help="Dataset seed (face i uses a seed derived from it and i).")] = 0,
    size: Annotated[int, typer.Option("--size", min=16, max=1024, help="Image size in pixels.")] = 64,
    masks: Annotated[bool, typer.Option("--masks/--no-masks", help="Also write per-part masks.")] = True,
    quiet: QuietOpt = False,
):
    """Generate procedural faces with known attributes, part masks and counterfactuals.

    Writes images/NNNNNN.png, list_attr.txt (CelebA annotation format),
    masks/NNNNNN.npz and params.jsonl.

    Example: diffedit data toyfaces --n 20000 --out data/toyfaces
    """
    from rich.progress import Progress

    from .data.toyfaces import write_dataset

    with Progress(disable=quiet, transient=True) as progress:
        task = progress.add_task("rendering faces", total=n)
        write_dataset(out, n, seed=seed, size=size, masks=masks, progress=lambda i: progress.update(task, completed=i + 1))
    typer.echo(f"{n} faces -> {out}")


def _given(ctx: typer.Context, **renamed: str) -> set:
    """The parameters set on the command line (not left at their defaults), under their config names."""
    def given(name: str) -> bool:  # by the source's name: Typer may vendor its own click
        source = ctx.get_parameter_source(name)
        return source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")

    return {renamed.get(name, name) for name in ctx.params if given(name)}


def _train_progress(total: int, quiet: bool, what: str):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    progress = Progress(TextColumn(f"training {what}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("loss {task.fields[loss]:.4f}  {task.fields[ips]:.1f} img/s"), TimeRemainingColumn(),
                        disable=quiet, console=__import__("rich.console", fromlist=["Console"]).Console(stderr=True))
    task = progress.add_task(what, total=total, loss=float("nan"), ips=0.0)

    def log(info: dict) -> None:
        progress.update(task, completed=info["step"], total=info.get("steps"), loss=info["loss"], ips=info.get("images_per_s", 0.0))
    return progress, log


@train_app.command("autoencoder")
def train_autoencoder_cmd(
    ctx: typer.Context,
    data: Annotated[Path, typer.Option("--data", help="Folder of training images (e.g. from 'diffedit data toyfaces').", show_default=False)],
    run: Annotated[Path, typer.Option("--out", "-o", help="Run folder: checkpoints, samples, train_log.jsonl; also a model folder for --model.", show_default=False)],
    preset: Annotated[str, typer.Option("--preset", help="Architecture: toy64 (~3M params, CPU-trainable) or tiny32 (tests).")] = "toy64",
    arch: Annotated[str, typer.Option("--arch", help="diffae, hdae-e (HDAE(E): level codes from the encoder, whole code to every block) or hdae-u (HDAE(U): U-shaped encoder, level l's code to UNet level l).")] = "diffae",
    steps: Annotated[int, typer.Option("--steps", min=1, help="Total optimisation steps.")] = 10000,
    batch_size: BatchOpt = 32,
    lr: Annotated[float, typer.Option("--lr", callback=_check_lr, help="Adam learning rate (paper: 1e-4).")] = 1e-4,
    ema_decay: Annotated[float, typer.Option("--ema-decay", callback=_check_ema, help="EMA decay of the weights.")] = 0.999,
    save_every: Annotated[int, typer.Option("--save-every", min=1, help="Checkpoint every N steps.")] = 250,
    sample_every: Annotated[int, typer.Option("--sample-every", min=0, help="Sample grid every N steps (0: never).")] = 1000,
    chunk: Annotated[Optional[int], typer.Option("--chunk", min=1, help="Stop this invocation after N steps (resume later).", show_default=False)] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out from its last checkpoint.")] = False,
    seed: TrainSeedOpt = 0, device: DeviceOpt = "auto",
    precision: Annotated[str, typer.Option("--precision", help="auto (fp16 on CUDA, fp32 on CPU), fp32, bf16 or fp16 autocast.")] = "auto",
    data_limit: Annotated[Optional[int], typer.Option("--data-limit", help="Use only the first N images.", show_default=False)] = None,
    keep_every: Annotated[int, typer.Option("--keep-every", min=0, help="Also keep an EMA snapshot every N steps in snapshots/ (for 'eval curve'); 0: never.")] = 0,
    prediction: Annotated[str, typer.Option("--prediction", help="What the UNet predicts: eps (official) or v (v = sqrt(a) eps - sqrt(1-a) x0).")] = "eps",
    schedule: Annotated[str, typer.Option("--schedule", help="Beta schedule: linear (official) or cosine.")] = "linear",
    zero_terminal_snr: Annotated[bool, typer.Option("--zero-terminal-snr", help="Rescale the schedule so x_T holds no signal (Lin et al. 2024; needs --prediction v).")] = False,
    loss_weight: Annotated[str, typer.Option("--loss-weight", help="uniform, min-snr[:gamma] (default gamma 5) or p2[:gamma[:k]] (default 1:1).")] = "uniform",
    timesteps: Annotated[str, typer.Option("--timesteps", help="Timestep sampling: uniform, high[:share[:t_min]] (default 0.5:700: that share of each batch at t >= t_min) or curriculum:STEPS (high noise first, widening to all t over STEPS steps).")] = "uniform",
    offset_noise: Annotated[float, typer.Option("--offset-noise", min=0.0, help="Add this much per-channel constant noise (offset noise); 0: off.")] = 0.0,
    warmup: Annotated[int, typer.Option("--warmup", min=0, help="Linear learning-rate warmup steps.")] = 0,
    lr_schedule: Annotated[str, typer.Option("--lr-schedule", help="constant, or cosine (down to a tenth of --lr at the last step).")] = "constant",
    init_from: Annotated[Optional[str], typer.Option("--init-from", help="Start from this model's autoencoder (shipped name, folder or Hub id; its architecture replaces --preset): fine-tuning, or continuing from committed weights.", show_default=False)] = None,
    channels_last: Annotated[bool, typer.Option("--channels-last", help="Train in channels_last memory format (faster with bf16 on some CPUs).")] = False,
    part_weights: Annotated[str, typer.Option("--part-weights", help="Weight the loss inside part masks, e.g. mouth=8,eyes=8 (pixels of those parts count 8x), so small parts reach z_sem. Needs masks (see --masks).")] = "",
    part_dilate: Annotated[int, typer.Option("--part-dilate", min=0, help="Grow the weighted part masks by N pixels.")] = 1,
    masks: Annotated[Optional[Path], typer.Option("--masks", help="Part-mask folder for --part-weights (NNNNNN.npz per image; default: masks/ beside the --data folder).", show_default=False)] = None,
    quiet: QuietOpt = False,
):
    """Train a Diff-AE autoencoder (L_simple, Adam, EMA; paper Table 5, scaled down).

    The defaults are the official recipe (eps prediction, linear betas, uniform t). The options after
    --keep-every change the objective; the parameterisation is stored in the model's config.json, so
    every command decodes the result correctly. Measured comparison: docs/training.md.

    Multi-process data parallel: torchrun --nproc_per_node 2 -m diffedit_cli train autoencoder ...

    Examples:

      diffedit train autoencoder --data data/toyfaces/images --out runs/toy --steps 6000 --precision bf16

      diffedit train autoencoder --data data/toyfaces/images --out runs/toy-v --prediction v --zero-terminal-snr --timesteps high

      diffedit train autoencoder --data data/toyfaces/images --out runs/toy-parts --part-weights mouth=8,eyes=8

      diffedit train autoencoder --arch hdae-u --data data/toyfaces/images --out runs/hdae-u --steps 6000

      diffedit train autoencoder --data my_faces/ --out runs/mine --init-from toyfaces --steps 2000
    """
    from .training.diffae import AutoencoderTrainConfig, train_autoencoder

    cfg = AutoencoderTrainConfig(data=str(data), run=str(run), preset=preset, arch=arch, steps=steps, batch_size=batch_size, lr=lr,
                                 ema_decay=ema_decay, save_every=save_every, sample_every=sample_every, seed=seed,
                                 precision=precision, device=device, data_limit=data_limit,
                                 keep_every=keep_every, prediction=prediction, schedule=schedule,
                                 zero_terminal_snr=zero_terminal_snr, loss_weight=loss_weight, timesteps=timesteps,
                                 offset_noise=offset_noise, warmup=warmup, lr_schedule=lr_schedule, init_from=init_from,
                                 channels_last=channels_last, part_weights=part_weights, part_dilate=part_dilate,
                                 masks=str(masks) if masks else None)
    progress, log = _train_progress(steps, quiet or int(os.environ.get("RANK", "0")) != 0, "autoencoder")
    with progress:
        train_autoencoder(cfg, resume=resume, log=log, stop_after=chunk, given=_given(ctx))
    typer.echo(f"autoencoder checkpoint -> {run}")


@train_app.command("latent")
def train_latent_cmd(
    run: Annotated[Path, typer.Option("--model", "-m", help="Model (run) folder holding the trained autoencoder; the latent component is added to it.", show_default=False)],
    data: Annotated[Path, typer.Option("--data", help="Folder of training images (encoded with the model's autoencoder).", show_default=False)],
    preset: Annotated[str, typer.Option("--preset", help="toy (6 layers x 512) or official (10 layers x 2048).")] = "toy",
    steps: Annotated[int, typer.Option("--steps", min=1)] = 20000,
    batch_size: BatchOpt = 256,
    lr: Annotated[float, typer.Option("--lr", callback=_check_lr)] = 1e-4,
    seed: TrainSeedOpt = 0, device: DeviceOpt = "auto", quiet: QuietOpt = False,
):
    """Train the latent DDIM on normalised z_sem (L1 loss, constant beta 0.008, MLP + skips; paper Table 6).

    Example: diffedit train latent --model runs/toy --data data/toyfaces/images --steps 20000
    """
    from .training.diffae import LatentTrainConfig, train_latent

    progress, log = _train_progress(steps, quiet, "latent DDIM")
    with progress:
        train_latent(LatentTrainConfig(run=str(run), data=str(data), preset=preset, steps=steps, batch_size=batch_size,
                                       lr=lr, seed=seed, device=device), log=log)
    typer.echo(f"latent DDIM -> {run / 'latent'}")


@train_app.command("classifier")
def train_classifier_cmd(
    run: Annotated[Path, typer.Option("--model", "-m", help="Model (run) folder holding the trained autoencoder; the classifier is added to it.", show_default=False)],
    data: Annotated[Path, typer.Option("--data", help="Folder of training images.", show_default=False)],
    labels: Annotated[Path, typer.Option("--labels", help="Attribute table in the CelebA annotation format.", show_default=False)],
    epochs: Annotated[int, typer.Option("--epochs", min=1)] = 30,
    lr: Annotated[float, typer.Option("--lr", callback=_check_lr)] = 1e-3,
    seed: TrainSeedOpt = 0, device: DeviceOpt = "auto", quiet: QuietOpt = False,
):
    """Train linear attribute classifiers on normalised z_sem (paper A.2); they define the edit directions.

    Example: diffedit train classifier --model runs/toy --data data/toyfaces/images --labels data/toyfaces/list_attr.txt
    """
    from .training.diffae import ClassifierTrainConfig, train_classifier

    progress, log = _train_progress(epochs, quiet, "classifier")
    with progress:
        acc = train_classifier(ClassifierTrainConfig(run=str(run), data=str(data), labels=str(labels), epochs=epochs,
                                                     lr=lr, seed=seed, device=device), log=log)
    for name, value in acc.items():
        typer.echo(f"{name:24s} held-out accuracy {value:.3f}")


@train_app.command("oracle")
def train_oracle_cmd(
    out: Annotated[Path, typer.Option("--out", "-o", help="Model (run) folder to add the oracle component to.", show_default=False)],
    n_train: Annotated[int, typer.Option("--n-train", min=10, max=MAX_FACES, help="Generated training faces.")] = 20000,
    epochs: Annotated[int, typer.Option("--epochs", min=1)] = 10,
    size: Annotated[int, typer.Option("--size", min=16, max=1024, help="Image size (the autoencoder's).")] = 64,
    quiet: QuietOpt = False,
):
    """Train the attribute oracle: a pixel-space CNN on generated faces that judges edits (independent of the autoencoder).

    Example: diffedit train oracle --out runs/toy
    """
    from .networks.oracle import OracleConfig
    from .training.oracle import train_oracle

    acc = train_oracle(out, n_train=n_train, epochs=epochs, config=OracleConfig(image_size=size),
                       log=None if quiet else (lambda row: typer.echo(json.dumps(row), err=True)))
    for name, value in acc.items():
        typer.echo(f"{name:24s} validation accuracy {value:.4f}")


eval_app = typer.Typer(help="Measure reconstruction and editing quality on generated faces with known attributes.",
                       no_args_is_help=True)
app.add_typer(eval_app, name="eval")


def _check_steps(values, flag: str, total: int = 1000) -> None:
    from .diffusion import respaced_timesteps

    for value in values:
        try:
            respaced_timesteps(total, value)
        except ValueError as err:
            raise DiffeditError(f"{flag} {value}: {err}") from None


def _int_list(text: str, flag: str) -> List[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise DiffeditError(f"{flag} '{text}': expected comma-separated integers") from None


def _float_list(text: str, flag: str) -> List[float]:
    import math

    try:
        values = [float(v) for v in text.split(",") if v.strip()]
        if not values or not all(math.isfinite(v) for v in values):
            raise ValueError
        return values
    except ValueError:
        raise DiffeditError(f"{flag} '{text}': expected comma-separated numbers") from None


@eval_app.command("recon")
def eval_recon_cmd(
    data: Annotated[Path, typer.Argument(help="Generated face folder (diffedit data toyfaces), held out from training.", show_default=False)],
    model: ModelOpt = None,
    n: Annotated[int, typer.Option("--n", min=1, max=MAX_FACES, help="Faces to use (the first N).")] = 500,
    steps: Annotated[str, typer.Option("--steps", help="DDIM step counts for inferred x_T (inversion and decoding).")] = "10,20,50,100",
    random_steps: Annotated[int, typer.Option("--random-steps", min=1, help="Decoding steps with random x_T.")] = 100,
    seed: SeedOpt = 0, batch_size: BatchOpt = 32, device: DeviceOpt = "auto",
    precision: Annotated[str, typer.Option("--precision", callback=_precision_choice, help="fp32, fp16 or bf16.")] = "fp32",
    json_out: Annotated[bool, typer.Option("--json", help="Print the rows as JSON instead of a table.")] = False,
    quiet: QuietOpt = False,
):
    """Reconstruction quality (Diff-AE Table 2 protocol): MSE, PSNR, SSIM, LPIPS with inferred and random x_T.

    With an oracle in the model, also the fraction of attribute labels kept by random-x_T decodes.

    LPIPS needs the lpips package (the [metrics] extra, or pip install lpips) and torchvision's AlexNet weights,
    downloaded into the torch hub cache on first use (DIFFEDIT_LPIPS_ALEXNET_URL: another source); offline
    the column is n/a with a note saying why.

    Example: diffedit data toyfaces --n 500 --seed 7 --out heldout && diffedit eval recon heldout
    """
    from .evaluation.benchmarks import eval_reconstruction, format_table

    step_list = _int_list(steps, "--steps")
    _check_steps(step_list, "--steps")
    _check_steps([random_steps], "--random-steps")
    loaded = _load(model, device, components=("classifier", "latent", "oracle"))
    with _reporter(False, quiet) as rep:
        result = eval_reconstruction(loaded, data, n=n, steps=step_list, random_steps=random_steps,
                                     batch_size=batch_size, seed=seed, precision=precision, progress=rep)
    typer.echo(json.dumps(result) if json_out else format_table(result["rows"], result["notes"]))


@eval_app.command("edit")
def eval_edit_cmd(
    data: Annotated[Path, typer.Argument(help="Generated face folder with params.jsonl and masks, held out from training; or real photos (a photo or a folder without params.jsonl).", show_default=False)],
    model: ModelOpt = None,
    n: Annotated[int, typer.Option("--n", min=1, max=MAX_FACES, help="Faces to use (the first N).")] = 100,
    alphas: Annotated[str, typer.Option("--alphas", help="Edit strengths, comma-separated.")] = "0.3,0.5",
    topk: Annotated[Optional[int], typer.Option("--topk", min=1, help="HDAE truncated directions.", show_default=False)] = None,
    steps: Annotated[int, typer.Option("--steps", min=1, help="Decoding steps.")] = 20,
    inv_steps: Annotated[int, typer.Option("--inv-steps", min=1, help="Inversion steps.")] = 20,
    batch_size: BatchOpt = 32, device: DeviceOpt = "auto",
    precision: Annotated[str, typer.Option("--precision", callback=_precision_choice, help="fp32, fp16 or bf16.")] = "fp32",
    json_out: Annotated[bool, typer.Option("--json", help="Print the rows as JSON instead of a table.")] = False,
    quiet: QuietOpt = False, levels: LevelsOpt = None,
    face: FaceOpt = "all", detector: DetectorOpt = "auto", face_weights: FaceWeightsOpt = None,
    attrs: Annotated[Optional[str], typer.Option("--attrs", help="Real photos: comma-separated attributes (default: all of the classifier's).", show_default=False)] = None,
):
    """Editing quality per attribute: oracle flip rate, attribute dependency, MSE outside the edited parts.

    On real photos (DATA is a photo, or a folder without params.jsonl): faces are detected and aligned,
    edited, pasted back, and the report gives dlib identity similarity (cosine, distance, same-person
    rate) and, with facexlib parsing weights, MSE outside the attribute's dilated face parts.

    Examples:

      diffedit eval edit heldout --n 100 --topk 64

      diffedit eval edit heldout --model runs/hdae-u --levels 1-2

      diffedit eval edit photos/ --attrs Smiling,Eyeglasses --detector dlib
    """
    from .evaluation.benchmarks import eval_editing, format_table
    from .hierarchy import num_levels, parse_levels

    _check_steps([steps], "--steps")
    _check_steps([inv_steps], "--inv-steps")
    if data.exists() and not (data / "params.jsonl").is_file():  # real photos
        from .jobs.photos import eval_photo_edits

        faces = _face_options(True, False, face, detector, face_weights, device)
        loaded = _load(model, device, components=("classifier",))
        with _reporter(False, quiet) as rep:
            result = eval_photo_edits(loaded, [str(data)], faces, alphas=_float_list(alphas, "--alphas"), topk=topk,
                                      steps=steps, inv_steps=inv_steps, batch_size=batch_size, precision=precision,
                                      attributes=[a.strip() for a in attrs.split(",") if a.strip()] if attrs else None,
                                      progress=rep)
        typer.echo(json.dumps(result) if json_out else format_table(result["rows"], result["notes"]))
        raise typer.Exit(0)
    photo_only = {"--attrs": attrs is not None, "--face": face != "all", "--detector": detector != "auto",
                  "--face-weights": face_weights is not None}
    if any(photo_only.values()):
        raise DiffeditError(f"{', '.join(k for k, v in photo_only.items() if v)}: only for real photos; '{data}' is a "
                            "generated face folder (params.jsonl), edited along every attribute")
    loaded = _load(model, device, components=("classifier", "latent", "oracle"))
    level_list = parse_levels(levels, num_levels(loaded.autoencoder))
    with _reporter(False, quiet) as rep:
        rows = eval_editing(loaded, data, n=n, alphas=_float_list(alphas, "--alphas"), topk=topk, steps=steps,
                            inv_steps=inv_steps, batch_size=batch_size, precision=precision, progress=rep,
                            levels=level_list)
    typer.echo(json.dumps(rows) if json_out else format_table(rows))


@eval_app.command("sample")
def eval_sample_cmd(
    data: Annotated[Path, typer.Argument(help="Generated face folder whose list_attr.txt gives the data frequencies.", show_default=False)],
    model: ModelOpt = None,
    n: Annotated[int, typer.Option("--n", min=1, max=MAX_FACES, help="Number of samples.")] = 500,
    steps: Annotated[int, typer.Option("--steps", min=1, help="Image decoding steps.")] = 20,
    latent_steps: Annotated[int, typer.Option("--latent-steps", min=1, help="Latent DDIM steps.")] = 100,
    seed: SeedOpt = 0, batch_size: BatchOpt = 32, device: DeviceOpt = "auto",
    precision: Annotated[str, typer.Option("--precision", callback=_precision_choice, help="fp32, fp16 or bf16.")] = "fp32",
    json_out: Annotated[bool, typer.Option("--json", help="Print the rows as JSON instead of a table.")] = False,
    quiet: QuietOpt = False,
):
    """Attribute frequencies of unconditional samples (judged by the oracle) against the data's.

    Example: diffedit eval sample data/toyfaces --n 500
    """
    from .evaluation.benchmarks import eval_sampling, format_table

    _check_steps([steps], "--steps")
    _check_steps([latent_steps], "--latent-steps")
    loaded = _load(model, device, components=("classifier", "latent", "oracle"))
    with _reporter(False, quiet) as rep:
        rows = eval_sampling(loaded, data, n=n, steps=steps, latent_steps=latent_steps, seed=seed,
                             batch_size=batch_size, precision=precision, progress=rep)
    typer.echo(json.dumps(rows) if json_out else format_table(rows))


# -- HDAE: the paper's comparison and training curves ----------------------------------------
@eval_app.command("compare")
def eval_compare_cmd(
    data: Annotated[Path, typer.Argument(help="Generated face folder with params.jsonl and masks, held out from training.", show_default=False)],
    models: Annotated[List[str], typer.Option("--model", "-m", help="Model to compare (repeatable), e.g. the Diff-AE and the HDAE(U) run.", show_default=False)],
    topk: Annotated[Optional[List[int]], typer.Option("--topk", min=1, help="Also rows with truncated directions (repeatable).", show_default=False)] = None,
    n: Annotated[int, typer.Option("--n", min=1, max=MAX_FACES, help="Faces to use (the first N).")] = 50,
    steps: Annotated[int, typer.Option("--steps", min=1, help="Decoding steps (edits and inferred-x_T reconstruction).")] = 20,
    inv_steps: Annotated[int, typer.Option("--inv-steps", min=1, help="Inversion steps.")] = 20,
    random_steps: Annotated[int, typer.Option("--random-steps", min=1, help="Decoding steps with random x_T.")] = 20,
    alphas: Annotated[str, typer.Option("--alphas", help="Signed alphas of the Tab. 2 fidelity average.")] = "-0.5,-0.25,0,0.25,0.5",
    edit_alphas: Annotated[str, typer.Option("--edit-alphas", help="Alphas toward the target for flip rate / AD.")] = "0.3,0.5",
    seed: SeedOpt = 0, batch_size: BatchOpt = 32, device: DeviceOpt = "auto",
    precision: Annotated[str, typer.Option("--precision", callback=_precision_choice, help="fp32, fp16 or bf16.")] = "fp32",
    json_out: Annotated[bool, typer.Option("--json", help="Print the rows as JSON instead of a table.")] = False,
    quiet: QuietOpt = False,
):
    """HDAE's comparison (DAE vs HDAE(U) vs HDAE(U) + top-k): MSE / LPIPS outside the dilated part mask
    averaged over alpha in [-0.5, 0.5] (HDAE Tab. 2), attribute dependency, oracle flip rate, reconstruction
    MSE with inferred and random x_T. The first model holding an oracle judges all.

    Example: diffedit eval compare heldout --model runs/toyfaces --model runs/hdae-u --topk 64 --n 50
    """
    from .evaluation.comparison import compare_models
    from .evaluation.benchmarks import format_table, load_lpips

    for value, flag in ((steps, "--steps"), (inv_steps, "--inv-steps"), (random_steps, "--random-steps")):
        _check_steps([value], flag)
    loaded = [_load(spec, device, components=("classifier", "latent", "oracle")) for spec in models]
    lpips = load_lpips(next(loaded[0].autoencoder.parameters()).device)
    with _reporter(False, quiet) as rep:
        rows = compare_models(loaded, data, n=n, topks=topk or [], fidelity_alphas=_float_list(alphas, "--alphas"),
                              edit_alphas=_float_list(edit_alphas, "--edit-alphas"), steps=steps, inv_steps=inv_steps,
                              random_steps=random_steps, seed=seed, batch_size=batch_size, precision=precision,
                              progress=rep, lpips=lpips)
    notes = [f"LPIPS n/a: {lpips[1]}"] if lpips[0] is None else []
    typer.echo(json.dumps(rows) if json_out else format_table(rows, notes))


@eval_app.command("semantics")
def eval_semantics_cmd(
    data: Annotated[Path, typer.Argument(help="Generated face folder (diffedit data toyfaces), held out from training.", show_default=False)],
    model: ModelOpt = None,
    n: Annotated[int, typer.Option("--n", min=1, max=MAX_FACES, help="Faces to decode (the first N).")] = 100,
    probe_data: Annotated[Optional[Path], typer.Option("--probe-data", help="Labelled face folder for the linear probes (default: DATA).", show_default=False)] = None,
    probe_n: Annotated[int, typer.Option("--probe-n", min=8, max=MAX_FACES, help="Faces for the probes: 3/4 fit, 1/4 held out.")] = 2000,
    steps: Annotated[int, typer.Option("--steps", min=1, max=1000, help="DDIM steps of every decode and inversion.")] = 20,
    oracle: Annotated[Optional[str], typer.Option("--oracle", help="Model whose oracle judges random-x_T decodes (default: --model's own, else the shipped toyfaces).", show_default=False)] = None,
    runs: Annotated[Optional[List[Path]], typer.Option("--run", help="Training run folder (repeatable): evaluate every EMA snapshot (train --keep-every N), one row per step.", show_default=False)] = None,
    seed: SeedOpt = 0, batch_size: BatchOpt = 32, device: DeviceOpt = "auto",
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON instead of tables.")] = False,
    quiet: QuietOpt = False,
):
    """Does z_sem carry the semantics? Linear probes vs a random encoder, random-x_T decodes, x_T's colour share.

    The quick health check of any model (shipped, converted or your own run folder). Per attribute: the
    held-out accuracy of a linear probe on z_sem and on a randomly initialised encoder of the same
    architecture (the floor). Then: oracle labels kept when z_sem is decoded with random x_T, the share of
    the decodes' mean colour that comes from x_T (0 = none), and reconstruction MSE with inferred x_T.

    With --run, every EMA snapshot of the run(s) instead: the scaling curve of a recipe.

    Examples:

      diffedit eval semantics runs/data/heldout --model runs/toy-v --probe-data runs/data/probe --n 100

      diffedit eval semantics runs/data/heldout --run runs/toy-v --run runs/toy-eps --probe-data runs/data/probe
    """
    from .evaluation.benchmarks import format_table
    from .evaluation.semantics import eval_semantics, load_oracle, semantics_curve

    _check_steps([steps], "--steps")
    loaded = _load(model, device, components=("oracle",))
    judge = load_oracle(oracle, loaded)
    if runs:
        rows = []
        with _reporter(False, quiet) as rep:
            for run_dir in runs:
                rows.extend(semantics_curve(run_dir, data, oracle=judge, device=str(next(loaded.autoencoder.parameters()).device), n=n, probe_data=probe_data, probe_n=probe_n,
                                            steps=steps, batch_size=batch_size, seed=seed, progress=rep))
        typer.echo(json.dumps(rows) if json_out else format_table(rows))
        return
    with _reporter(False, quiet) as rep:
        result = eval_semantics(loaded, data, n=n, probe_data=probe_data, probe_n=probe_n, steps=steps,
                                batch_size=batch_size, seed=seed, oracle=judge, progress=rep)
    if json_out:
        typer.echo(json.dumps(result))
        return
    typer.echo(format_table(result["probe"]))
    typer.echo(f"(probe on {result['probe_n']} faces; decodes of {result['n']} faces at {result['steps']} steps)")
    typer.echo(format_table([{"measure": k, "value": v} for k, v in result["summary"].items()], result["notes"]))


@eval_app.command("curve")
def eval_curve_cmd(
    data: Annotated[Path, typer.Argument(help="Generated face folder, held out from training.", show_default=False)],
    runs: Annotated[List[Path], typer.Option("--run", help="Training run folder (repeatable); snapshots from 'train autoencoder --keep-every N'.", show_default=False)],
    n: Annotated[int, typer.Option("--n", min=1, max=MAX_FACES, help="Faces to use (the first N).")] = 32,
    inv_steps: Annotated[int, typer.Option("--inv-steps", min=1, help="Inversion and decoding steps (inferred x_T).")] = 20,
    random_steps: Annotated[int, typer.Option("--random-steps", min=1, help="Decoding steps with random x_T.")] = 20,
    seed: SeedOpt = 0, batch_size: BatchOpt = 32, device: DeviceOpt = "auto",
    precision: Annotated[str, typer.Option("--precision", callback=_precision_choice, help="fp32, fp16 or bf16.")] = "fp32",
    json_out: Annotated[bool, typer.Option("--json", help="Print the rows as JSON instead of a table.")] = False,
    quiet: QuietOpt = False,
):
    """Training curves: reconstruction MSE (inferred / random x_T) of every EMA snapshot and the logged loss.

    Example: diffedit eval curve heldout --run runs/toyfaces-dae --run runs/hdae-u --n 32
    """
    from .evaluation.comparison import training_curve
    from .evaluation.benchmarks import format_table
    from .pipeline import pick_device

    _check_steps([inv_steps], "--inv-steps")
    _check_steps([random_steps], "--random-steps")
    dev = str(pick_device(device))
    rows = []
    with _reporter(False, quiet) as rep:
        for run_dir in runs:
            rows.extend(training_curve(run_dir, data, n=n, inv_steps=inv_steps, random_steps=random_steps, seed=seed,
                                       batch_size=batch_size, device=dev, precision=precision, progress=rep))
    typer.echo(json.dumps(rows) if json_out else format_table(rows))


# -- group-supervised autoencoder (GAE): swap, recombine, train gae, eval gae ------------------------------------

@app.command()
def swap(
    a: Annotated[str, typer.Argument(help="Image(s) A to change: image or latent file, folder, glob.", show_default=False)],
    b: Annotated[str, typer.Argument(help="Image or latent file B that gives the slice(s).", show_default=False)],
    attr: Annotated[Optional[List[str]], typer.Option("--attr", "-a", autocompletion=_complete_slice, help="GAE slice to take from B (e.g. hair, mouth, background); repeatable.", show_default=False)] = None,
    compare: Annotated[bool, typer.Option("--compare", help="Write A | B | result side by side.")] = False,
    residual: Annotated[bool, typer.Option("--residual", help="Add back A's GAE reconstruction error (keeps more of A).")] = False,
    out: OutOpt = None, model: ModelOpt = None, steps: StepsOpt = defaults.STEPS, sampler: SamplerOpt = defaults.SAMPLER, spacing: SpacingOpt = defaults.SPACING, inv_steps: InvStepsOpt = defaults.INV_STEPS,
    batch_size: BatchOpt = 8, device: DeviceOpt = "auto", precision: PrecisionOpt = None,
    skip_existing: SkipOpt = False, overwrite: OverwriteOpt = False, json_lines: JsonOpt = False, quiet: QuietOpt = False,
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
    from .jobs.swapping import swap_files

    loaded = _load(model, device, components=("gae",))
    with _reporter(json_lines, quiet) as rep:
        code = swap_files(loaded, [a], b, attr or [], out,
                          _opts(device, precision, batch_size, 0, steps, inv_steps, skip_existing, overwrite, sampler,
                                spacing=spacing, relative_to=relative_to), rep,
                          compare=compare, residual=residual)
    raise typer.Exit(code)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def recombine(
    ctx: typer.Context,
    base: Annotated[Optional[str], typer.Option("--base", help="Image or latent file giving every slice not named otherwise (and x_T); required unless --list-slices.", show_default=False)] = None,
    random_xt: Annotated[bool, typer.Option("--random-xt", help="Decode with random x_T from --seed instead of the base's inverted x_T.")] = False,
    compare: Annotated[bool, typer.Option("--compare", help="Write base | part images | result side by side.")] = False,
    residual: Annotated[bool, typer.Option("--residual", help="Add back the base's GAE reconstruction error.")] = False,
    list_slices: Annotated[bool, typer.Option("--list-slices", help="List the GAE's slice names and exit.")] = False,
    out: Annotated[Optional[str], typer.Option("--out", "-o", help="Output image (default: diffedit-out/recombine_BASE.png).", show_default=False)] = None,
    model: ModelOpt = None, steps: StepsOpt = defaults.STEPS, sampler: SamplerOpt = defaults.SAMPLER, spacing: SpacingOpt = defaults.SPACING, inv_steps: InvStepsOpt = defaults.INV_STEPS, seed: SeedOpt = 0,
    device: DeviceOpt = "auto", precision: PrecisionOpt = None, overwrite: OverwriteOpt = False,
    json_lines: JsonOpt = False, quiet: QuietOpt = False,
):
    """Recombine attribute slices of several faces: --base a.png --hair b.png --background c.png ...

    Every further option --SLICE FILE (a GAE slice name: identity, hair, mouth, eyes, accessories, background,
    pose for the toy-faces model; see --list-slices) takes that slice from FILE (image or latent file).

    Examples:

      diffedit recombine --base a.png --hair b.png --background c.png --compare --out mix.png

      diffedit recombine --base a.safetensors --mouth b.png --random-xt --seed 3
    """
    from .editing.swapping import parse_part_args
    from .jobs.swapping import recombine_files

    loaded = _load(model, device, components=("gae",))
    if list_slices:
        from .editing.swapping import model_gae

        for name in model_gae(loaded).slice_names:
            typer.echo(name)
        raise typer.Exit(0)
    if base is None:
        raise DiffeditError("give --base IMAGE (the face every slice not named otherwise comes from; see 'diffedit recombine --help')")
    parts = parse_part_args(ctx.args)
    with _reporter(json_lines, quiet) as rep:
        code = recombine_files(loaded, base, parts, out,
                               _opts(device, precision, 1, seed, steps, inv_steps, overwrite=overwrite, sampler=sampler, spacing=spacing), rep,
                               random_xT=random_xt, compare=compare, residual=residual)
    raise typer.Exit(code)


# -- options shared by 'train gae' and 'train gae-joint' (GROUP(C, 1) data) --
GroupDataOpt = Annotated[Optional[Path], typer.Option("--data", help="Image folder of a real dataset (default: generated toy faces).", show_default=False)]
GroupLabelsOpt = Annotated[Optional[Path], typer.Option("--labels", help="Attribute table (CelebA format) of --data; groups are formed by matching labels.", show_default=False)]
GroupAttrsOpt = Annotated[Optional[str], typer.Option("--group-attrs", help="Attribute groups of --labels, e.g. 'hair=Bangs,Black_Hair;mouth=Smiling' (default: the toy-face groups).", show_default=False)]
GroupCountOpt = Annotated[int, typer.Option("--groups", min=1, help="GROUP(C, 1) samples (anchor + one face per group each).")]
GroupSeedOpt = Annotated[int, typer.Option("--group-seed", min=0, max=MAX_SEED, help="Seed of the generated group faces (or of the label matching).")]
ChunkOpt = Annotated[Optional[int], typer.Option("--chunk", min=1, help="Stop this invocation after N steps (resume later).", show_default=False)]


@train_app.command("gae")
def train_gae_cmd(
    ctx: typer.Context,
    run: Annotated[str, typer.Option("--model", "-m", help="Local model folder (or shipped model name) with the autoencoder; gae/ is written into it.", show_default=False)],
    data: GroupDataOpt = None,
    labels: GroupLabelsOpt = None,
    group_attrs: GroupAttrsOpt = None,
    groups: GroupCountOpt = 2000,
    group_seed: GroupSeedOpt = 100,
    slices: Annotated[Optional[str], typer.Option("--slices", help="z_dis slices NAME=SIZE,... (default: every group with --slice-size).", show_default=False)] = None,
    slice_size: Annotated[int, typer.Option("--slice-size", min=1, help="Size of each z_dis slice when --slices is not given.")] = 16,
    hidden: Annotated[int, typer.Option("--hidden", min=8, help="Width of the GAE's MLP blocks.")] = 256,
    steps: Annotated[int, typer.Option("--steps", min=1, help="Total optimisation steps.")] = 8000,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", min=1, max=MAX_BATCH, help="Groups per step.")] = 32,
    lr: Annotated[float, typer.Option("--lr", callback=_check_lr, help="Adam learning rate (paper: 4e-5).")] = 4e-5,
    lambda_ss: Annotated[float, typer.Option("--lambda-ss", help="Weight of the supervised swap loss L_ss (paper: 1).")] = 1.0,
    lambda_ur: Annotated[float, typer.Option("--lambda-ur", help="Weight of the unsupervised reassembly loss L_ur (paper: 0.5).")] = 0.5,
    save_every: Annotated[int, typer.Option("--save-every", min=1, help="Checkpoint every N steps.")] = 1000,
    chunk: ChunkOpt = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the GAE run in --model from its last checkpoint.")] = False,
    seed: TrainSeedOpt = 0, device: DeviceOpt = "auto", quiet: QuietOpt = False,
):
    """Train the group-supervised autoencoder (DiffuseGAE) on z_sem: L_r + lambda_ss L_ss + lambda_ur L_ur, Adam.

    Group codes (z_sem of GROUP(C, 1) faces, from the model's semantic encoder) are cached in
    train_state/gae_codes.pt; --resume continues exactly.

    Examples:

      diffedit train gae --model weights/toyfaces --groups 2000 --steps 8000

      diffedit train gae --model runs/celeba --data celeba/img --labels celeba/list_attr_celeba.txt --group-attrs 'hair=Bangs,Black_Hair,Blond_Hair;mouth=Smiling,Mouth_Slightly_Open'
    """
    from .training.gae import GAETrainConfig, train_gae

    cfg = GAETrainConfig(model=run, data=str(data) if data else None, labels=str(labels) if labels else None,
                         group_attrs=group_attrs, groups=groups, group_seed=group_seed, slices=slices,
                         slice_size=slice_size, hidden=hidden, steps=steps, batch_size=batch_size, lr=lr,
                         lambda_ss=lambda_ss, lambda_ur=lambda_ur, save_every=save_every, seed=seed, device=device)
    progress, log = _train_progress(steps, quiet, "GAE")
    code_task = progress.add_task("encoding group faces", total=groups, loss=float("nan"), ips=0.0)
    with progress:
        val = train_gae(cfg, resume=resume, log=log, stop_after=chunk, given=_given(ctx, run="model"),
                        code_progress=lambda done, total: progress.update(code_task, completed=done, total=total))
    typer.echo("validation losses: " + ", ".join(f"{k} {v:.4f}" for k, v in val.items()))
    typer.echo(f"GAE -> {run}/gae")


@train_app.command("gae-joint")
def train_gae_joint_cmd(
    ctx: typer.Context,
    run: Annotated[str, typer.Option("--model", "-m", help="Source model folder (or shipped model name) with an autoencoder and a trained GAE.", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="New model folder for the fine-tuned autoencoder + GAE (the source is never changed).", show_default=False)],
    data: GroupDataOpt = None,
    labels: GroupLabelsOpt = None,
    group_attrs: GroupAttrsOpt = None,
    groups: GroupCountOpt = 2000,
    group_seed: GroupSeedOpt = 100,
    steps: Annotated[int, typer.Option("--steps", min=1, help="Total optimisation steps.")] = 1000,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", min=1, max=MAX_BATCH, help="Groups per step (each anchor + one face per group).")] = 4,
    lr: Annotated[float, typer.Option("--lr", callback=_check_lr, help="Adam learning rate (paper: 1e-5).")] = 1e-5,
    gamma: Annotated[float, typer.Option("--gamma", help="Weight of the GAE loss L_dis against L_simple (paper: 1).")] = 1.0,
    lambda_ss: Annotated[float, typer.Option("--lambda-ss", help="Weight of L_ss inside L_dis (paper, joint stage: 0.5).")] = 0.5,
    lambda_ur: Annotated[float, typer.Option("--lambda-ur", help="Weight of L_ur inside L_dis (paper, joint stage: 0.5).")] = 0.5,
    save_every: Annotated[int, typer.Option("--save-every", min=1, help="Checkpoint every N steps.")] = 250,
    chunk: ChunkOpt = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the fine-tuning run in --out.")] = False,
    seed: TrainSeedOpt = 0, device: DeviceOpt = "auto", quiet: QuietOpt = False,
):
    """Fine-tune autoencoder and GAE together (DiffuseGAE eq. 12): L_simple (UNet conditioned on the GAE's
    reconstruction of z_sem) + gamma * L_dis, Adam 1e-5.

    Writes a new model folder (autoencoder + GAE + the source's oracle). The latent DDIM and classifier are not
    copied, since they fit the old z_sem: retrain them on --out.

    Example:

      diffedit train gae-joint --model runs/toyfaces --out runs/toyfaces-joint --steps 1000
    """
    from .training.gae_joint import JointTrainConfig, finetune_joint

    cfg = JointTrainConfig(model=run, out=str(out), data=str(data) if data else None,
                           labels=str(labels) if labels else None, group_attrs=group_attrs, groups=groups,
                           group_seed=group_seed, steps=steps, batch_size=batch_size, lr=lr, gamma=gamma,
                           lambda_ss=lambda_ss, lambda_ur=lambda_ur, save_every=save_every, seed=seed, device=device)
    progress, log = _train_progress(steps, quiet, "autoencoder + GAE")
    with progress:
        finetune_joint(cfg, resume=resume, log=log, stop_after=chunk, given=_given(ctx, run="model"))
    typer.echo(f"autoencoder + GAE -> {out} (retrain latent and classifier on it: diffedit train latent --model {out} ...)")


@eval_app.command("gae")
def eval_gae_cmd(
    model: ModelOpt = None,
    probe_n: Annotated[int, typer.Option("--probe-n", min=10, max=MAX_FACES, help="Generated faces (independent groups) for the linear probes, split 80:20.")] = 2000,
    n: Annotated[int, typer.Option("--n", min=1, max=MAX_FACES, help="Held-out face pairs (A, B) for the swap benchmark.")] = 50,
    steps: Annotated[int, typer.Option("--steps", min=1, help="Decoding steps.")] = 20,
    inv_steps: Annotated[int, typer.Option("--inv-steps", min=1, help="Inversion steps for A's x_T.")] = 20,
    residual: Annotated[bool, typer.Option("--residual", help="Swap with A's GAE reconstruction error added back.")] = False,
    no_swap: Annotated[bool, typer.Option("--no-swap", help="Only the perplexity matrix (no decoding).")] = False,
    batch_size: BatchOpt = 16, device: DeviceOpt = "auto",
    precision: Annotated[str, typer.Option("--precision", callback=_precision_choice, help="fp32, fp16 or bf16.")] = "fp32",
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON instead of tables.")] = False,
    quiet: QuietOpt = False,
):
    """GAE benchmark: perplexity matrix (DiffuseGAE Tab. 1), swap success judged by the oracle, reconstruction.

    Example: diffedit eval gae --probe-n 2000 --n 50
    """
    from .evaluation.gae import eval_gae, format_gae_report

    _check_steps([steps], "--steps")
    _check_steps([inv_steps], "--inv-steps")
    loaded = _load(model, device, components=("gae", "oracle"))
    with _reporter(False, quiet) as rep:
        result = eval_gae(loaded, probe_n=probe_n, n=n, steps=steps, inv_steps=inv_steps, batch_size=batch_size,
                          precision=precision, residual=residual, swap=not no_swap, progress=rep)
    typer.echo(json.dumps(result) if json_out else format_gae_report(result))


# -- end of GAE commands -----------------------------------------------------------------------------------------


models_app = typer.Typer(no_args_is_help=False, invoke_without_command=True)
app.add_typer(models_app, name="models")


@models_app.callback(invoke_without_command=True)
def models_cmd(ctx: typer.Context):
    """List the shipped models, the known pretrained ones (cached or not) and other converted models in the cache.

    Examples:

      diffedit models

      diffedit models pull ffhq256      (download + convert now, for offline use)

      diffedit models info ffhq256

      diffedit models rm ffhq256
    """
    if ctx.invoked_subcommand is not None:
        return
    from .io.catalog import list_models
    from .io.registry import HDAE_NOTE

    rows = list_models()
    header = ("name", "what", "px", "components", "size", "source")
    table = [header] + [(r.name, r.what, str(r.resolution or "?"), ",".join(r.components), r.size, r.source) for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
    for row in table:
        typer.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1])
    typer.echo(f"\n{HDAE_NOTE}.\nAny folder or Hub repo of official Diff-AE weights also works: --model org/name[:NAME].")


@models_app.command("info")
def models_info_cmd(name: Annotated[str, typer.Argument(help="A model name (shipped or known), Hub id or folder.")]):
    """Show what a model is and where it comes from: paper, licence, repo, revision, each file's sha256.

    Example: diffedit models info ffhq256
    """
    from .io.catalog import model_info

    for key, value in model_info(name).items():
        if isinstance(value, (dict, list)):
            value = json.dumps(value, indent=2)
        typer.echo(f"{key}: {value}")


@models_app.command("pull")
def models_pull_cmd(name: Annotated[str, typer.Argument(help="A known model (ffhq256) or Hub id org/name[@revision][:NAME].")]):
    """Download and convert a model now, so that later runs work offline (HF_HUB_OFFLINE=1).

    Example: diffedit models pull ffhq256
    """
    from .io.catalog import pull

    typer.echo(f"{name}: {pull(name)}")


@models_app.command("rm")
def models_rm_cmd(name: Annotated[str, typer.Argument(help="A known model or Hub id whose cached files to delete.")]):
    """Delete a model's converted folder and its downloaded files from the caches.

    Example: diffedit models rm ffhq256
    """
    from .io.catalog import human_size, remove

    typer.echo(f"{name}: removed, {human_size(remove(name))} freed")


def _version_callback(value: bool):
    if value:
        typer.echo(f"diffedit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: Annotated[bool, typer.Option("--version", callback=_version_callback, is_eager=True, help="Show the version and exit.")] = False):
    """Real-image editing with diffusion autoencoders."""


@contextlib.contextmanager
def _warnings_as_lines():
    """Python warnings (ours and libraries') reach the terminal as one ``warning:`` line each, once."""
    shown = set()

    def show(message, category, filename, lineno, file=None, line=None):
        text = " ".join(str(message).split())
        if text not in shown:
            shown.add(text)
            sys.stderr.write(f"warning: {text}\n")

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield


THREADS_ENV = "DIFFEDIT_THREADS"
ThreadsOpt = Annotated[Optional[int], typer.Option(
    "--threads", min=1, max=4096, help=f"CPU threads for this run (default: ${THREADS_ENV}, else one per physical "
    "core, the fastest for one process alone). Several processes on one machine: give each cores / processes.",
    show_default=False)]


def _set_threads(value: Optional[int]) -> None:
    """``--threads N`` (or ``$DIFFEDIT_THREADS``): torch's intra-op CPU threads for this run."""
    if value is None:
        env = os.environ.get(THREADS_ENV, "").strip()
        if not env:
            return
        if not env.isdigit() or int(env) < 1:
            raise DiffeditError(f"${THREADS_ENV} must be a whole number >= 1, got '{env}'")
        value = int(env)
    import torch

    torch.set_num_threads(value)


def _with_threads(fn):
    """``fn`` with a ``--threads`` option, applied before it runs (every command has one)."""
    import functools
    import inspect

    signature = inspect.signature(fn, eval_str=True)
    if "threads" in signature.parameters:
        return fn

    @functools.wraps(fn)
    def command(*args, threads: Optional[int] = None, **kwargs):
        _set_threads(threads)
        return fn(*args, **kwargs)

    extra = inspect.Parameter("threads", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=ThreadsOpt)
    params = list(signature.parameters.values())
    command.__signature__ = signature.replace(parameters=params + [extra])
    command.__annotations__ = {p.name: p.annotation for p in command.__signature__.parameters.values()}
    return command


def _add_threads_option(typer_app: typer.Typer) -> None:
    for info in typer_app.registered_commands:
        info.callback = _with_threads(info.callback)
    for group in typer_app.registered_groups:
        _add_threads_option(group.typer_instance)


_add_threads_option(app)


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point: user errors are one line on stderr and a non-zero exit, never a traceback."""
    try:  # recent Typer vendors click as typer._click
        from typer._click import exceptions as click_exc
    except ImportError:  # pragma: no cover - older Typer
        from click import exceptions as click_exc

    command = typer.main.get_command(app)
    empty = _empty_value(sys.argv[1:] if argv is None else list(argv))
    if empty:
        sys.stderr.write(f"error: {empty} is an empty string (an unset shell variable?): give a value or leave it out\n")
        return 2
    try:
        with _warnings_as_lines():
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
        sys.stderr.write(f"error: {flag_message(exc)}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("error: interrupted\n")
        return 130
    except Exception as exc:
        if os.environ.get("DIFFEDIT_DEBUG"):
            raise
        sys.stderr.write(f"error: {_unexpected(exc)}\n")
        return 1


def _empty_value(argv: List[str]) -> Optional[str]:
    """The option (``--out``) or argument ('argument 2') given an empty value, if any: an unset shell variable
    would otherwise mean "the current folder" or "the default" without a word."""
    for k, arg in enumerate(argv):
        if arg.startswith("-") and "=" in arg and not arg.split("=", 1)[1].strip():
            return arg.split("=", 1)[0]
        if arg.strip():
            continue
        before = argv[k - 1] if k else ""
        if before.startswith("-") and "=" not in before and before != "--":
            return before
        return f"argument {k + 1} ('{' '.join(argv[:k])} \"\"')"
    return None


def _unexpected(exc: Exception) -> str:
    """One line for an exception that is not a DiffeditError: the file system's refusal (a name too long, no
    permission, no space) names the file; anything else is a bug, reported as an internal error."""
    if isinstance(exc, OSError) and exc.strerror:
        name = os.fsdecode(exc.filename) if exc.filename is not None else ""
        shown = name if len(name) <= 120 else name[:60] + "..." + name[-40:]
        return (f"'{shown}': " if name else "") + exc.strerror[:1].lower() + exc.strerror[1:]
    return (f"internal error: {type(exc).__name__}: {' '.join(str(exc).split())[:300]} "
            "(set DIFFEDIT_DEBUG=1 for a traceback)")


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    run()
