"""Stand-ins for the official weights as others publish them: random tensors with the official names and shapes.

``ffhq256_autoencoder_state`` has exactly the keys and shapes of the official FFHQ-256 EMA autoencoder
(checked against ../shared/reference/official_shapes in tests/test_pretrained.py); the classifier and the latent
statistics follow the official ClsModel and latent.pkl. Random weights time and convert like trained ones.
"""

from __future__ import annotations

import math
from typing import Dict

import torch

from diffedit_cli.io.convert import PRESETS
from diffedit_cli.networks.autoencoder import AutoencoderConfig, DiffAEAutoencoder


def autoencoder_state(preset: str = "ffhq256", seed: int = 0) -> Dict[str, torch.Tensor]:
    """An EMA-stripped autoencoder state dict of the official architecture ``preset`` (no x_T buffer)."""
    with torch.device("meta"):
        net = DiffAEAutoencoder(AutoencoderConfig(**PRESETS[preset]))
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for key, value in net.state_dict().items():
        if value.dim() >= 2:
            out[key] = torch.randn(value.shape, generator=gen) / math.sqrt(math.prod(value.shape[1:]))
        elif key.endswith("weight"):  # GroupNorm scales
            out[key] = 1 + 0.1 * torch.randn(value.shape, generator=gen)
        else:
            out[key] = 0.02 * torch.randn(value.shape, generator=gen)
    return out


def classifier_state(features: int = 512, seed: int = 1, with_stats: bool = True) -> Dict[str, torch.Tensor]:
    """The official ClsModel state dict: classifier and ema_classifier (40 attributes), conds_mean / conds_std."""
    gen = torch.Generator().manual_seed(seed)
    weight = torch.randn(40, features, generator=gen) / math.sqrt(features)
    bias = 0.1 * torch.randn(40, generator=gen)
    state = {"classifier.weight": weight, "classifier.bias": bias,
             "ema_classifier.weight": weight + 0.01 * torch.randn(40, features, generator=gen),
             "ema_classifier.bias": bias.clone()}
    if with_stats:
        state.update(stats_state(features, seed + 1, shaped=(1, features), with_conds=False))
    return state


def stats_state(features: int = 512, seed: int = 2, shaped=None, with_conds: bool = True) -> Dict[str, torch.Tensor]:
    """latent.pkl: ``conds`` (N, D) and their mean / std (D,) (the classifier checkpoint stores them as (1, D))."""
    gen = torch.Generator().manual_seed(seed)
    conds = 0.5 * torch.randn(64, features, generator=gen) + 0.1 * torch.randn(features, generator=gen)
    shape = shaped or (features,)
    state = {"conds_mean": conds.mean(0).reshape(shape), "conds_std": conds.std(0).reshape(shape)}
    if with_conds:
        state["conds"] = conds
    return state
