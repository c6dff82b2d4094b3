"""Training: the Diff-AE autoencoder, the latent DDIM and the attribute classifier.

A training run folder is also a model folder: the trainers write the EMA
weights as components (``autoencoder/``, ``latent/``, ``classifier/``) next to
``model_index.json``, so ``model RUN`` works at any time, and keep resumable
state (raw weights, optimiser, step, RNG) in ``train_state/<component>.pt``
(tensors and plain containers only: read back with ``weights_only=True``).

Objectives (Diff-AE paper):
* autoencoder (Table 5): L_simple = ||eps - eps_theta(x_t, t, Enc(x_0))||^2 with
  t ~ U{0..T-1}, linear betas, Adam, EMA of the weights (the default); the
  parameterisation (eps | v prediction, linear | cosine betas, zero terminal
  SNR), the loss weighting (uniform | min-SNR | P2), the timestep sampling
  (uniform | a high-noise share | a high-noise-first curriculum), offset noise
  and a warmup + cosine learning rate are options (:class:`AutoencoderTrainConfig`);
* latent DDIM (Table 6): L1 loss on eps for normalised z_sem, constant beta
  0.008, MLP with skips, AdamW;
* classifier (appendix A.2): logistic regression per attribute on normalised z_sem.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import torch
import torch.distributed as dist
import torch.distributed as tdist
import torch.nn.functional as F
from torch import nn

from .. import diffusion, pipeline
from ..data.part_masks import load_weight_maps, parse_part_weights
from ..data.toyfaces import read_attr_table
from ..errors import DiffeditError, InputError, opt as named, reason
from ..io.components import SNAPSHOT_DIR
from ..io.files import atomic_write
from ..io.images import is_image_path, load_image, make_grid, save_image, to_model_range
from ..io.models import add_to_index, file_fingerprint, load_component, load_model, save_component
from ..io.outputs import OutputPlan
from ..networks.autoencoder import AutoencoderConfig, DiffAEAutoencoder
from ..networks.classifier import AttributeClassifier, ClassifierConfig
from ..networks.hdae import AnyAutoencoderConfig, autoencoder_config, build_autoencoder
from ..networks.latent_mlp import LatentMLP, LatentMLPConfig
from ..pipeline import decode, pick_device, random_x_T
from ..sampling import OFFICIAL
from .config import TrainConfig

# Scaled-down architectures (the official ones are in convert.PRESETS).
AUTOENCODER_PRESETS: Dict[str, dict] = {
    # ~4 M parameters; trains on a CPU
    "toy64": dict(image_size=64, model_channels=32, channel_mult=(1, 2, 2, 2), num_res_blocks=1,
                  attention_resolutions=(8,), embed_channels=256, enc_out_channels=256,
                  enc_channel_mult=(1, 2, 2, 2, 2), enc_num_res_block=1, dropout=0.0),
    # for tests: a few seconds per step on a CPU
    "tiny32": dict(image_size=32, model_channels=32, channel_mult=(1, 1), num_res_blocks=1,
                   attention_resolutions=(16,), embed_channels=64, enc_out_channels=32,
                   enc_channel_mult=(1, 1, 1), enc_num_res_block=1, dropout=0.0),
}


def autoencoder_arch(preset: str, arch: str = "diffae") -> AutoencoderConfig:
    """The architecture of ``preset`` as ``arch`` (diffae | hdae-e | hdae-u).

    HDAE uses the preset's fields unchanged: UNet, encoder, per-level code width = the preset's
    ``enc_out_channels`` (toy64: 4 levels x 256 = 1024-d code), U-encoder up path with the encoder's
    multipliers, so ``preset toy64 arch hdae-u`` is the same budget (steps, batch, lr) as toy64 Diff-AE.
    """
    if preset not in AUTOENCODER_PRESETS:
        raise DiffeditError(f"unknown preset '{preset}' (choose from {', '.join(AUTOENCODER_PRESETS)})")
    try:
        return autoencoder_config(arch, **AUTOENCODER_PRESETS[preset])
    except ValueError as err:
        raise DiffeditError(f"arch: {err}", param="arch") from None


LATENT_PRESETS: Dict[str, dict] = {
    "toy": dict(num_hid_channels=512, num_layers=6, skip_layers=(1, 2, 3, 4, 5)),
    "official": dict(num_hid_channels=2048, num_layers=10, skip_layers=tuple(range(1, 10))),
}


# -- data ------------------------------------------------------------------

def image_files(folder: Path) -> List[Path]:
    """The images of a training folder, sorted and recursive: the order of :func:`load_image_folder`'s rows."""
    return sorted(p for p in Path(folder).rglob("*") if p.is_file() and is_image_path(p))


def load_image_folder(folder: Path, size: int, limit: Optional[int] = None, progress=None) -> torch.Tensor:
    """All images of a folder (sorted, recursive) as uint8 (N, 3, size, size), preprocessed like ``load_image``."""
    files = image_files(folder)
    if limit:
        files = files[:limit]
    if not files:
        raise InputError(f"no training images found in '{folder}'")
    out = torch.empty(len(files), 3, size, size, dtype=torch.uint8)
    for i, path in enumerate(files):
        out[i] = ((load_image(path, size) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
        if progress:
            progress(i + 1, len(files))
    return out


# -- distributed helpers ---------------------------------------------------

@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device) -> Dist:
    """Join the process group when started by ``torchrun`` (gloo on CPU, nccl on CUDA)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


# -- state files -----------------------------------------------------------

def trained_on(run: Path) -> str:
    """The fingerprint of the autoencoder whose codes a latent DDIM or classifier of ``run`` is trained on."""
    return file_fingerprint(Path(run) / "autoencoder" / "model.safetensors")


def save_train_state(path: Path, state: dict) -> None:
    """Write the resumable state atomically; temporaries a killed run left (SIGKILL cannot clean up) go first."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in [*path.parent.glob(f".{path.name}.*.tmp"), path.with_suffix(".tmp")]:
        stale.unlink(missing_ok=True)
    atomic_write(path, lambda fh: torch.save(state, fh))


def load_train_state(path: Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise DiffeditError(f"cannot resume from '{path}': {reason(err, 160)}") from None


def append_train_log(path: Path, info: dict, every: int = 10, last: bool = False) -> None:
    """Append ``info`` + wall time as one JSON line to ``path`` on every ``every``-th step and the last one.

    The record of a ``quiet`` (e.g. nohup) run: ``tail -f run/train_log.jsonl``.
    """
    if info["step"] % every and not last:
        return
    with open(path, "a") as fh:
        fh.write(json.dumps({**info, "time": time.time()}) + "\n")


def update_ema(ema: nn.Module, model: nn.Module, decay: float) -> None:
    with torch.no_grad():
        for e, p in zip(ema.parameters(), model.parameters()):
            e.lerp_(p.detach(), 1.0 - decay)
        for e, b in zip(ema.buffers(), model.buffers()):
            e.copy_(b)


# -- autoencoder -----------------------------------------------------------

@dataclass
class AutoencoderTrainConfig(TrainConfig):
    RUN_CONTROLS = ("steps", "device", "save_every", "sample_every", "keep_every")

    data: str
    run: str
    preset: str = "toy64"
    arch: str = "diffae"  # diffae | hdae-e | hdae-u (networks/hdae.py), same preset fields
    steps: int = 10000
    batch_size: int = 32
    lr: float = 1e-4
    ema_decay: float = 0.999
    warmup: int = 0
    grad_clip: float = 1.0
    save_every: int = 250
    sample_every: int = 1000
    seed: int = 0
    precision: str = "auto"  # fp32 | bf16 | fp16 (autocast); auto: fp16 on CUDA, fp32 on CPU
    device: str = "auto"
    data_limit: Optional[int] = None
    keep_every: int = 0  # also keep an EMA snapshot every N steps in snapshots/ (training curves); 0: never
    # the diffusion parameterisation (stored in the autoencoder's config.json) and the objective
    prediction: str = "eps"  # eps | v
    schedule: str = "linear"  # linear | cosine
    zero_terminal_snr: bool = False  # Lin et al. 2024 rescaling (needs v); decoding then uses linspace spacing
    loss_weight: str = "uniform"  # uniform | min-snr[:gamma] | p2[:gamma[:k]]
    timesteps: str = "uniform"  # uniform | high[:fraction[:t_min]] | curriculum:steps
    offset_noise: float = 0.0  # noise += offset * N(0, 1) per image and channel
    lr_schedule: str = "constant"  # constant | cosine (to 10 % of lr at the last step), after the warmup
    init_from: Optional[str] = None  # start from this model's autoencoder (its architecture; preset ignored)
    channels_last: bool = False  # channels_last memory format for the network
    part_weights: str = ""  # "mouth=8,eyes=8": per-pixel loss weight inside those (dilated) part masks, 1 elsewhere
    part_dilate: int = 1  # grow the weighted masks by this many pixels
    masks: Optional[str] = None  # the part-mask folder (default: masks/ beside the data folder)


StepLog = Callable[[dict], None]
TIMESTEP_SAMPLERS = ("uniform", "high", "curriculum")


def _parse_spec(spec: str, names: Sequence[str], what: str) -> Tuple[str, List[float]]:
    name, *args = str(spec).split(":")
    try:
        values = [float(a) for a in args]
    except ValueError:
        values = None
    if name not in names or values is None:
        raise DiffeditError(f"{what}: cannot read '{spec}' (use {' | '.join(names)}, with ':'-separated numbers)")
    return name, values


def sample_timesteps(n: int, num_steps: int, spec: str, step: int, generator: torch.Generator) -> torch.Tensor:
    """Training timesteps (n,) int64 in [0, num_steps).

    ``uniform``; ``high[:f[:t0]]``: a share f (0.5) of the batch from [t0, T) (t0 = 0.7 T), the rest uniform;
    ``curriculum:S``: high noise first, t ~ U[lo, T) with lo falling linearly from 0.7 T to 0 over S steps.
    """
    name, args = _parse_spec(spec, TIMESTEP_SAMPLERS, "timestep sampling")
    if name == "uniform":
        return torch.randint(0, num_steps, (n,), generator=generator)
    if name == "high":
        share = args[0] if args else 0.5
        low = int(args[1]) if len(args) > 1 else int(0.7 * num_steps)
        k = int(round(n * share))
        return torch.cat([torch.randint(low, num_steps, (k,), generator=generator),
                          torch.randint(0, num_steps, (n - k,), generator=generator)])
    span = max(1.0, args[0] if args else 1.0)
    low = int(0.7 * num_steps * max(0.0, 1.0 - step / span))
    return torch.randint(low, num_steps, (n,), generator=generator)


def training_weight_maps(cfg: "AutoencoderTrainConfig", size: int, n: int) -> Optional[torch.Tensor]:
    """The run's per-pixel loss weights, float16 (n, 1, size, size) in data order, or None without part_weights."""
    weights = parse_part_weights(cfg.part_weights)
    if not weights:
        return None
    files = image_files(Path(cfg.data))[:n]
    masks = Path(cfg.masks) if cfg.masks else Path(cfg.data).parent / "masks"
    return load_weight_maps(files, masks, weights, size, cfg.part_dilate)


def weighted_mse(out: torch.Tensor, target: torch.Tensor, pixel_weights: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Per-sample mean squared error (N,); with ``pixel_weights`` (N, 1, H, W) a weighted mean over the pixels."""
    err = (out - target).pow(2)
    if pixel_weights is None:
        return err.mean(dim=(1, 2, 3))
    return (err * pixel_weights).sum(dim=(1, 2, 3)) / (pixel_weights.sum(dim=(1, 2, 3)) * err.shape[1])


def learning_rate(cfg: "AutoencoderTrainConfig", step: int) -> float:
    """The learning rate of (0-based) ``step``: linear warmup, then constant or cosine down to 10 % at cfg.steps."""
    if cfg.warmup and step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    if cfg.lr_schedule == "cosine":
        progress = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
        return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))
    return cfg.lr


def check_train_config(cfg: "AutoencoderTrainConfig") -> diffusion.Parameterization:
    """Validate the objective options; returns the parameterisation the run trains (errors name the option)."""
    if cfg.lr_schedule not in ("constant", "cosine"):
        raise DiffeditError(f"lr schedule: unknown '{cfg.lr_schedule}' (use constant or cosine)")
    if not math.isfinite(cfg.offset_noise) or cfg.offset_noise < 0:
        raise DiffeditError(f"offset noise must be a finite number >= 0, got {cfg.offset_noise}")
    _parse_spec(cfg.timesteps, TIMESTEP_SAMPLERS, "timestep sampling")
    parse_part_weights(cfg.part_weights)
    if cfg.part_dilate < 0:
        raise DiffeditError(f"part dilation must be >= 0 pixels, got {cfg.part_dilate}")
    try:
        process = diffusion.Parameterization(beta_schedule=cfg.schedule, prediction=cfg.prediction,
                                             zero_terminal_snr=cfg.zero_terminal_snr,
                                             timestep_spacing="linspace" if cfg.zero_terminal_snr else "official")
        diffusion.loss_weights(torch.tensor([0.5]), cfg.prediction, cfg.loss_weight)
    except ValueError as err:
        raise DiffeditError(str(err)) from None
    if cfg.schedule not in ("linear", "cosine"):
        raise DiffeditError(f"schedule: unknown '{cfg.schedule}' (use linear or cosine)")
    return process


def _initial_autoencoder(cfg: "AutoencoderTrainConfig", process: diffusion.Parameterization) -> Tuple[AutoencoderConfig, Optional[dict]]:
    """The architecture (with the run's parameterisation) and, with ``init_from``, the weights to start from."""
    if cfg.init_from:
        source = load_model(cfg.init_from, components=()).autoencoder
        arch, weights = source.config, source.state_dict()
    else:
        arch, weights = autoencoder_arch(cfg.preset, cfg.arch), None
    return dataclasses.replace(arch, **dataclasses.asdict(process)), weights


@dataclass
class AutoencoderRun:
    """The state of one autoencoder training run (what its checkpoint saves), set up by :func:`setup_autoencoder_run`."""

    cfg: AutoencoderTrainConfig
    arch: AutoencoderConfig
    process: diffusion.Parameterization
    device: torch.device
    dist: Dist
    model: nn.Module
    ema: nn.Module
    opt: torch.optim.Optimizer
    step: int
    resumed: bool

    @property
    def folder(self) -> Path:
        return Path(self.cfg.run)

    @property
    def state_path(self) -> Path:
        return autoencoder_state_path(self.folder)


def autoencoder_state_path(run) -> Path:
    """The resumable state of the autoencoder run in folder ``run``."""
    return Path(run) / "train_state" / "autoencoder.pt"


def setup_autoencoder_run(cfg: AutoencoderTrainConfig, resume: bool = False,
                          given: Optional[Iterable[str]] = None) -> AutoencoderRun:
    """A new run (from the preset or ``init_from``), or the saved run of ``cfg.run`` with this call's run controls."""
    device = pick_device(cfg.device)
    # checked before the ranks meet (init_distributed), so no rank has written anything yet
    state_path = autoencoder_state_path(cfg.run)
    if state_path.exists() and not resume:
        raise DiffeditError(f"'{cfg.run}' already holds a training run; pass {named('resume')} to continue it")
    if resume and not state_path.exists():
        raise DiffeditError(f"nothing to resume: '{state_path}' not found")
    if not resume:  # a trained model or other files are never replaced
        OutputPlan([cfg.data] if cfg.data else []).fresh_folder(Path(cfg.run), f"a training run (it holds none to {named('resume')})")
    dist = init_distributed(device)
    if device.type == "cuda" and dist.world > 1:
        device = torch.device("cuda", dist.local_rank)
    if cfg.preset not in AUTOENCODER_PRESETS:
        raise DiffeditError(f"unknown preset '{cfg.preset}' (choose from {', '.join(AUTOENCODER_PRESETS)})")
    state = load_train_state(state_path) if resume else None
    if state is not None:
        cfg = cfg.resumed(state["config"], given)
    process = check_train_config(cfg)
    if state is not None and "arch" in state:
        arch, init_weights = AnyAutoencoderConfig.from_dict(state["arch"]), None
    else:  # a new run, or a state saved before it recorded its architecture (the preset + the recipe's process)
        arch, init_weights = _initial_autoencoder(cfg, process)
    torch.manual_seed(cfg.seed)
    model = build_autoencoder(arch).to(device)
    if init_weights is not None:
        model.load_state_dict(init_weights)
    model = model.to(memory_format=torch.channels_last if cfg.channels_last else torch.contiguous_format)
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    step = 0
    if state is not None:
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        opt.load_state_dict(state["optimizer"])
        step = int(state["step"])
    return AutoencoderRun(cfg, arch, process, device, dist, model, ema, opt, step, resumed=state is not None)


def noised_batch(r: AutoencoderRun, data: torch.Tensor, pixel_weights: Optional[torch.Tensor],
                 alphas_cumprod: torch.Tensor, size: int) -> Dict[str, Optional[torch.Tensor]]:
    """The training batch of step ``r.step`` (a fixed function of seed, step and rank, so a resume repeats it):
    x0 and x_t (B, 3, S, S) in [-1, 1] / noised, t (B,), the prediction target, per-sample loss weights (B,)
    and the per-pixel weights (B, 1, S, S) or None."""
    cfg = r.cfg
    gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + r.step * 97 + r.dist.rank)
    idx = torch.randint(0, len(data), (size,), generator=gen)
    x0 = to_model_range(data[idx]).to(r.device)
    pixel_w = None if pixel_weights is None else pixel_weights[idx].float().to(r.device)
    t = sample_timesteps(size, r.arch.diffusion_steps, cfg.timesteps, r.step, gen).to(r.device)
    noise = torch.randn(x0.shape, generator=gen)
    if cfg.offset_noise:
        noise = noise + cfg.offset_noise * torch.randn(*x0.shape[:2], 1, 1, generator=gen)
    noise = noise.to(r.device)
    a = alphas_cumprod[t]
    return {"x0": x0, "x_t": diffusion.q_sample(x0, noise, a), "t": t,
            "target": diffusion.prediction_target(x0, noise, a, r.process.prediction),
            "weights": diffusion.loss_weights(a, r.process.prediction, cfg.loss_weight).to(r.device),
            "pixel_weights": pixel_w}


def save_autoencoder_checkpoint(r: AutoencoderRun) -> None:
    """The resumable state, the EMA weights as the run's ``autoencoder/`` and, every ``keep_every`` steps, a snapshot."""
    in_sync = ranks_in_sync(r.model, r.dist)
    if not r.dist.main:
        return
    cfg, step = r.cfg, r.step
    save_train_state(r.state_path, {"config": cfg.to_dict(), "arch": r.arch.to_dict(), "step": step,
                                    "model": r.model.state_dict(), "ema": r.ema.state_dict(),
                                    "optimizer": r.opt.state_dict(), "world_size": r.dist.world, "ranks_in_sync": in_sync})
    record = {"training": {**_recipe(cfg, r.arch), "steps": step}}
    save_component(r.ema, r.folder / "autoencoder", "autoencoder", extra=record)
    add_to_index(r.folder, r.folder.name, "autoencoder")
    if cfg.keep_every and step and step % cfg.keep_every == 0:
        save_component(r.ema, r.folder / SNAPSHOT_DIR / f"autoencoder_{step:07d}", "autoencoder", extra=record)


def train_autoencoder(cfg: AutoencoderTrainConfig, resume: bool = False, log: Optional[StepLog] = None,
                      stop_after: Optional[int] = None, given: Optional[Iterable[str]] = None) -> Path:
    """Train (or resume) a Diff-AE autoencoder; returns the run folder.

    ``log`` gets a dict per step (step, loss, images_per_s). ``stop_after``
    ends this invocation after that many steps (chunked training on a CPU). ``given``: the run controls
    a resume takes from ``cfg`` (:meth:`TrainConfig.resumed`; default all).
    """
    r = setup_autoencoder_run(cfg, resume, given)
    cfg, device, dist, run = r.cfg, r.device, r.dist, r.folder
    precision = cfg.precision if cfg.precision != "auto" else ("fp16" if device.type == "cuda" else "fp32")
    memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
    train_model: nn.Module = DenoiseStep(r.model)
    if dist.world > 1:
        train_model = nn.parallel.DistributedDataParallel(train_model, device_ids=[device.index] if device.type == "cuda" else None)
    data = load_image_folder(Path(cfg.data), r.arch.image_size, cfg.data_limit)
    pixel_weights = training_weight_maps(cfg, r.arch.image_size, len(data))
    alphas_cumprod = r.process.alphas_cumprod().float().to(device)
    scaler = torch.amp.GradScaler("cuda", enabled=precision == "fp16" and device.type == "cuda")
    amp_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision)
    per_rank = max(1, cfg.batch_size // dist.world)
    fixed = to_model_range(data[:8]).to(device)  # sample-grid inputs
    if dist.main:
        run.mkdir(parents=True, exist_ok=True)
        if not r.resumed:
            (run / "train_log.jsonl").unlink(missing_ok=True)  # a new run, a new record
        (run / "train_config.json").write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")

    end = cfg.steps if stop_after is None else min(cfg.steps, r.step + stop_after)
    r.model.train()
    tick = time.perf_counter()
    while r.step < end:
        batch = noised_batch(r, data, pixel_weights, alphas_cumprod, per_rank)
        for group in r.opt.param_groups:
            group["lr"] = learning_rate(cfg, r.step)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            out = train_model(batch["x_t"].contiguous(memory_format=memory_format), batch["t"],
                              batch["x0"].contiguous(memory_format=memory_format))
            loss = (batch["weights"] * weighted_mse(out.float(), batch["target"], batch["pixel_weights"])).mean()
        r.opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(r.opt)
        if cfg.grad_clip:
            nn.utils.clip_grad_norm_(r.model.parameters(), cfg.grad_clip)
        scaler.step(r.opt)
        scaler.update()
        update_ema(r.ema, r.model, cfg.ema_decay)
        r.step += 1
        now = time.perf_counter()
        info = {"step": r.step, "steps": cfg.steps, "loss": loss.item(),
                "images_per_s": per_rank * dist.world / max(now - tick, 1e-9)}
        if log is not None and dist.main:
            log(info)
        if dist.main:
            append_train_log(run / "train_log.jsonl", info, last=r.step == end)
        tick = now
        if r.step % cfg.save_every == 0 or r.step == end or (cfg.keep_every and r.step % cfg.keep_every == 0):
            save_autoencoder_checkpoint(r)
        if dist.main and cfg.sample_every and (r.step % cfg.sample_every == 0 or r.step == cfg.steps):
            write_sample_grid(r.ema, fixed, run / "samples" / f"autoencoder_{r.step:07d}.png", device)
    if r.step == 0:
        save_autoencoder_checkpoint(r)
    return run


def _recipe(cfg: AutoencoderTrainConfig, arch: AutoencoderConfig) -> dict:
    """The training recipe recorded in the autoencoder's config.json (model cards quote it).

    ``arch`` is the network trained: with ``init_from`` it comes from that model, so the preset is not recorded.
    """
    recipe = {"preset": None if cfg.init_from else cfg.preset, "arch": arch.arch}
    keys = ("data", "batch_size", "lr", "lr_schedule", "warmup", "ema_decay", "precision", "seed",
            "prediction", "schedule", "zero_terminal_snr", "loss_weight", "timesteps", "offset_noise", "init_from", "part_weights", "part_dilate")
    return {**recipe, **{k: getattr(cfg, k) for k in keys}}


def ranks_in_sync(model: nn.Module, dist: Dist) -> bool:
    """True when every process holds the same weights (checked through a parameter digest)."""
    if dist.world == 1:
        return True

    digest = torch.stack([p.detach().double().sum() for p in model.parameters()]).sum().cpu().reshape(1)
    gathered = [torch.zeros_like(digest) for _ in range(dist.world)]
    tdist.all_gather(gathered, digest)
    return all(torch.equal(g, gathered[0]) for g in gathered)


class DenoiseStep(nn.Module):
    """eps_theta(x_t, t, Enc(x_0)) in one forward, so DDP synchronises encoder and UNet gradients."""

    def __init__(self, model: DiffAEAutoencoder):
        super().__init__()
        self.model = model

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        return self.model(x_t, t, z_sem=self.model.encode(x0))


@torch.no_grad()
def write_sample_grid(ema: DiffAEAutoencoder, x0: torch.Tensor, path: Path, device: torch.device, steps: int = 20) -> None:
    """Row 1: inputs; row 2: decodes of their z_sem from fixed random x_T (the official sampler, fp32)."""
    z = ema.encode(x0)
    x_T = random_x_T(range(len(x0)), ema.config.image_size, seed=0).to(device)
    rec = decode(ema, z, x_T, OFFICIAL.replace(steps=steps))
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(make_grid(torch.cat([x0.cpu(), rec.cpu()]), ncol=len(x0)), path)


# -- codes of a dataset ----------------------------------------------------


def dataset_codes(run: Path, data: Path, image_size: int, autoencoder: DiffAEAutoencoder,
                  progress=None) -> Tuple[torch.Tensor, List[str]]:
    """z_sem of a training folder, cached in ``run/train_state/codes.pt`` (keyed by the autoencoder weights)."""
    files = image_files(data)
    cache = run / "train_state" / "codes.pt"
    key = file_fingerprint(run / "autoencoder" / "model.safetensors") if (run / "autoencoder" / "model.safetensors").exists() else ""
    if cache.exists():
        saved = load_train_state(cache)
        if saved.get("key") == key and saved.get("files") == [str(f.relative_to(data)) for f in files]:
            return saved["z_sem"], saved["files"]
    z = pipeline.encode_dataset(autoencoder, load_image_folder(data, image_size), progress=progress,
                                precision="fp32")  # training targets in full precision
    names = [str(f.relative_to(data)) for f in files]
    save_train_state(cache, {"key": key, "files": names, "z_sem": z})
    return z, names


# -- latent DDIM -----------------------------------------------------------

@dataclass
class LatentTrainConfig(TrainConfig):
    run: str
    data: str
    preset: str = "toy"
    steps: int = 20000
    batch_size: int = 256
    lr: float = 1e-4
    weight_decay: float = 0.01
    ema_decay: float = 0.999
    seed: int = 0
    device: str = "auto"


def train_latent(cfg: LatentTrainConfig, log: Optional[StepLog] = None) -> Path:
    """Train the latent DDIM on normalised z_sem of ``data`` (codes from ``run``'s autoencoder)."""
    device = pick_device(cfg.device)
    run = Path(cfg.run)
    ae = load_component(run / "autoencoder", "autoencoder", str(device))
    z, _ = dataset_codes(run, Path(cfg.data), ae.config.image_size, ae)
    if cfg.preset not in LATENT_PRESETS:
        raise DiffeditError(f"unknown latent preset '{cfg.preset}' (choose from {', '.join(LATENT_PRESETS)})")
    torch.manual_seed(cfg.seed)
    net = LatentMLP(LatentMLPConfig(num_channels=z.shape[1], **LATENT_PRESETS[cfg.preset])).to(device)
    net.conds_mean.copy_(z.mean(0, keepdim=True))
    net.conds_std.copy_(z.std(0, keepdim=True).clamp_min(1e-6))
    zn = net.normalize(z.to(device))
    ema = copy.deepcopy(net).eval().requires_grad_(False)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    (run / "train_log_latent.jsonl").unlink(missing_ok=True)  # a new run, a new record
    betas = diffusion.make_betas(net.config.beta_schedule, net.config.diffusion_steps)
    alphas = torch.cumprod(1 - betas, 0).float().to(device)
    gen = torch.Generator().manual_seed(cfg.seed)
    tick = time.perf_counter()
    for step in range(1, cfg.steps + 1):
        idx = torch.randint(0, len(zn), (cfg.batch_size,), generator=gen)
        x0 = zn[idx.to(device)]
        t = torch.randint(0, net.config.diffusion_steps, (cfg.batch_size,), generator=gen).to(device)
        noise = torch.randn(x0.shape, generator=gen).to(device)
        loss = F.l1_loss(net(diffusion.q_sample(x0, noise, alphas[t]), t), noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        update_ema(ema, net, cfg.ema_decay)
        now = time.perf_counter()
        info = {"step": step, "steps": cfg.steps, "loss": loss.item(), "images_per_s": cfg.batch_size / max(now - tick, 1e-9)}
        tick = now
        if log is not None:
            log(info)
        append_train_log(run / "train_log_latent.jsonl", info, last=step == cfg.steps)
    save_component(ema, run / "latent", "latent", extra={"training": {**cfg.to_dict(), "codes": len(z),
                                                                      "autoencoder_fingerprint": trained_on(run)}})
    add_to_index(run, run.name, "latent")
    return run


# -- attribute classifier --------------------------------------------------

@dataclass
class ClassifierTrainConfig(TrainConfig):
    run: str
    data: str
    labels: str
    epochs: int = 30
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-4
    seed: int = 0
    device: str = "auto"


def train_classifier(cfg: ClassifierTrainConfig, log: Optional[StepLog] = None) -> Dict[str, float]:
    """Logistic regression per attribute on normalised z_sem; returns held-out accuracy per attribute.

    ``labels`` is an attribute table in the CelebA annotation format; its file
    names are matched to images of ``data`` by relative path or file name. The
    last 10 % (by file order) is held out for the reported accuracy.
    """
    device = pick_device(cfg.device)
    run = Path(cfg.run)
    ae = load_component(run / "autoencoder", "autoencoder", str(device))
    z, files = dataset_codes(run, Path(cfg.data), ae.config.image_size, ae)
    names, label_files, labels = read_attr_table(Path(cfg.labels))
    row = {f: i for i, f in enumerate(label_files)}
    row.update({Path(f).name: i for i, f in enumerate(label_files)})
    keep = [(k, row[f] if f in row else row.get(Path(f).name)) for k, f in enumerate(files)]
    keep = [(k, r) for k, r in keep if r is not None]
    if not keep:
        raise InputError(f"no image of '{cfg.data}' is listed in '{cfg.labels}'")
    z = z[[k for k, _ in keep]].to(device)
    y = torch.as_tensor(labels[[r for _, r in keep]], dtype=torch.float32, device=device)
    n_val = max(1, len(z) // 10)
    clf = AttributeClassifier(ClassifierConfig(num_features=z.shape[1], attributes=list(names))).to(device)
    clf.conds_mean.copy_(z[:-n_val].mean(0, keepdim=True))
    clf.conds_std.copy_(z[:-n_val].std(0, keepdim=True).clamp_min(1e-6))
    opt = torch.optim.Adam(clf.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed)
    z_train, y_train = z[:-n_val], y[:-n_val]
    steps_per_epoch = max(1, len(z_train) // cfg.batch_size)
    total = cfg.epochs * steps_per_epoch
    step = 0
    for _ in range(cfg.epochs):
        perm = torch.randperm(len(z_train), generator=gen).to(device)
        for i in range(steps_per_epoch):
            idx = perm[i * cfg.batch_size:(i + 1) * cfg.batch_size]
            loss = F.binary_cross_entropy_with_logits(clf(z_train[idx]), y_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            if log is not None:
                log({"step": step, "steps": total, "loss": loss.item(), "images_per_s": 0.0})
    with torch.no_grad():
        acc = ((clf(z[-n_val:]) > 0).float() == y[-n_val:]).float().mean(0)
    accuracy = {n: round(float(a), 4) for n, a in zip(names, acc)}
    save_component(clf.eval(), run / "classifier", "classifier",
                   extra={"training": {**cfg.to_dict(), "codes": len(z), "autoencoder_fingerprint": trained_on(run)},
                          "heldout_accuracy": accuracy})
    add_to_index(run, run.name, "classifier")
    return accuracy
