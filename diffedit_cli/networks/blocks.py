"""Building blocks of the Diff-AE UNet and semantic encoder.

Parameter names follow the official Diff-AE code (``in_layers``, ``emb_layers``,
``cond_emb_layers``, ``out_layers``, ``skip_connection``; ``norm``, ``qkv``,
``proj_out``) so official checkpoints load by a plain prefix strip.

Conditioning (AdaGN, Diff-AE eq. 8): inside a conditioned ResBlock,
``h = GroupNorm(h) * (1 + t_scale) + t_shift`` then ``h = h * (1 + s)`` where
``(t_scale, t_shift)`` come from the timestep embedding and ``s`` is the
block's projection of z_sem (``cond_emb_layers``). The projection depends only
on z_sem, so callers compute it once per image (:meth:`ResBlock.project_style`)
and pass it in for every DDIM step.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn


class GroupNorm32(nn.GroupNorm):
    """GroupNorm computed in float32 whatever the input dtype (as official).

    On a CPU a bf16 input goes to the kernel as it is: it accumulates and normalises in float32 and rounds once, so
    it gives the official cast-to-float32-and-back result up to one bf16 rounding step (its float32 sums run in
    another order; most maps are bit-identical, tests/test_conformance.py) without the two casts of the whole map
    (4x faster at 256 px, docs/speed.md)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.bfloat16 and x.device.type == "cpu":
            return super().forward(x)
        return super().forward(x.float()).type(x.dtype)


def group_norm(channels: int) -> GroupNorm32:
    """The official normalisation: min(32, C) groups."""
    return GroupNorm32(min(32, channels), channels)


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding (N,) -> (N, dim): ``[cos(t f_k), sin(t f_k)]``, f_k = exp(-ln(P) k / (dim/2))."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t[:, None].float() * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


class ResBlock(nn.Module):
    """Residual block, optionally resampling and optionally conditioned.

    Args:
        channels / out_channels: input / output feature channels.
        emb_channels: width of the timestep embedding; ``None`` builds the
            unconditioned block of the semantic encoder (``in_layers`` + skip only,
            exactly as the official encoder).
        style_channels: width of the z_sem input of ``cond_emb_layers`` (two-cond
            AdaGN); ``None`` for time-only conditioning.
        resample: ``"up"`` (nearest x2), ``"down"`` (avg-pool /2) or ``None``.
    """

    def __init__(
        self,
        channels: int,
        out_channels: Optional[int] = None,
        emb_channels: Optional[int] = None,
        style_channels: Optional[int] = None,
        resample: Optional[str] = None,
        dropout: float = 0.0,
    ):
        super().__init__()
        out_channels = out_channels or channels
        self.out_channels = out_channels
        self.resample = resample
        self.in_layers = nn.Sequential(group_norm(channels), nn.SiLU(), nn.Conv2d(channels, out_channels, 3, padding=1))
        self.conditioned = emb_channels is not None
        self.has_style = self.conditioned and style_channels is not None
        if self.conditioned:
            self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, 2 * out_channels))
            if self.has_style:
                self.cond_emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(style_channels, out_channels))
            self.out_layers = nn.Sequential(
                group_norm(out_channels), nn.SiLU(), nn.Dropout(dropout),
                nn.Conv2d(out_channels, out_channels, 3, padding=1),
            )
        if out_channels == channels:
            self.skip_connection = nn.Identity()
        else:
            self.skip_connection = nn.Conv2d(channels, out_channels, 1)

    def _resample(self, x: torch.Tensor) -> torch.Tensor:
        if self.resample == "up":
            return F.interpolate(x, scale_factor=2, mode="nearest")
        if self.resample == "down":
            return F.avg_pool2d(x, kernel_size=2, stride=2)
        return x

    def project_style(self, z_sem: torch.Tensor) -> torch.Tensor:
        """z_sem (N, style_channels) -> per-channel AdaGN scale (N, out_channels).

        In eval mode row by row, so an image's projection never depends on its
        batch-mates (matrix kernels pick different blockings for different batch
        sizes); in training mode as one matrix product.
        """
        if self.training:
            return self.cond_emb_layers(z_sem)
        return torch.cat([self.cond_emb_layers(row) for row in z_sem.split(1)])

    def forward(
        self, x: torch.Tensor, emb: Optional[torch.Tensor] = None, style: Optional[torch.Tensor] = None,
        emb_index: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """x (N, C, H, W); style (N, C_out) from :meth:`project_style`.

        emb: time embedding, (N, E), or (U, E) for the U distinct timesteps of
        the batch with ``emb_index`` (N,) mapping each image to its row (DDIM
        steps share one timestep, so its projection is computed once).
        """
        if self.resample is not None:
            h = self.in_layers[:-1](x)
            h = self._resample(h)
            x = self._resample(x)
            h = self.in_layers[-1](h)
        else:
            h = self.in_layers(x)
        if self.conditioned:
            norm, act, drop, conv = self.out_layers
            h = norm(h)
            # AdaGN, (h (1 + scale) + shift)(1 + style): the per-channel factors are combined first (float32, (N, C)
            # only) and applied to the map in one pass
            gain = shift = None
            if emb is not None:
                emb_out = self.emb_layers(emb)
                if emb_index is not None:
                    emb_out = emb_out[emb_index]
                scale, shift = emb_out.float().chunk(2, dim=1)
                gain = 1 + scale
            if style is not None:
                factor = 1 + style.float()
                gain = factor if gain is None else gain * factor
                shift = None if shift is None else shift * factor
            if gain is not None:
                gain = gain.type(h.dtype)[..., None, None]
                h = h * gain if shift is None else torch.addcmul(shift.type(h.dtype)[..., None, None], h, gain)
            h = conv(drop(act(h)))
        return self.skip_connection(x) + h


class AttentionBlock(nn.Module):
    """Spatial self-attention with the official ("legacy") head layout.

    ``qkv`` output channels are ordered head-major: for each head, its q, k and
    v chunks of ``C / heads`` channels each.
    """

    def __init__(self, channels: int, num_heads: int = 1, num_head_channels: int = -1, new_order: bool = False):
        super().__init__()
        self.num_heads = num_heads if num_head_channels == -1 else channels // num_head_channels
        self.new_order = new_order
        self.norm = group_norm(channels)
        self.qkv = nn.Conv1d(channels, channels * 3, 1)
        self.proj_out = nn.Conv1d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, height, width = x.shape
        x = x.reshape(b, c, height * width)
        qkv = self.qkv(self.norm(x))
        heads, ch = self.num_heads, c // self.num_heads
        if self.new_order:
            q, k, v = (t.reshape(b * heads, ch, -1) for t in qkv.chunk(3, dim=1))
        else:
            q, k, v = qkv.reshape(b * heads, 3 * ch, -1).split(ch, dim=1)
        # (B*H, T, ch) layout for the fused kernel; the scale 1/sqrt(ch) equals the
        # official (q / ch**0.25) . (k / ch**0.25).
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        h = out.transpose(1, 2).reshape(b, c, -1)
        return (x + self.proj_out(h)).reshape(b, c, height, width)


class Downsample(nn.Module):
    """Strided 3x3 conv (``op``) or average pooling; used when ``resblock_updown`` is off."""

    def __init__(self, channels: int, use_conv: bool):
        super().__init__()
        self.op = nn.Conv2d(channels, channels, 3, stride=2, padding=1) if use_conv else nn.AvgPool2d(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class Upsample(nn.Module):
    """Nearest x2 upsampling followed by an optional 3x3 conv (``conv``)."""

    def __init__(self, channels: int, use_conv: bool):
        super().__init__()
        self.use_conv = use_conv
        if use_conv:
            self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        return self.conv(x) if self.use_conv else x


class CondSequential(nn.Sequential):
    """A stack of layers; ResBlocks get the time embedding and their own style."""

    def forward(self, x: torch.Tensor, emb=None, styles: Optional[Sequence[torch.Tensor]] = None, emb_index=None):
        for layer in self:
            if isinstance(layer, ResBlock):
                style = styles[layer.style_index] if (styles is not None and layer.has_style) else None
                x = layer(x, emb, style, emb_index)
            else:
                x = layer(x)
        return x
