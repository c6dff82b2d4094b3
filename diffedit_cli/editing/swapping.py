"""Attribute swap and recombination with the group-supervised autoencoder (GAE) of a model.

Code level (:func:`swap_codes`, :func:`recombine_codes`): z_sem -> z_dis = GAE.encode(z_sem), replace named
slices with those of other images, z_sem' = GAE.decode(z_dis'). The file-level runs behind ``diffedit swap``
and ``diffedit recombine`` are :mod:`diffedit_cli.jobs.swapping`.

With ``residual=True`` the GAE's own reconstruction error is added back:
z_sem' = z_sem + GAE.decode(z_dis') - GAE.decode(z_dis), so everything the GAE does not reconstruct of A is
kept (the paper decodes GAE.decode(z_dis') directly, the default).
"""

from __future__ import annotations

from typing import Dict, Sequence

import torch

from ..errors import ModelError
from ..io.models import DiffAEModel
from ..networks.gae import GroupAutoencoder, swap_slices


def model_gae(model: DiffAEModel) -> GroupAutoencoder:
    """The model's GAE, checked to have been trained on this autoencoder's codes."""
    gae = model.component("gae")
    width = model.autoencoder.config.enc_out_channels
    if gae.config.z_sem_dim != width:
        raise ModelError(f"the GAE of '{model.model_id}' expects z_sem of width {gae.config.z_sem_dim}, "
                         f"the autoencoder gives {width}")
    return gae  # trained on this autoencoder's codes: load_model checks every component's record


@torch.no_grad()
def swap_codes(gae: GroupAutoencoder, z_a: torch.Tensor, z_b: torch.Tensor, slices: Sequence[str],
               residual: bool = False) -> torch.Tensor:
    """z_sem of A (N, D) with the ``slices`` of B (N, D) or (D,) -> z_sem (N, D), on A's device."""
    device, back = gae.z_mean.device, z_a.device
    z_a = z_a.to(device).float()
    d_a = gae.encode(z_a)
    d_b = gae.encode(z_b.to(device).float().reshape(-1, z_a.shape[-1]))
    ranges = gae.slice_ranges()
    out = gae.decode(swap_slices(d_a, d_b, [ranges[gae.resolve_slice(s)] for s in slices]))
    if residual:
        out = z_a + out - gae.decode(d_a)
    return out.to(back)


@torch.no_grad()
def recombine_codes(gae: GroupAutoencoder, z_base: torch.Tensor, parts: Dict[str, torch.Tensor],
                    residual: bool = False) -> torch.Tensor:
    """z_sem of the base (D,) with slice ``name`` taken from ``parts[name]`` (D,) -> z_sem (1, D)."""
    device = gae.z_mean.device
    z_base = z_base.to(device).float().reshape(1, -1)
    d_base = gae.encode(z_base)
    d = d_base
    ranges = gae.slice_ranges()
    for name, z in parts.items():
        d = swap_slices(d, gae.encode(z.to(device).float().reshape(1, -1)), [ranges[gae.resolve_slice(name)]])
    out = gae.decode(d)
    if residual:
        out = z_base + out - gae.decode(d_base)
    return out.cpu()
