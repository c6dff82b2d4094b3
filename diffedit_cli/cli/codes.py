"""Commands that move between images and codes: encode, decode, interpolate, sample, align, convert."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from typing_extensions import Annotated

from ..sampling import DEFAULT
from .options import (ManifestOpt, ScaleOut, ShardOpt, NoCacheOpt, AlignFaceOpt, AlignOpt, AlignedOpt, BatchOpt, DetectorOpt, DeviceOpt, FaceOpt, FaceWeightsOpt, InvStepsOpt, InvSamplerOpt, JsonOpt, LevelsOpt, ModelOpt, OutOpt, OverwriteOpt, PrecisionOpt, QuietOpt, RelativeToOpt, SamplerOpt, SeedOpt, SkipOpt, SpacingOpt, StepsOpt, face_options, levels_of, ready_model, reporter_for, run_options)


def encode_cmd(
    inputs: Annotated[List[str], typer.Argument(help="Images, folders, globs or '-' (paths on stdin).", show_default=False)],
    out: OutOpt = None, model: ModelOpt = None, inv_steps: InvStepsOpt = DEFAULT.inv_steps, inv_sampler: InvSamplerOpt = DEFAULT.inv_sampler,
    spacing: SpacingOpt = DEFAULT.spacing, batch_size: BatchOpt = 8,
    device: DeviceOpt = "auto", precision: PrecisionOpt = None, skip_existing: SkipOpt = False,
    overwrite: OverwriteOpt = False, no_cache: NoCacheOpt = False, shard: ShardOpt = None, manifest: ManifestOpt = None, json_lines: JsonOpt = False, quiet: QuietOpt = False,
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
    from ..jobs.filejobs import encode_files

    scale = ScaleOut(shard, manifest, device)
    faces = face_options(align, aligned, face, detector, face_weights, scale.device)
    loaded = ready_model(model, scale.device, components=())
    run_opts = run_options(scale.device, precision, batch_size, 0, inv_steps=inv_steps, skip_existing=skip_existing,
                           overwrite=overwrite, inv_sampler=inv_sampler, spacing=spacing, relative_to=relative_to, cache=not no_cache,
                           shard=scale.shard)
    with reporter_for(json_lines, quiet) as rep:
        scale.attach(rep, skip_existing, overwrite, loaded)
        if faces is not None:
            from ..jobs.photos import encode_photos

            code = encode_photos(loaded, inputs, out, run_opts, faces, rep)
        else:
            code = encode_files(loaded, inputs, out, run_opts, rep)
    raise typer.Exit(code)


def decode_cmd(
    inputs: Annotated[List[str], typer.Argument(help="Latent files or images (encoded on the fly), folders, globs, '-'.", show_default=False)],
    out: OutOpt = None, model: ModelOpt = None, steps: StepsOpt = DEFAULT.steps, sampler: SamplerOpt = DEFAULT.sampler, spacing: SpacingOpt = DEFAULT.spacing, inv_steps: InvStepsOpt = DEFAULT.inv_steps, inv_sampler: InvSamplerOpt = DEFAULT.inv_sampler,
    random_xt: Annotated[bool, typer.Option("--random-xt", help="Ignore the stored x_T and draw it from --seed.")] = False,
    seed: SeedOpt = 0, batch_size: BatchOpt = 8, device: DeviceOpt = "auto", precision: PrecisionOpt = None,
    skip_existing: SkipOpt = False, overwrite: OverwriteOpt = False, no_cache: NoCacheOpt = False, shard: ShardOpt = None, manifest: ManifestOpt = None, json_lines: JsonOpt = False, quiet: QuietOpt = False,
    relative_to: RelativeToOpt = None,
):
    """Decode (z_sem, x_T) to images with deterministic DDIM.

    Given images instead of latent files, this reconstructs them (encode + decode).

    Example: diffedit decode latents/ --out recon/ --steps 100
    """
    from ..jobs.filejobs import decode_files

    scale = ScaleOut(shard, manifest, device)
    loaded = ready_model(model, scale.device, components=())
    run_opts = run_options(scale.device, precision, batch_size, seed, steps, inv_steps, skip_existing, overwrite, sampler,
                           inv_sampler=inv_sampler, spacing=spacing, relative_to=relative_to, cache=not no_cache, shard=scale.shard)
    with reporter_for(json_lines, quiet) as rep:
        scale.attach(rep, skip_existing, overwrite, loaded)
        code = decode_files(loaded, inputs, out, run_opts, rep, random_xT=random_xt)
    raise typer.Exit(code)


def interpolate_cmd(
    a: Annotated[str, typer.Argument(help="First image or latent file.", show_default=False)],
    b: Annotated[str, typer.Argument(help="Second image or latent file.", show_default=False)],
    frames: Annotated[int, typer.Option("--frames", "-n", min=2, max=1000, help="Number of frames including A and B.")] = 10,
    out: Annotated[Optional[str], typer.Option("--out", "-o", help="Output folder (default: diffedit-out/interp_A_B).", show_default=False)] = None,
    model: ModelOpt = None, steps: StepsOpt = DEFAULT.steps, sampler: SamplerOpt = DEFAULT.sampler, spacing: SpacingOpt = DEFAULT.spacing, inv_steps: InvStepsOpt = DEFAULT.inv_steps, inv_sampler: InvSamplerOpt = DEFAULT.inv_sampler, batch_size: BatchOpt = 8,
    device: DeviceOpt = "auto", precision: PrecisionOpt = None, overwrite: OverwriteOpt = False, no_cache: NoCacheOpt = False,
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
    from ..jobs.generate import interpolate_pair

    faces = face_options(align, aligned, face, detector, face_weights, device)
    loaded = ready_model(model, device, components=())
    run_opts = run_options(device, precision, batch_size, 0, steps, inv_steps, overwrite=overwrite, sampler=sampler, inv_sampler=inv_sampler, spacing=spacing, cache=not no_cache)
    with reporter_for(json_lines, quiet) as rep:
        if faces is not None:
            from ..jobs.photos import interpolate_photos

            code = interpolate_photos(loaded, a, b, out, frames, run_opts, faces, rep, levels=levels_of(levels, loaded))
        else:
            code = interpolate_pair(loaded, a, b, out, frames, run_opts, rep, levels=levels_of(levels, loaded))
    raise typer.Exit(code)


def sample_cmd(
    n: Annotated[int, typer.Option("--n", "-n", min=1, max=100000, help="Number of images.")] = 16,
    where: Annotated[Optional[List[str]], typer.Option("--where", help="Keep only samples the classifier labels with this attribute (No_X: without); repeatable.", show_default=False)] = None,
    out: Annotated[Optional[str], typer.Option("--out", "-o", help="Output folder (default: diffedit-out/samples).", show_default=False)] = None,
    model: ModelOpt = None, steps: StepsOpt = DEFAULT.steps, sampler: SamplerOpt = DEFAULT.sampler, spacing: SpacingOpt = DEFAULT.spacing,
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
    from ..jobs.generate import sample_images

    loaded = ready_model(model, device, components=("latent", "classifier"))
    with reporter_for(json_lines, quiet) as rep:
        code = sample_images(loaded, n, out, run_options(device, precision, batch_size, seed, steps, skip_existing=skip_existing,
                                                   overwrite=overwrite, sampler=sampler, spacing=spacing), rep,
                             where or [], latent_steps)
    raise typer.Exit(code)


def convert_cmd(
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

    from ..io.convert import convert_checkpoints

    console = Console(stderr=True, highlight=False, soft_wrap=True)
    written = convert_checkpoints(checkpoints, out, weights=weights, preset=preset, image_size=image_size,
                                  trust_pickle=trust_pickle, name=name, overwrite=overwrite, log=console.print)
    for comp, source in written.items():
        typer.echo(f"{comp}: {source} -> {out / comp}")


def align_cmd(
    inputs: Annotated[List[str], typer.Argument(help="Photos, folders, globs or '-' (paths on stdin).", show_default=False)],
    out: OutOpt = None,
    size: Annotated[Optional[int], typer.Option("--size", min=8, max=4096, help="Crop size in pixels (default: the model's image size).", show_default=False)] = None,
    model: ModelOpt = None, face: AlignFaceOpt = "all", detector: DetectorOpt = "auto", face_weights: FaceWeightsOpt = None,
    device: DeviceOpt = "auto", skip_existing: SkipOpt = False, overwrite: OverwriteOpt = False, shard: ShardOpt = None, manifest: ManifestOpt = None,
    json_lines: JsonOpt = False, quiet: QuietOpt = False, relative_to: RelativeToOpt = None,
):
    """Detect faces in photos and write FFHQ-aligned crops <name>_<NN>.png (NN: face number, 0 = leftmost).

    The alignment (quad, crop<->photo affines, landmarks, detector) is stored in each PNG's
    'diffedit_alignment' text chunk.

    Examples:

      diffedit align photos/ --out aligned/ --size 256

      diffedit align group.jpg --face largest --detector dlib
    """
    from ..jobs.photos import align_files, warn_if_not_photo_model

    scale = ScaleOut(shard, manifest, device)
    faces = face_options(True, False, face, detector, face_weights, scale.device)
    loaded = None
    if size is None:
        from ..io.models import load_model

        loaded = load_model(model, device="cpu", components=())
        warn_if_not_photo_model(loaded)
        size = loaded.image_size
    with reporter_for(json_lines, quiet) as rep:
        scale.attach(rep, skip_existing, overwrite, loaded)
        code = align_files(inputs, out, size, faces, run_options(scale.device, None, 1, 0, skip_existing=skip_existing,
                                                                 overwrite=overwrite, relative_to=relative_to,
                                                                 shard=scale.shard), rep)
    raise typer.Exit(code)
