"""Batched encode / decode / interpolate on a loaded autoencoder, and unconditional sampling (latent DDIM).

All functions are plain library calls (no CLI, no files): images are
(N, 3, S, S) float32 in [-1, 1], z_sem (N, D), x_T (N, 3, S, S).
Precision: ``None``/``"fp32"``, ``"fp16"`` or ``"bf16"``; reduced precision
runs the network under autocast while the DDIM updates stay float32, and the
per-block z_sem projections are computed once per batch, not once per step.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Optional, Sequence, Tuple

import torch

from . import diffusion, runtime
from .errors import DiffeditError
from .io import images as imageio
from .io.models import load_model
from .networks.autoencoder import DiffAEAutoencoder
from .networks.hierarchy import level_styles
from .networks.latent_mlp import LatentMLP
from .sampling import DEFAULT, Sampling, default_precision

StepProgress = Optional[Callable[[int, int], None]]  # (steps done, total)

PRECISIONS = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}


def pick_device(device: str = "auto") -> torch.device:
    """``auto`` -> cuda if available else cpu."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda"):
        raise DiffeditError(f"device '{device}': expected auto, cpu or cuda[:N]", param="device")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DiffeditError("device cuda was requested but no CUDA device is available", param="device")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DiffeditError(f"device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)", param="device")
    return dev


def native_bf16_cpu() -> bool:
    """True when the CPU computes bf16 natively (AVX512-BF16 or AMX), where bf16 autocast is faster than fp32."""
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except (AttributeError, RuntimeError):
        return False


def pick_precision(precision: Optional[str], device: torch.device) -> str:
    """``None``/``"auto"``: :func:`diffedit_cli.sampling.default_precision` for ``device`` (the one rule of the
    command line and the library). Measured cost of bf16: docs/speed.md."""
    if precision in (None, "auto"):
        return default_precision(device.type, device.type == "cpu" and native_bf16_cpu())
    if precision not in PRECISIONS:
        raise DiffeditError(f"precision must be one of fp32, fp16, bf16 (got '{precision}')", param="precision")
    return precision


def autocast(device: torch.device, precision: str):
    dtype = PRECISIONS[precision]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def prepare(autoencoder: DiffAEAutoencoder, device: torch.device, channels_last: bool = True) -> DiffAEAutoencoder:
    """Move to ``device`` in eval mode, without gradients, in channels_last memory format by default.

    channels_last is faster on CPUs (5-15 % in fp32, measured in docs/speed.md) and with fp16 on CUDA; it changes
    fp32 results by rounding only. Inputs are converted to the model's format at each call. On a CPU the process's
    allocator is tuned to reuse freed blocks (:func:`diffedit_cli.runtime.tune_allocator`; results unchanged).
    """
    if torch.device(device).type == "cpu":
        runtime.tune_allocator()
    memory = torch.channels_last if channels_last else torch.contiguous_format
    return autoencoder.to(device, memory_format=memory).eval().requires_grad_(False)


def load(spec: Optional[str] = None, device: str = "auto", components: Sequence[str] = ("latent", "classifier")):
    """A ready model, as every command gets it: ``spec`` resolved as ``model`` is (default: the shipped model),
    loaded with whichever of ``components`` it has, moved to ``device`` (``auto``: cuda if available), the
    autoencoder prepared (:func:`prepare`). Returns a :class:`diffedit_cli.io.models.DiffAEModel`."""
    dev = pick_device(device)
    model = load_model(spec, device="cpu", components=components)
    prepare(model.autoencoder, dev)
    for module in [model.latent, model.classifier, *model.extra.values()]:
        if module is not None:
            module.to(dev)
    return model


def _memory_format(autoencoder: DiffAEAutoencoder) -> torch.memory_format:
    weight = next(p for p in autoencoder.parameters() if p.dim() == 4 and p.shape[1] > 1 and p.shape[2] > 1)
    channels_last = weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()
    return torch.channels_last if channels_last else torch.contiguous_format


def _schedule(autoencoder: DiffAEAutoencoder, steps: int, spacing: Optional[str] = None) -> diffusion.DDIMSchedule:
    """The respaced schedule of the process the autoencoder was trained for (its config's parameterisation);
    ``spacing``: None / ``uniform`` (the model's own) or ``quadratic`` (:data:`diffusion.SAMPLING_SPACINGS`)."""
    return diffusion.Parameterization.of(autoencoder.config).schedule(steps, spacing)


# On a CPU a network call takes at most this many images x pixels: beyond it the activations spill the caches and
# an image costs more, not less (bf16, 2-core Xeon: FFHQ-256 per image 512 ms at batch 1, 629 at 2, 676 at 4;
# FFHQ-128 177 ms at 1, 137 at 4, 165 at 8; docs/speed.md). Larger batches are run as several calls.
CPU_CALL_PIXELS = 2 ** 16


def _calls(x: torch.Tensor, device: torch.device) -> list:
    """The slices of ``x`` (N, C, H, W) that go through the network together: one on a GPU, :data:`CPU_CALL_PIXELS`
    worth of images each on a CPU."""
    n = len(x)
    per_call = n if device.type != "cpu" else max(1, CPU_CALL_PIXELS // (x.shape[-2] * x.shape[-1]))
    return [slice(i, i + per_call) for i in range(0, n, per_call)] if per_call < n else [slice(None)]


def _joined(parts: list) -> torch.Tensor:
    return parts[0] if len(parts) == 1 else torch.cat(parts)


def _model_fn(autoencoder: DiffAEAutoencoder, styles: Sequence[torch.Tensor], device, precision):
    memory = _memory_format(autoencoder)

    def call(x: torch.Tensor, t: torch.Tensor, part: Sequence[torch.Tensor]) -> torch.Tensor:
        with autocast(device, precision):
            return autoencoder(x.contiguous(memory_format=memory), t, styles=part).float().contiguous()

    def fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return _joined([call(x[part], t[part], [s[part] for s in styles]) for part in _calls(x, device)])
    return fn


def _sampler(name: str, table=diffusion.SAMPLERS, what: str = "sampler"):
    """The sampler function ``name`` of ``table`` (decoders; :data:`diffusion.INVERTERS` for inversions)."""
    if name not in table:
        raise ValueError(f"unknown {what} {name!r} (choose from {', '.join(table)})")
    return table[name]


def _callback(progress: StepProgress, total: int):
    if progress is None:
        return None
    return lambda step, x, x0: progress(step + 1, total)


def _ready(autoencoder: DiffAEAutoencoder, precision: Optional[str]) -> Tuple[torch.device, str]:
    device = next(autoencoder.parameters()).device
    return device, pick_precision(precision, device)


@torch.inference_mode()
def encode_semantic(autoencoder: DiffAEAutoencoder, images: torch.Tensor, precision: Optional[str] = None) -> torch.Tensor:
    """images (N, 3, S, S) in [-1, 1] -> z_sem (N, D) float32. ``precision`` None: the device's default."""
    device, precision = _ready(autoencoder, precision)
    memory = _memory_format(autoencoder)
    with autocast(device, precision):
        return _joined([autoencoder.encode(images[part].to(device).contiguous(memory_format=memory)).float()
                        for part in _calls(images, device)])


@torch.inference_mode()
def invert(autoencoder: DiffAEAutoencoder, images: torch.Tensor, z_sem: torch.Tensor,
           sampling: Sampling = DEFAULT, progress: StepProgress = None) -> torch.Tensor:
    """Deterministic inversion (``sampling.inv_sampler``: DDIM, or DPM-Solver++ 2M run towards noise) with
    ``sampling.inv_steps`` network calls on ``sampling.spacing``: images (N, 3, S, S) + z_sem (N, D) -> x_T
    (N, 3, S, S) float32."""
    device, precision = _ready(autoencoder, sampling.precision)
    with autocast(device, precision):
        styles = autoencoder.project_style(z_sem.to(device))
    fn = _model_fn(autoencoder, styles, device, precision)
    schedule = _schedule(autoencoder, sampling.inv_steps, sampling.spacing)
    invert_fn = _sampler(sampling.inv_sampler, diffusion.INVERTERS, "inversion sampler")
    return invert_fn(fn, images.to(device), schedule, callback=_callback(progress, diffusion.inversion_calls(schedule)))


@torch.inference_mode()
def decode(autoencoder: DiffAEAutoencoder, z_sem: torch.Tensor, x_T: torch.Tensor, sampling: Sampling = DEFAULT,
           progress: StepProgress = None) -> torch.Tensor:
    """Decode z_sem (N, D), x_T (N, 3, S, S) -> images (N, 3, S, S) in [-1, 1] with ``sampling.sampler`` in
    ``sampling.steps`` network calls (:data:`diffedit_cli.sampling.OFFICIAL`: the official DDIM)."""
    return decode_levels(autoencoder, z_sem, z_sem, None, x_T, sampling, progress)


# -- decoding with per-level codes (HDAE levels, style mixing; see hierarchy.py) ---------------------------

@torch.inference_mode()
def decode_levels(autoencoder: DiffAEAutoencoder, z_base: torch.Tensor, z_other: torch.Tensor,
                  levels: Optional[Sequence[int]], x_T: torch.Tensor, sampling: Sampling = DEFAULT,
                  progress: StepProgress = None) -> torch.Tensor:
    """Decode (as :func:`decode`) where the blocks of ``levels`` (0-based) follow ``z_other`` and the rest ``z_base``.

    z_base, z_other (N, D); x_T (N, 3, S, S) -> images (N, 3, S, S) in [-1, 1]. ``levels`` None: all
    levels follow ``z_other`` (the same as :func:`decode` of ``z_other``). HDAE codes mix their level
    slices; plain Diff-AE codes mix per-block projections (:func:`hierarchy.level_styles`).
    """
    device, precision = _ready(autoencoder, sampling.precision)
    with autocast(device, precision):
        styles = level_styles(autoencoder, z_base.to(device), z_other.to(device), levels)
    fn = _model_fn(autoencoder, styles, device, precision)
    return _sampler(sampling.sampler)(fn, x_T.to(device), _schedule(autoencoder, sampling.steps, sampling.spacing),
                                      callback=_callback(progress, sampling.steps))


def random_x_T(indices: Sequence[int], image_size: int, seed: int, channels: int = 3) -> torch.Tensor:
    """One Gaussian x_T per image, drawn from ``seed + index`` so batching never changes it: (N, C, S, S)."""
    out = []
    for index in indices:
        gen = torch.Generator().manual_seed(int(seed) + int(index))
        out.append(torch.randn(channels, image_size, image_size, generator=gen))
    return torch.stack(out)


def lerp(a: torch.Tensor, b: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Linear interpolation of codes a, b (D,) at weights w (F,) -> (F, D)."""
    w = w.reshape(-1, *([1] * a.dim()))
    return (1 - w) * a + w * b


def slerp(a: torch.Tensor, b: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation of noise maps a, b (...) at weights w (F,) -> (F, ...), as the official notebook."""
    af, bf = a.flatten().double(), b.flatten().double()
    theta = torch.arccos((af @ bf / (af.norm() * bf.norm())).clamp(-1, 1))
    w = w.double().reshape(-1, 1)
    if theta.abs() < 1e-6:
        out = (1 - w) * af + w * bf
    else:
        out = (torch.sin((1 - w) * theta) * af + torch.sin(w * theta) * bf) / torch.sin(theta)
    return out.float().reshape(len(w), *a.shape)


@torch.inference_mode()
def encode_and_invert(autoencoder: DiffAEAutoencoder, images: torch.Tensor, sampling: Sampling = DEFAULT,
                      batch_size: int = 32, progress: StepProgress = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """images (N, 3, S, S) in [-1, 1], ``batch_size`` at a time -> z_sem (N, D) and x_T (N, 3, S, S) from a
    DDIM inversion with ``sampling``, both float32 on the CPU. ``progress``: (images done, N)."""
    device = next(autoencoder.parameters()).device
    z_sem, x_T = [], []
    for start in range(0, len(images), batch_size):
        batch = images[start:start + batch_size].to(device)
        codes = encode_semantic(autoencoder, batch, sampling.precision)
        z_sem.append(codes.cpu())
        x_T.append(invert(autoencoder, batch, codes, sampling).cpu())
        if progress:
            progress(min(start + batch_size, len(images)), len(images))
    return torch.cat(z_sem), torch.cat(x_T)


@torch.inference_mode()
def encode_dataset(autoencoder: DiffAEAutoencoder, data_u8: torch.Tensor, batch_size: int = 64,
                   progress: Optional[Callable[[int, int], None]] = None, precision: Optional[str] = None) -> torch.Tensor:
    """z_sem of every image: uint8 (N, 3, S, S) -> (N, D) float32 on the CPU (``precision`` None: the device's)."""
    device = next(autoencoder.parameters()).device
    out = []
    for i in range(0, len(data_u8), batch_size):
        images = imageio.to_model_range(data_u8[i:i + batch_size]).to(device)
        out.append(encode_semantic(autoencoder, images, precision).cpu())
        if progress:
            progress(min(i + batch_size, len(data_u8)), len(data_u8))
    return torch.cat(out)


@torch.inference_mode()
def sample_latents(latent_net: LatentMLP, z_T: torch.Tensor, steps: int = 100) -> torch.Tensor:
    """Unconditional z_sem: latent DDIM (no clip, as the official ``render_uncondition``) from z_T (N, D)
    standard normal -> z_sem (N, D), de-normalised with the latent net's ``conds_mean`` / ``conds_std``."""
    cfg = latent_net.config
    sched = diffusion.ddim_schedule(diffusion.make_betas(cfg.beta_schedule, cfg.diffusion_steps), steps)
    device = latent_net.conds_mean.device
    z = diffusion.ddim_sample(lambda x, t: latent_net(x, t).float(), z_T.to(device), sched, clip=False)
    return latent_net.denormalize(z)
