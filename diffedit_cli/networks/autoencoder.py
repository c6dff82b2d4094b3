"""The Diff-AE autoencoder: semantic encoder + conditional UNet (eps prediction).

Layer order and parameter names match the official ``BeatGANsAutoencModel``
(the ``model.`` / ``ema_model.`` part of an official checkpoint, prefix
stripped), so converted official weights load with strict key matching.

Shapes: images (N, 3, S, S) in [-1, 1]; z_sem (N, enc_out_channels);
timesteps (N,) int64 on the original 1000-step scale.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import torch
from torch import nn

from ..diffusion import Parameterization
from .blocks import AttentionBlock, CondSequential, Downsample, ResBlock, Upsample, group_norm, timestep_embedding
from .config import JsonConfig


@dataclass
class AutoencoderConfig(JsonConfig):
    """Architecture of a Diff-AE autoencoder (field names as the official config)."""

    image_size: int = 64
    in_channels: int = 3
    out_channels: int = 3
    model_channels: int = 64
    channel_mult: Tuple[int, ...] = (1, 2, 4, 8)
    num_res_blocks: int = 2
    attention_resolutions: Tuple[int, ...] = (16,)
    embed_channels: int = 512
    enc_out_channels: int = 512
    enc_channel_mult: Optional[Tuple[int, ...]] = None
    enc_num_res_block: int = 2
    enc_attn_resolutions: Optional[Tuple[int, ...]] = None
    num_heads: int = 1
    num_head_channels: int = -1
    use_new_attention_order: bool = False
    resblock_updown: bool = True
    conv_resample: bool = True
    dropout: float = 0.1
    # diffusion process the network was trained for (diffusion.Parameterization; absent = official eps + linear)
    diffusion_steps: int = 1000
    beta_schedule: str = "linear"
    prediction: str = "eps"  # eps | v
    zero_terminal_snr: bool = False
    timestep_spacing: str = "official"  # official (ddimN) | linspace

    def __post_init__(self):
        self.channel_mult = tuple(self.channel_mult)
        self.attention_resolutions = tuple(self.attention_resolutions)
        if self.enc_channel_mult is not None:
            self.enc_channel_mult = tuple(self.enc_channel_mult)
        if self.enc_attn_resolutions is not None:
            self.enc_attn_resolutions = tuple(self.enc_attn_resolutions)
        Parameterization.of(self)  # ValueError on an invalid combination

    @property
    def arch(self) -> str:
        """The autoencoder family: ``diffae`` here; :class:`~diffedit_cli.networks.hdae.HDAEConfig` holds its own."""
        return "diffae"

    @property
    def style_channels(self) -> int:
        return self.enc_out_channels



class TimeEmbedding(nn.Module):
    """Sinusoid (model_channels) -> MLP -> (N, embed_channels); official name ``time_embed.time_embed``."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.in_channels = in_channels
        self.time_embed = nn.Sequential(nn.Linear(in_channels, out_channels), nn.SiLU(), nn.Linear(out_channels, out_channels))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.time_embed(timestep_embedding(t, self.in_channels))


def _attention(cfg: AutoencoderConfig, channels: int) -> AttentionBlock:
    return AttentionBlock(channels, cfg.num_heads, cfg.num_head_channels, cfg.use_new_attention_order)


class SemanticEncoder(nn.Module):
    """Image (N, 3, S, S) in [-1, 1] -> z_sem (N, enc_out_channels). Official ``BeatGANsEncoderModel``."""

    def __init__(self, cfg: AutoencoderConfig):
        super().__init__()
        mult = cfg.enc_channel_mult or cfg.channel_mult
        attn = cfg.enc_attn_resolutions or cfg.attention_resolutions
        ch = int(mult[0] * cfg.model_channels)
        blocks = [CondSequential(nn.Conv2d(cfg.in_channels, ch, 3, padding=1))]
        resolution = cfg.image_size
        for level, m in enumerate(mult):
            for _ in range(cfg.enc_num_res_block):
                out = int(m * cfg.model_channels)
                layers = [ResBlock(ch, out, dropout=cfg.dropout)]
                ch = out
                if resolution in attn:
                    layers.append(_attention(cfg, ch))
                blocks.append(CondSequential(*layers))
            if level != len(mult) - 1:
                resolution //= 2
                down = ResBlock(ch, ch, resample="down", dropout=cfg.dropout) if cfg.resblock_updown else Downsample(ch, cfg.conv_resample)
                blocks.append(CondSequential(down))
        self.input_blocks = nn.ModuleList(blocks)
        self.middle_block = CondSequential(
            ResBlock(ch, ch, dropout=cfg.dropout), _attention(cfg, ch), ResBlock(ch, ch, dropout=cfg.dropout)
        )
        self.out = nn.Sequential(group_norm(ch), nn.SiLU(), nn.AdaptiveAvgPool2d((1, 1)), nn.Conv2d(ch, cfg.enc_out_channels, 1), nn.Flatten())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.float()
        for block in self.input_blocks:
            h = block(h)
        h = self.middle_block(h)
        return self.out(h)


class DiffAEAutoencoder(nn.Module):
    """Semantic encoder plus the z_sem-conditioned UNet that predicts noise.

    Use :meth:`encode` for z_sem, :meth:`project_style` once per image, then
    :meth:`forward` at every DDIM step with the projected styles.
    """

    def __init__(self, cfg: AutoencoderConfig):
        super().__init__()
        self.config = cfg
        emb, style_ch = cfg.embed_channels, cfg.style_channels
        self.time_embed = TimeEmbedding(cfg.model_channels, emb)

        def res(cin, cout, resample=None):
            return ResBlock(cin, cout, emb, style_ch, resample, cfg.dropout)

        ch = input_ch = int(cfg.channel_mult[0] * cfg.model_channels)
        input_blocks = [CondSequential(nn.Conv2d(cfg.in_channels, ch, 3, padding=1))]
        skip_chans: List[List[int]] = [[] for _ in cfg.channel_mult]
        skip_chans[0].append(ch)
        self.input_num_blocks = [0] * len(cfg.channel_mult)
        self.input_num_blocks[0] = 1
        resolution = cfg.image_size
        for level, m in enumerate(cfg.channel_mult):
            for _ in range(cfg.num_res_blocks):
                out = int(m * cfg.model_channels)
                layers = [res(ch, out)]
                ch = out
                if resolution in cfg.attention_resolutions:
                    layers.append(_attention(cfg, ch))
                input_blocks.append(CondSequential(*layers))
                skip_chans[level].append(ch)
                self.input_num_blocks[level] += 1
            if level != len(cfg.channel_mult) - 1:
                resolution //= 2
                down = res(ch, ch, "down") if cfg.resblock_updown else Downsample(ch, cfg.conv_resample)
                input_blocks.append(CondSequential(down))
                skip_chans[level + 1].append(ch)
                self.input_num_blocks[level + 1] += 1
        self.input_blocks = nn.ModuleList(input_blocks)
        self.middle_block = CondSequential(res(ch, ch), _attention(cfg, ch), res(ch, ch))

        output_blocks = []
        self.output_num_blocks = [0] * len(cfg.channel_mult)
        for level, m in reversed(list(enumerate(cfg.channel_mult))):
            for i in range(cfg.num_res_blocks + 1):
                skip = skip_chans[level].pop() if skip_chans[level] else 0
                out = int(cfg.model_channels * m)
                layers = [res(ch + skip, out)]
                ch = out
                if resolution in cfg.attention_resolutions:
                    layers.append(_attention(cfg, ch))
                if level and i == cfg.num_res_blocks:
                    resolution *= 2
                    layers.append(res(ch, ch, "up") if cfg.resblock_updown else Upsample(ch, cfg.conv_resample))
                output_blocks.append(CondSequential(*layers))
                self.output_num_blocks[level] += 1
        self.output_blocks = nn.ModuleList(output_blocks)
        self.out = nn.Sequential(group_norm(ch), nn.SiLU(), nn.Conv2d(input_ch, cfg.out_channels, 3, padding=1))
        self.encoder = SemanticEncoder(cfg)

        self.styled_blocks: List[ResBlock] = [
            m for part in (self.input_blocks, self.middle_block, self.output_blocks)
            for m in part.modules() if isinstance(m, ResBlock)
        ]
        for index, block in enumerate(self.styled_blocks):
            block.style_index = index

    # -- semantic code -------------------------------------------------
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Images (N, 3, S, S) in [-1, 1] -> z_sem (N, enc_out_channels)."""
        return self.encoder(x)

    def project_style(self, z_sem: torch.Tensor) -> List[torch.Tensor]:
        """z_sem (N, D) -> one AdaGN scale (N, C_block) per ResBlock; reuse across DDIM steps."""
        return [block.project_style(z_sem) for block in self.styled_blocks]

    def block_resolutions(self) -> List[Tuple[str, int]]:
        """(part, feature resolution) of every styled ResBlock, in style order."""
        blocks = []
        resolution = self.config.image_size
        for block in self.input_blocks:
            for m in block:
                if isinstance(m, ResBlock):
                    blocks.append(("input", resolution))
                    if m.resample == "down":
                        resolution //= 2
        for m in self.middle_block:
            if isinstance(m, ResBlock):
                blocks.append(("middle", resolution))
        for block in self.output_blocks:
            for m in block:
                if isinstance(m, ResBlock):
                    blocks.append(("output", resolution))
                    if m.resample == "up":
                        resolution *= 2
        return blocks

    # -- noise prediction ----------------------------------------------
    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        z_sem: Optional[torch.Tensor] = None,
        styles: Optional[Sequence[torch.Tensor]] = None,
    ) -> torch.Tensor:
        """Predict eps: x (N, 3, S, S), t (N,) -> (N, 3, S, S).

        Give either z_sem (N, D) or the precomputed ``styles`` of :meth:`project_style`.
        """
        if styles is None:
            if z_sem is None:
                raise ValueError("forward needs z_sem or styles")
            styles = self.project_style(z_sem)
        # one embedding per distinct timestep (a DDIM step has one): cheaper and batch-invariant
        t_unique, emb_index = torch.unique(t, return_inverse=True)
        emb = self.time_embed(t_unique)
        skips: List[List[torch.Tensor]] = [[] for _ in self.input_num_blocks]
        h = x
        k = 0
        for level, n in enumerate(self.input_num_blocks):
            for _ in range(n):
                h = self.input_blocks[k](h, emb, styles, emb_index)
                skips[level].append(h)
                k += 1
        h = self.middle_block(h, emb, styles, emb_index)
        k = 0
        for i, n in enumerate(self.output_num_blocks):
            for _ in range(n):
                lateral = skips[-i - 1].pop() if skips[-i - 1] else None
                if lateral is not None:
                    h = torch.cat([h, lateral], dim=1)
                h = self.output_blocks[k](h, emb, styles, emb_index)
                k += 1
        return self.out(h)
