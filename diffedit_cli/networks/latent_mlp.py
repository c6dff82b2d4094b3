"""The latent DDIM network: an MLP with skip connections over normalised z_sem.

Matches the official ``MLPSkipNet`` (Diff-AE Table 6): every hidden layer is
``Linear -> x * (condition_bias + Linear(SiLU(t_emb))) -> LayerNorm -> SiLU``,
the input z is concatenated to the layers in ``skip_layers``, and the last
layer is a plain Linear. The official module registers each layer's time
projection twice (``linear_emb`` and ``cond_layers.1``); here it is stored once
as ``linear_emb``.

Shapes: z (N, num_channels), t (N,) -> eps (N, num_channels). The buffers
``conds_mean`` / ``conds_std`` (1, num_channels) map z_sem to the normalised
space the network is trained in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import timestep_embedding
from .config import JsonConfig


@dataclass
class LatentMLPConfig(JsonConfig):
    num_channels: int = 512
    num_hid_channels: int = 2048
    num_layers: int = 10
    skip_layers: Tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7, 8, 9)
    num_time_emb_channels: int = 64
    num_time_layers: int = 2
    use_norm: bool = True
    condition_bias: float = 1.0
    dropout: float = 0.0
    # latent diffusion process (official: constant beta 0.008, T = 1000)
    diffusion_steps: int = 1000
    beta_schedule: str = "const0.008"

    def __post_init__(self):
        self.skip_layers = tuple(self.skip_layers)



class LatentLayer(nn.Module):
    """One MLP layer; ``conditioned`` layers scale by the time embedding."""

    def __init__(self, cin: int, cout: int, cond_channels: int, conditioned: bool, norm: bool, act: bool,
                 condition_bias: float, dropout: float):
        super().__init__()
        self.linear = nn.Linear(cin, cout)
        self.conditioned = conditioned
        self.condition_bias = condition_bias
        if conditioned:
            self.linear_emb = nn.Linear(cond_channels, cout)
        self.norm = nn.LayerNorm(cout) if norm else nn.Identity()
        self.act = nn.SiLU() if act else nn.Identity()
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, t_emb: torch.Tensor) -> torch.Tensor:
        x = self.linear(x)
        if self.conditioned:
            x = x * (self.condition_bias + self.linear_emb(F.silu(t_emb)))
        return self.dropout(self.act(self.norm(x)))


class LatentMLP(nn.Module):
    """eps-prediction network of the latent DDIM (official ``MLPSkipNet``)."""

    def __init__(self, cfg: LatentMLPConfig):
        super().__init__()
        self.config = cfg
        time_layers = []
        for i in range(cfg.num_time_layers):
            cin = cfg.num_time_emb_channels if i == 0 else cfg.num_channels
            time_layers.append(nn.Linear(cin, cfg.num_channels))
            if i < cfg.num_time_layers - 1:
                time_layers.append(nn.SiLU())
        self.time_embed = nn.Sequential(*time_layers)
        layers = []
        for i in range(cfg.num_layers):
            last = i == cfg.num_layers - 1
            cin = cfg.num_channels if i == 0 else cfg.num_hid_channels
            cout = cfg.num_channels if last else cfg.num_hid_channels
            if i in cfg.skip_layers:
                cin += cfg.num_channels
            layers.append(LatentLayer(
                cin, cout, cfg.num_channels, conditioned=not last, norm=cfg.use_norm and not last, act=not last,
                condition_bias=cfg.condition_bias, dropout=0.0 if last else cfg.dropout,
            ))
        self.layers = nn.ModuleList(layers)
        # statistics of z_sem over the training set; the net works on normalised codes
        self.register_buffer("conds_mean", torch.zeros(1, cfg.num_channels))
        self.register_buffer("conds_std", torch.ones(1, cfg.num_channels))

    def normalize(self, z_sem: torch.Tensor) -> torch.Tensor:
        return (z_sem - self.conds_mean) / self.conds_std

    def denormalize(self, z: torch.Tensor) -> torch.Tensor:
        return z * self.conds_std + self.conds_mean

    def forward(self, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        t_emb = self.time_embed(timestep_embedding(t, self.config.num_time_emb_channels))
        h = z
        for i, layer in enumerate(self.layers):
            if i in self.config.skip_layers:
                h = torch.cat([h, z], dim=1)
            h = layer(h, t_emb)
        return h
