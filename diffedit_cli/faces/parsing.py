"""Face-part masks of aligned crops from facexlib's BiSeNet face parser (CelebAMask-HQ's 19 labels).

:class:`FaceParser` runs facexlib's ``BiSeNet(num_class=19)`` (weights ``parsing_bisenet.pth`` in the same
cache folder as the detector's, see :mod:`.detection`) on a crop resized to 512 x 512 and returns a label
map; :func:`part_masks` maps labels to named parts (:data:`PARTS`) and :func:`edit_region` gives the
dilated region an attribute may change (the HDAE fidelity protocol: MSE / LPIPS are measured outside the
dilated segmentation of the edited attribute's parts).
"""

from __future__ import annotations

import os
from typing import Dict, Optional

import torch
import torch.nn.functional as F

from ..errors import ModelError
from .detection import FACEXLIB_WEIGHTS, facexlib_available, facexlib_weight, load_facexlib_network, weights_dir

BISENET_LABELS = ["background", "skin", "l_brow", "r_brow", "l_eye", "r_eye", "eye_g", "l_ear", "r_ear", "ear_r",
                  "nose", "mouth", "u_lip", "l_lip", "neck", "neck_l", "cloth", "hair", "hat"]
"""facexlib BiSeNet output channels (face-parsing.PyTorch / CelebAMask-HQ order)."""

PARTS: Dict[str, tuple] = {
    "background": ("background",),
    "skin": ("skin",),
    "brows": ("l_brow", "r_brow"),
    "eyes": ("l_eye", "r_eye"),
    "glasses": ("eye_g",),
    "ears": ("l_ear", "r_ear", "ear_r"),
    "nose": ("nose",),
    "mouth": ("mouth", "u_lip", "l_lip"),
    "neck": ("neck", "neck_l"),
    "cloth": ("cloth",),
    "hair": ("hair",),
    "hat": ("hat",),
}
"""Named part -> BiSeNet labels."""

FACE_PARTS = ("skin", "brows", "eyes", "glasses", "ears", "nose", "mouth")
"""Parts pasted back when a parsing mask is used (GFPGAN's choice: face without hair, neck, clothes)."""

ATTRIBUTE_PARTS: Dict[str, tuple] = {
    "Smiling": ("mouth",), "Mouth_Slightly_Open": ("mouth",), "Wearing_Lipstick": ("mouth",),
    "Big_Lips": ("mouth",), "Eyeglasses": ("glasses", "eyes", "brows"), "Narrow_Eyes": ("eyes",),
    "Bags_Under_Eyes": ("eyes", "skin"), "Arched_Eyebrows": ("brows",), "Bushy_Eyebrows": ("brows",),
    "Big_Nose": ("nose",), "Pointy_Nose": ("nose",), "Bangs": ("hair",), "Black_Hair": ("hair", "brows"),
    "Blond_Hair": ("hair", "brows"), "Brown_Hair": ("hair", "brows"), "Gray_Hair": ("hair", "brows"),
    "Wavy_Hair": ("hair",), "Straight_Hair": ("hair",), "Bald": ("hair", "skin"), "Receding_Hairline": ("hair", "skin"),
    "Wearing_Hat": ("hat", "hair"), "No_Beard": ("skin", "mouth"), "Goatee": ("skin", "mouth"),
    "Mustache": ("skin", "mouth"), "Sideburns": ("skin", "hair"), "Pale_Skin": ("skin", "nose", "ears", "neck"),
    "Rosy_Cheeks": ("skin",), "Heavy_Makeup": ("skin", "eyes", "brows", "mouth"), "Wearing_Earrings": ("ears",),
    "Wearing_Necklace": ("neck", "cloth"), "Wearing_Necktie": ("neck", "cloth"),
}
"""CelebA attribute -> parts it may change (attributes not listed change the whole image)."""


def default_dilation(size: int) -> int:
    """Dilation radius in pixels: 2 px at 64 px, scaled with the crop size."""
    return max(1, int(round(size / 32)))


def dilate(mask: torch.Tensor, pixels: int) -> torch.Tensor:
    """Binary dilation of a bool mask (H, W) by a (2 * pixels + 1)^2 square."""
    if pixels <= 0:
        return mask
    return F.max_pool2d(mask[None].float(), 2 * pixels + 1, stride=1, padding=pixels)[0] > 0


def part_masks(labels: torch.Tensor, dilation: int = 0) -> Dict[str, torch.Tensor]:
    """Label map (H, W) int -> {part: bool (H, W)} for every name in :data:`PARTS`, optionally dilated."""
    out = {}
    for part, names in PARTS.items():
        mask = torch.zeros(labels.shape, dtype=torch.bool)
        for name in names:
            mask |= labels == BISENET_LABELS.index(name)
        out[part] = dilate(mask, dilation)
    return out


def edit_region(labels: torch.Tensor, attribute: str, dilation: Optional[int] = None) -> torch.Tensor:
    """Bool (H, W): the dilated parts ``attribute`` may change (everything for unlisted attributes)."""
    parts = ATTRIBUTE_PARTS.get(attribute)
    if parts is None:
        return torch.ones(labels.shape, dtype=torch.bool)
    masks = part_masks(labels, 0)
    region = torch.zeros(labels.shape, dtype=torch.bool)
    for part in parts:
        region |= masks[part]
    return dilate(region, default_dilation(labels.shape[-1]) if dilation is None else dilation)


def parsing_weights_present(weights: Optional[os.PathLike] = None) -> bool:
    return facexlib_available() and (weights_dir(weights) / FACEXLIB_WEIGHTS["parsing_bisenet"][0]).is_file()


class FaceParser:
    """facexlib BiSeNet on aligned crops: (N, 3, S, S) in [-1, 1] -> label maps (N, S, S) int64."""

    def __init__(self, weights: Optional[os.PathLike] = None, device: str = "cpu"):
        if not facexlib_available():
            raise ModelError("face parsing needs the facexlib package: pip install 'diffedit[faces]'")
        self.weights = weights_dir(weights)
        self.device = torch.device(device)
        self._model = None

    def model(self):
        if self._model is None:
            from facexlib.parsing.bisenet import BiSeNet  # optional: the [faces] extra

            path = facexlib_weight("parsing_bisenet", self.weights)
            self._model = load_facexlib_network(BiSeNet(num_class=19), path).to(self.device)
        return self._model

    @torch.inference_mode()
    def labels(self, crops: torch.Tensor) -> torch.Tensor:
        size = crops.shape[-1]
        # facexlib/GFPGAN: RGB in [0, 1] normalised with mean 0.5, std 0.5 (= our [-1, 1]) at 512 x 512
        x = F.interpolate(crops.float().to(self.device), size=(512, 512), mode="bilinear", align_corners=False,
                          antialias=False)
        logits = self.model()(x)[0]
        logits = F.interpolate(logits.float(), size=(size, size), mode="bilinear", align_corners=False)
        return logits.argmax(dim=1).cpu()

    def blend_masks(self, crops: torch.Tensor, blur: float = 0.02) -> torch.Tensor:
        """Soft face masks for paste-back: (N, S, S) float32 in [0, 1] (FACE_PARTS, blurred)."""
        labels = self.labels(crops)
        size = crops.shape[-1]
        masks = []
        for lab in labels:
            parts = part_masks(lab)
            face = torch.zeros(lab.shape, dtype=torch.bool)
            for part in FACE_PARTS:
                face |= parts[part]
            masks.append(_soften(face.float(), max(1.0, blur * size)))
        return torch.stack(masks)


def _soften(mask: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian-blurred (H, W) mask (zero padding), so its edge is feathered."""
    radius = max(1, int(3 * sigma + 0.5))
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    x = F.conv2d(mask[None, None], k.view(1, 1, 1, -1), padding=(0, radius))
    x = F.conv2d(x, k.view(1, 1, -1, 1), padding=(radius, 0))
    return x[0, 0].clamp(0, 1)
