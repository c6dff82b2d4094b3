"""Linear attribute classifier on normalised z_sem (Diff-AE appendix A.2).

Logits = Linear((z_sem - conds_mean) / conds_std). Editing moves z_sem along a
row of the weight matrix; see :mod:`diffedit_cli.editing.attributes`.
Shapes: z_sem (N, D) -> logits (N, K), one per attribute name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List

import torch
from torch import nn

from .config import JsonConfig

# The 40 CelebA attributes in the official Diff-AE order (CelebAttrDataset.id_to_cls).
CELEBA_ATTRIBUTES: List[str] = [
    "5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald", "Bangs", "Big_Lips",
    "Big_Nose", "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair", "Bushy_Eyebrows", "Chubby", "Double_Chin",
    "Eyeglasses", "Goatee", "Gray_Hair", "Heavy_Makeup", "High_Cheekbones", "Male", "Mouth_Slightly_Open",
    "Mustache", "Narrow_Eyes", "No_Beard", "Oval_Face", "Pale_Skin", "Pointy_Nose", "Receding_Hairline",
    "Rosy_Cheeks", "Sideburns", "Smiling", "Straight_Hair", "Wavy_Hair", "Wearing_Earrings", "Wearing_Hat",
    "Wearing_Lipstick", "Wearing_Necklace", "Wearing_Necktie", "Young",
]


@dataclass
class ClassifierConfig(JsonConfig):
    num_features: int = 512
    attributes: List[str] = field(default_factory=lambda: list(CELEBA_ATTRIBUTES))



class AttributeClassifier(nn.Module):
    """Per-attribute logistic regression on normalised z_sem."""

    def __init__(self, cfg: ClassifierConfig):
        super().__init__()
        self.config = cfg
        self.linear = nn.Linear(cfg.num_features, len(cfg.attributes))
        self.register_buffer("conds_mean", torch.zeros(1, cfg.num_features))
        self.register_buffer("conds_std", torch.ones(1, cfg.num_features))

    @property
    def attributes(self) -> List[str]:
        return self.config.attributes

    def normalize(self, z_sem: torch.Tensor) -> torch.Tensor:
        return (z_sem - self.conds_mean) / self.conds_std

    def denormalize(self, z: torch.Tensor) -> torch.Tensor:
        return z * self.conds_std + self.conds_mean

    def forward(self, z_sem: torch.Tensor) -> torch.Tensor:
        """z_sem (N, D) -> logits (N, K)."""
        return self.linear(self.normalize(z_sem))
