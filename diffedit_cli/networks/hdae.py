"""Hierarchical Diffusion Autoencoders (HDAE, Lu et al. WACV 2024): one semantic code per feature level.

Design (written down in docs/hdae.md; no public reference code exists):

* The diffusion UNet is the Diff-AE one (:class:`~.autoencoder.DiffAEAutoencoder`, same blocks, AdaGN
  scale ``h * (1 + s)``). It has ``L = len(channel_mult)`` resolution levels; **code level l** (0-based,
  0 = finest = full resolution, ``L - 1`` = coarsest) belongs to UNet level ``l``, and the coarsest code
  also to the middle block.
* The hierarchical code ``z`` is the concatenation of ``L`` codes of ``D = enc_out_channels`` values each,
  finest first: ``z[:, l*D:(l+1)*D]`` is level ``l`` (shape (N, L*D)).
* Level ``L - 1`` is read from the bottom of the semantic encoder exactly as Diff-AE reads z_sem (GroupNorm,
  SiLU, global average pool, 1x1 conv). Level ``l < L - 1`` is read from encoder features at resolution
  ``image_size / 2**l`` by its own head of the same form (GroupNorm, SiLU, global average pool, 1x1 conv to D).
* ``arch="hdae-e"`` (HDAE(E)): the features are the encoder's down path (output of the last ResBlock at that
  resolution); the whole concatenated code conditions **every** AdaGN layer (``cond_emb_layers`` takes L*D).
* ``arch="hdae-u"`` (HDAE(U)): the encoder is U-shaped: after the Diff-AE down path and middle block an
  up path mirrors the UNet decoder (``dec_num_res_block + 1`` unconditioned ResBlocks per level, each fed the
  matching down-path skip, ResBlock upsampling, channel widths ``dec_channel_mult``); level ``l`` is read from
  the up path at resolution ``image_size / 2**l``. Each AdaGN layer of the UNet gets **only its own level's
  code** (``cond_emb_layers`` takes D): blocks at UNet level ``l`` (input and output path; resampling blocks
  belong to the level of their input resolution) get level ``l``, the middle block gets level ``L - 1``.

Shapes: images (N, 3, S, S) in [-1, 1]; codes (N, L*D).
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, fields, replace
from typing import List, Optional, Tuple

import torch
from torch import nn

from .autoencoder import AutoencoderConfig, DiffAEAutoencoder, SemanticEncoder, _attention
from .blocks import CondSequential, Downsample, ResBlock, group_norm

ARCHS = ("diffae", "hdae-e", "hdae-u")


@dataclass
class HDAEConfig(AutoencoderConfig):
    """An HDAE autoencoder: the Diff-AE fields plus the variant and the U-shaped encoder's decoder path.

    ``enc_out_channels`` is the width D of **each** level's code; the whole code is ``num_levels * D``.
    """

    arch: str = "hdae-u"
    dec_channel_mult: Optional[Tuple[int, ...]] = None  # U-encoder up path (default: the encoder's multipliers)
    dec_num_res_block: Optional[int] = None  # per level: this + 1 ResBlocks (default: enc_num_res_block)

    def __post_init__(self):
        super().__post_init__()
        if self.arch not in ARCHS[1:]:
            raise ValueError(f"arch must be one of {', '.join(ARCHS)} (got '{self.arch}')")
        if self.dec_channel_mult is not None:
            self.dec_channel_mult = tuple(self.dec_channel_mult)
        enc_levels = len(self.enc_channel_mult or self.channel_mult)
        if enc_levels < self.num_levels - 1:
            raise ValueError(f"the semantic encoder has {enc_levels} resolution levels; HDAE needs at least "
                             f"{self.num_levels - 1} (one per UNet level but the coarsest)")
        if self.arch == "hdae-u" and len(self.decoder_mult) != enc_levels:
            raise ValueError(f"dec_channel_mult needs {enc_levels} entries (one per encoder level)")

    @property
    def num_levels(self) -> int:
        return len(self.channel_mult)

    @property
    def level_channels(self) -> int:
        return self.enc_out_channels

    @property
    def style_channels(self) -> int:
        """Width of the whole hierarchical code (what latent files and classifiers hold)."""
        return self.num_levels * self.enc_out_channels

    @property
    def decoder_mult(self) -> Tuple[int, ...]:
        return self.dec_channel_mult or self.enc_channel_mult or self.channel_mult

    def level_slices(self) -> List[slice]:
        d = self.enc_out_channels
        return [slice(level * d, (level + 1) * d) for level in range(self.num_levels)]

    def unet_config(self) -> AutoencoderConfig:
        """The Diff-AE config of the UNet, with ``enc_out_channels`` = width each AdaGN projection reads."""
        names = {f.name for f in fields(AutoencoderConfig)}
        base = {k: getattr(self, k) for k in names}
        base["enc_out_channels"] = self.style_channels if self.arch == "hdae-e" else self.enc_out_channels
        return AutoencoderConfig(**base)


def _code_head(channels: int, out: int) -> nn.Sequential:
    return nn.Sequential(group_norm(channels), nn.SiLU(), nn.AdaptiveAvgPool2d((1, 1)), nn.Conv2d(channels, out, 1),
                         nn.Flatten())


class HierarchicalEncoder(nn.Module):
    """Image (N, 3, S, S) in [-1, 1] -> hierarchical code (N, L*D), finest level first.

    ``down`` is the Diff-AE semantic encoder (its ``out`` head gives the coarsest level); ``heads[l]`` reads
    level ``l < L - 1``; for HDAE(U), ``up_levels`` / ``upsamplers`` form the U-shaped decoder path.
    """

    def __init__(self, cfg: HDAEConfig):
        super().__init__()
        self.config = cfg
        self.down = SemanticEncoder(replace(cfg.unet_config(), enc_out_channels=cfg.enc_out_channels))
        mult = cfg.enc_channel_mult or cfg.channel_mult
        self.enc_levels = len(mult)
        # down-path bookkeeping: level of each input block's output, channels of every skip
        self.block_level: List[int] = []
        skip_chans: List[List[int]] = [[] for _ in mult]
        level, ch = 0, 0
        for block in self.down.input_blocks:
            layer = block[0]
            if (isinstance(layer, ResBlock) and layer.resample == "down") or isinstance(layer, Downsample):
                level += 1
            ch = _out_channels(block, ch)
            self.block_level.append(level)
            skip_chans[level].append(ch)
        tap_chans = [skip_chans[level][-1] for level in range(self.enc_levels)]
        ch = tap_chans[-1]
        self.up_levels = nn.ModuleList()
        self.upsamplers = nn.ModuleList()
        if cfg.arch == "hdae-u":
            n_blocks = (cfg.dec_num_res_block if cfg.dec_num_res_block is not None else cfg.enc_num_res_block) + 1
            attn = cfg.enc_attn_resolutions or cfg.attention_resolutions
            tap_chans = [0] * self.enc_levels
            for level in reversed(range(self.enc_levels)):
                resolution = cfg.image_size // 2 ** level
                blocks = []
                for _ in range(n_blocks):
                    skip = skip_chans[level].pop() if skip_chans[level] else 0
                    out = int(cfg.decoder_mult[level] * cfg.model_channels)
                    layers = [ResBlock(ch + skip, out, dropout=cfg.dropout)]
                    ch = out
                    if resolution in attn:
                        layers.append(_attention(cfg, ch))
                    blocks.append(CondSequential(*layers))
                self.up_levels.append(nn.ModuleList(blocks))
                tap_chans[level] = ch
                if level:
                    self.upsamplers.append(ResBlock(ch, ch, resample="up", dropout=cfg.dropout))
        self.heads = nn.ModuleList(_code_head(tap_chans[level], cfg.enc_out_channels)
                                   for level in range(cfg.num_levels - 1))

    def features(self, x: torch.Tensor) -> Tuple[List[torch.Tensor], torch.Tensor]:
        """Per encoder level, the tapped feature map (finest first), and the bottom (middle block) output."""
        h = x.float()
        skips: List[List[torch.Tensor]] = [[] for _ in range(self.enc_levels)]
        for block, level in zip(self.down.input_blocks, self.block_level):
            h = block(h)
            skips[level].append(h)
        taps = [s[-1] for s in skips]
        h = bottom = self.down.middle_block(h)
        if not len(self.up_levels):
            return taps, bottom
        up = iter(self.upsamplers)
        for level, blocks in zip(reversed(range(self.enc_levels)), self.up_levels):
            for block in blocks:
                skip = skips[level].pop() if skips[level] else None
                h = block(h if skip is None else torch.cat([h, skip], dim=1))
            taps[level] = h
            if level:
                h = next(up)(h)
        return taps, bottom

    def encode_levels(self, x: torch.Tensor) -> List[torch.Tensor]:
        """Images -> list of L codes (N, D), finest first."""
        taps, bottom = self.features(x)
        return [head(taps[level]) for level, head in enumerate(self.heads)] + [self.down.out(bottom)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat(self.encode_levels(x), dim=1)


def _out_channels(block: nn.Module, channels: int) -> int:
    """Output channels of a down-path block whose input has ``channels``."""
    for layer in reversed(list(block)):
        if isinstance(layer, (ResBlock, nn.Conv2d)):
            return layer.out_channels
    return channels  # Downsample keeps the width


class HierarchicalAutoencoder(DiffAEAutoencoder):
    """HDAE(E) or HDAE(U): the Diff-AE UNet conditioned on a hierarchical code (N, L*D).

    Same interface as :class:`DiffAEAutoencoder` (``encode``, ``project_style``, ``forward``), so the DDIM
    pipeline, latent files, editing and training work unchanged on the flat code.
    """

    def __init__(self, cfg: HDAEConfig):
        super().__init__(cfg.unet_config())
        self.config = cfg
        self.encoder = HierarchicalEncoder(cfg)
        self.style_levels = block_levels(self)

    def encode_levels(self, x: torch.Tensor) -> List[torch.Tensor]:
        return self.encoder.encode_levels(x)

    def project_style(self, z_sem: torch.Tensor) -> List[torch.Tensor]:
        """Code (N, L*D) -> one AdaGN scale per ResBlock; HDAE(U) blocks read only their level's slice."""
        if self.config.arch == "hdae-e":
            return super().project_style(z_sem)
        slices = self.config.level_slices()
        return [block.project_style(z_sem[:, slices[level]]) for block, level in zip(self.styled_blocks, self.style_levels)]


def block_levels(autoencoder: DiffAEAutoencoder) -> List[int]:
    """Resolution level (0 = finest) of every styled ResBlock, in style order; middle blocks -> coarsest.

    Works on plain Diff-AE models too (where it defines which decoder blocks style-mixing reaches).
    """
    cfg = autoencoder.config
    coarsest = len(cfg.channel_mult) - 1
    levels = []
    for part, resolution in autoencoder.block_resolutions():
        level = coarsest if part == "middle" else int(round(math.log2(cfg.image_size / resolution)))
        levels.append(min(level, coarsest))
    return levels


def is_hierarchical(autoencoder: nn.Module) -> bool:
    return isinstance(getattr(autoencoder, "config", None), HDAEConfig)


# -- dispatch used by models.COMPONENTS["autoencoder"] --------------------------------------------------------

class AnyAutoencoderConfig:
    """``from_dict``: an ``arch`` field of ``hdae-e`` / ``hdae-u`` gives an :class:`HDAEConfig`, else Diff-AE's."""

    @staticmethod
    def from_dict(data: dict) -> AutoencoderConfig:
        arch = data.get("arch", "diffae")
        if arch == "diffae":
            return AutoencoderConfig.from_dict(data)
        if arch not in ARCHS:
            close = difflib.get_close_matches(str(arch), ARCHS, n=1)
            raise ValueError(f"unknown autoencoder arch '{arch}'" + (f"; did you mean {close[0]}?" if close else
                                                                    f" (known: {', '.join(ARCHS)})"))
        return HDAEConfig.from_dict(data)


def build_autoencoder(cfg: AutoencoderConfig) -> DiffAEAutoencoder:
    """An :class:`HDAEConfig` builds a :class:`HierarchicalAutoencoder`, a plain config the Diff-AE one."""
    if isinstance(cfg, HDAEConfig):
        return HierarchicalAutoencoder(cfg)
    return DiffAEAutoencoder(cfg)


def autoencoder_config(arch: str, **fields_) -> AutoencoderConfig:
    """Config for ``arch`` (diffae | hdae-e | hdae-u) from the Diff-AE fields (and HDAE's extras)."""
    return AnyAutoencoderConfig.from_dict({**fields_, "arch": arch})
