"""Attribute oracle: a small pixel-space CNN that judges edits of toy faces.

Trained on images drawn by :mod:`diffedit_cli.data.toyfaces`, independently of the autoencoder
(:mod:`diffedit_cli.training.oracle`), so it can tell whether an edited image shows an attribute.
Shapes: images (N, 3, S, S) float in [-1, 1] -> logits (N, K), one per name in ``config.attributes``
(the 11 toy-face attributes by default).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ..data.toyfaces import ATTRIBUTES
from .config import JsonConfig

COMPONENT = "oracle"


@dataclass
class OracleConfig(JsonConfig):
    image_size: int = 64
    attributes: List[str] = field(default_factory=lambda: list(ATTRIBUTES))
    channels: Tuple[int, ...] = (32, 64, 128, 128)  # output channels of the stride-2 stages

    def __post_init__(self):
        self.channels = tuple(self.channels)


def _conv_bn_relu(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class AttributeOracle(nn.Module):
    """Stem conv at full resolution, one stride-2 conv per entry of ``channels``, global average pool, linear."""

    def __init__(self, cfg: OracleConfig):
        super().__init__()
        self.config = cfg
        layers = [_conv_bn_relu(3, cfg.channels[0], 1)]
        for c_in, c_out in zip(cfg.channels[:1] + cfg.channels[:-1], cfg.channels):
            layers.append(_conv_bn_relu(c_in, c_out, 2))
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(cfg.channels[-1], len(cfg.attributes))

    @property
    def attributes(self) -> List[str]:
        return self.config.attributes

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images (N, 3, S, S) float in [-1, 1] -> logits (N, K); other sizes S are resized to ``image_size``."""
        size = self.config.image_size
        if images.shape[-2:] != (size, size):
            images = F.interpolate(images, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        return self.head(self.features(images).mean(dim=(2, 3)))

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """images (N, 3, S, S) float in [-1, 1] -> bool (N, K): True where the logit is > 0."""
        return self(images) > 0


