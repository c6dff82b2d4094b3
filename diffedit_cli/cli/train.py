"""``diffedit data`` and ``diffedit train``: generated datasets and the project's own trainers."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

import typer
from typing_extensions import Annotated

from .options import (BatchOpt, DeviceOpt, MAX_BATCH, MAX_FACES, MAX_SEED, QuietOpt, TrainSeedOpt, check_ema, check_lr)


def data_toyfaces_cmd(
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

    from ..data.toyfaces import write_dataset

    with Progress(disable=quiet, transient=True) as progress:
        task = progress.add_task("rendering faces", total=n)
        write_dataset(out, n, seed=seed, size=size, masks=masks, progress=lambda i: progress.update(task, completed=i + 1))
    typer.echo(f"{n} faces -> {out}")


def given_params(ctx: typer.Context, **renamed: str) -> set:
    """The parameters set on the command line (not left at their defaults), under their config names."""
    def given(name: str) -> bool:  # by the source's name: Typer may vendor its own click
        source = ctx.get_parameter_source(name)
        return source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")

    return {renamed.get(name, name) for name in ctx.params if given(name)}


def train_progress(total: int, quiet: bool, what: str):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    progress = Progress(TextColumn(f"training {what}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("loss {task.fields[loss]:.4f}  {task.fields[ips]:.1f} img/s"), TimeRemainingColumn(),
                        disable=quiet, console=__import__("rich.console", fromlist=["Console"]).Console(stderr=True))
    task = progress.add_task(what, total=total, loss=float("nan"), ips=0.0)

    def log(info: dict) -> None:
        progress.update(task, completed=info["step"], total=info.get("steps"), loss=info["loss"], ips=info.get("images_per_s", 0.0))
    return progress, log


def train_autoencoder_cmd(
    ctx: typer.Context,
    data: Annotated[Path, typer.Option("--data", help="Folder of training images (e.g. from 'diffedit data toyfaces').", show_default=False)],
    run: Annotated[Path, typer.Option("--out", "-o", help="Run folder: checkpoints, samples, train_log.jsonl; also a model folder for --model.", show_default=False)],
    preset: Annotated[str, typer.Option("--preset", help="Architecture: toy64 (~3M params, CPU-trainable) or tiny32 (tests).")] = "toy64",
    arch: Annotated[str, typer.Option("--arch", help="diffae, hdae-e (HDAE(E): level codes from the encoder, whole code to every block) or hdae-u (HDAE(U): U-shaped encoder, level l's code to UNet level l).")] = "diffae",
    steps: Annotated[int, typer.Option("--steps", min=1, help="Total optimisation steps.")] = 10000,
    batch_size: BatchOpt = 32,
    lr: Annotated[float, typer.Option("--lr", callback=check_lr, help="Adam learning rate (paper: 1e-4).")] = 1e-4,
    ema_decay: Annotated[float, typer.Option("--ema-decay", callback=check_ema, help="EMA decay of the weights.")] = 0.999,
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
    from ..training.diffae import AutoencoderTrainConfig, train_autoencoder

    cfg = AutoencoderTrainConfig(data=str(data), run=str(run), preset=preset, arch=arch, steps=steps, batch_size=batch_size, lr=lr,
                                 ema_decay=ema_decay, save_every=save_every, sample_every=sample_every, seed=seed,
                                 precision=precision, device=device, data_limit=data_limit,
                                 keep_every=keep_every, prediction=prediction, schedule=schedule,
                                 zero_terminal_snr=zero_terminal_snr, loss_weight=loss_weight, timesteps=timesteps,
                                 offset_noise=offset_noise, warmup=warmup, lr_schedule=lr_schedule, init_from=init_from,
                                 channels_last=channels_last, part_weights=part_weights, part_dilate=part_dilate,
                                 masks=str(masks) if masks else None)
    progress, log = train_progress(steps, quiet or int(os.environ.get("RANK", "0")) != 0, "autoencoder")
    with progress:
        train_autoencoder(cfg, resume=resume, log=log, stop_after=chunk, given=given_params(ctx))
    typer.echo(f"autoencoder checkpoint -> {run}")


def train_latent_cmd(
    run: Annotated[Path, typer.Option("--model", "-m", help="Model (run) folder holding the trained autoencoder; the latent component is added to it.", show_default=False)],
    data: Annotated[Path, typer.Option("--data", help="Folder of training images (encoded with the model's autoencoder).", show_default=False)],
    preset: Annotated[str, typer.Option("--preset", help="toy (6 layers x 512) or official (10 layers x 2048).")] = "toy",
    steps: Annotated[int, typer.Option("--steps", min=1)] = 20000,
    batch_size: BatchOpt = 256,
    lr: Annotated[float, typer.Option("--lr", callback=check_lr)] = 1e-4,
    seed: TrainSeedOpt = 0, device: DeviceOpt = "auto", quiet: QuietOpt = False,
):
    """Train the latent DDIM on normalised z_sem (L1 loss, constant beta 0.008, MLP + skips; paper Table 6).

    Example: diffedit train latent --model runs/toy --data data/toyfaces/images --steps 20000
    """
    from ..training.diffae import LatentTrainConfig, train_latent

    progress, log = train_progress(steps, quiet, "latent DDIM")
    with progress:
        train_latent(LatentTrainConfig(run=str(run), data=str(data), preset=preset, steps=steps, batch_size=batch_size,
                                       lr=lr, seed=seed, device=device), log=log)
    typer.echo(f"latent DDIM -> {run / 'latent'}")


def train_classifier_cmd(
    run: Annotated[Path, typer.Option("--model", "-m", help="Model (run) folder holding the trained autoencoder; the classifier is added to it.", show_default=False)],
    data: Annotated[Path, typer.Option("--data", help="Folder of training images.", show_default=False)],
    labels: Annotated[Path, typer.Option("--labels", help="Attribute table in the CelebA annotation format.", show_default=False)],
    epochs: Annotated[int, typer.Option("--epochs", min=1)] = 30,
    lr: Annotated[float, typer.Option("--lr", callback=check_lr)] = 1e-3,
    seed: TrainSeedOpt = 0, device: DeviceOpt = "auto", quiet: QuietOpt = False,
):
    """Train linear attribute classifiers on normalised z_sem (paper A.2); they define the edit directions.

    Example: diffedit train classifier --model runs/toy --data data/toyfaces/images --labels data/toyfaces/list_attr.txt
    """
    from ..training.diffae import ClassifierTrainConfig, train_classifier

    progress, log = train_progress(epochs, quiet, "classifier")
    with progress:
        acc = train_classifier(ClassifierTrainConfig(run=str(run), data=str(data), labels=str(labels), epochs=epochs,
                                                     lr=lr, seed=seed, device=device), log=log)
    for name, value in acc.items():
        typer.echo(f"{name:24s} held-out accuracy {value:.3f}")


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
    from ..networks.oracle import OracleConfig
    from ..training.oracle import train_oracle

    acc = train_oracle(out, n_train=n_train, epochs=epochs, config=OracleConfig(image_size=size),
                       log=None if quiet else (lambda row: typer.echo(json.dumps(row), err=True)))
    for name, value in acc.items():
        typer.echo(f"{name:24s} validation accuracy {value:.4f}")


# -- options shared by 'train gae' and 'train gae-joint' (GROUP(C, 1) data) --
GroupDataOpt = Annotated[Optional[Path], typer.Option("--data", help="Image folder of a real dataset (default: generated toy faces).", show_default=False)]


GroupLabelsOpt = Annotated[Optional[Path], typer.Option("--labels", help="Attribute table (CelebA format) of --data; groups are formed by matching labels.", show_default=False)]


GroupAttrsOpt = Annotated[Optional[str], typer.Option("--group-attrs", help="Attribute groups of --labels, e.g. 'hair=Bangs,Black_Hair;mouth=Smiling' (default: the toy-face groups).", show_default=False)]


GroupCountOpt = Annotated[int, typer.Option("--groups", min=1, help="GROUP(C, 1) samples (anchor + one face per group each).")]


GroupSeedOpt = Annotated[int, typer.Option("--group-seed", min=0, max=MAX_SEED, help="Seed of the generated group faces (or of the label matching).")]


ChunkOpt = Annotated[Optional[int], typer.Option("--chunk", min=1, help="Stop this invocation after N steps (resume later).", show_default=False)]


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
    lr: Annotated[float, typer.Option("--lr", callback=check_lr, help="Adam learning rate (paper: 4e-5).")] = 4e-5,
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
    from ..training.gae import GAETrainConfig, train_gae

    cfg = GAETrainConfig(model=run, data=str(data) if data else None, labels=str(labels) if labels else None,
                         group_attrs=group_attrs, groups=groups, group_seed=group_seed, slices=slices,
                         slice_size=slice_size, hidden=hidden, steps=steps, batch_size=batch_size, lr=lr,
                         lambda_ss=lambda_ss, lambda_ur=lambda_ur, save_every=save_every, seed=seed, device=device)
    progress, log = train_progress(steps, quiet, "GAE")
    code_task = progress.add_task("encoding group faces", total=groups, loss=float("nan"), ips=0.0)
    with progress:
        val = train_gae(cfg, resume=resume, log=log, stop_after=chunk, given=given_params(ctx, run="model"),
                        code_progress=lambda done, total: progress.update(code_task, completed=done, total=total))
    typer.echo("validation losses: " + ", ".join(f"{k} {v:.4f}" for k, v in val.items()))
    typer.echo(f"GAE -> {run}/gae")


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
    lr: Annotated[float, typer.Option("--lr", callback=check_lr, help="Adam learning rate (paper: 1e-5).")] = 1e-5,
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
    from ..training.gae_joint import JointTrainConfig, finetune_joint

    cfg = JointTrainConfig(model=run, out=str(out), data=str(data) if data else None,
                           labels=str(labels) if labels else None, group_attrs=group_attrs, groups=groups,
                           group_seed=group_seed, steps=steps, batch_size=batch_size, lr=lr, gamma=gamma,
                           lambda_ss=lambda_ss, lambda_ur=lambda_ur, save_every=save_every, seed=seed, device=device)
    progress, log = train_progress(steps, quiet, "autoencoder + GAE")
    with progress:
        finetune_joint(cfg, resume=resume, log=log, stop_after=chunk, given=given_params(ctx, run="model"))
    typer.echo(f"autoencoder + GAE -> {out} (retrain latent and classifier on it: diffedit train latent --model {out} ...)")
