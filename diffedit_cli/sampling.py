"""Unconditional generation: latent DDIM for z_sem, then the image decoder.

Shapes: z_T (N, D) standard normal -> z_sem (N, D) de-normalised with the
latent net's ``conds_mean`` / ``conds_std`` (official ``render_uncondition``:
no clipping in the latent sampler).
"""

from __future__ import annotations

import torch

from . import diffusion
from .networks.latent_mlp import LatentMLP


@torch.inference_mode()
def sample_latents(latent_net: LatentMLP, z_T: torch.Tensor, steps: int = 100) -> torch.Tensor:
    """Latent DDIM (no clip) from z_T (N, D) -> z_sem (N, D), de-normalised."""
    cfg = latent_net.config
    sched = diffusion.ddim_schedule(diffusion.make_betas(cfg.beta_schedule, cfg.diffusion_steps), steps)
    device = latent_net.conds_mean.device
    z = diffusion.ddim_sample(lambda x, t: latent_net(x, t).float(), z_T.to(device), sched, clip=False)
    return latent_net.denormalize(z)
