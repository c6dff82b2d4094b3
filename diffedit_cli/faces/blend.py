"""Paste-back: warp edited aligned crops into the original photo and blend them with a feathered mask.

For every photo pixel near a face, its centre is mapped into the crop with the inverse of the crop's
similarity transform (:meth:`FaceAlignment.photo_to_crop`); the edited crop is sampled there (bilinear)
and blended with weight ``m`` in [0, 1]: ``out = photo * (1 - m) + edit * m``. ``m`` is the soft elliptical
face mask of :func:`ellipse_mask` (exactly 0 outside the ellipse), or a face-parsing mask (crop space,
blurred, fading to 0 before the crop border). Pixels where ``m == 0`` are copied from the input
untouched, so they are byte-identical to it; the alpha channel is never changed.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from .align import FaceAlignment
from .photos import Photo

# the blend ellipse in crop units (an FFHQ crop: eyes at y ~ 0.47, mouth at ~ 0.70, chin at ~ 0.85)
ELLIPSE_CENTRE = (0.5, 0.56)
ELLIPSE_RADII = (0.33, 0.40)
ELLIPSE_FEATHER = 0.25  # fraction of the radius over which the mask fades from 1 to 0


def ellipse_mask(u: torch.Tensor, v: torch.Tensor, size: int, feather: float = ELLIPSE_FEATHER) -> torch.Tensor:
    """Soft elliptical face mask at crop edge coordinates (u, v) in [0, size] -> [0, 1]; 0 outside."""
    du = (u / size - ELLIPSE_CENTRE[0]) / ELLIPSE_RADII[0]
    dv = (v / size - ELLIPSE_CENTRE[1]) / ELLIPSE_RADII[1]
    r = torch.sqrt(du * du + dv * dv)
    t = ((1.0 - r) / feather).clamp(0, 1)
    return t * t * (3 - 2 * t)  # smoothstep: 1 inside (1 - feather), 0 at and beyond the ellipse


def crop_mask(size: int) -> torch.Tensor:
    """The elliptical mask rendered in crop space: (size, size) float32 in [0, 1]."""
    c = torch.arange(size, dtype=torch.float32) + 0.5
    v, u = torch.meshgrid(c, c, indexing="ij")
    return ellipse_mask(u, v, size)


def border_fade(u: torch.Tensor, v: torch.Tensor, size: int, width: float = 0.06) -> torch.Tensor:
    """1 inside the crop, fading to 0 within ``width * size`` of its border (and outside)."""
    edge = torch.minimum(torch.minimum(u, size - u), torch.minimum(v, size - v)) / (width * size)
    t = edge.clamp(0, 1)
    return t * t * (3 - 2 * t)


def face_region(alignment: FaceAlignment, photo_size: Tuple[int, int]) -> Optional[Tuple[int, int, int, int]]:
    """Integer bounds (x0, y0, x1, y1) of the crop's footprint clipped to the photo; None when outside."""
    q = np.asarray(alignment.quad)
    w, h = photo_size
    x0, y0 = max(0, int(np.floor(q[:, 0].min()))), max(0, int(np.floor(q[:, 1].min())))
    x1, y1 = min(w, int(np.ceil(q[:, 0].max()))), min(h, int(np.ceil(q[:, 1].max())))
    if x1 <= x0 or y1 <= y0:
        return None
    return x0, y0, x1, y1


def warp_to_photo(crop: torch.Tensor, alignment: FaceAlignment, region: Tuple[int, int, int, int],
                  mask: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """Sample a crop (C, S, S) and its blend weight at the photo pixels of ``region``.

    Returns (values (C, h, w) float32, weight (h, w) float32 in [0, 1]). ``mask`` (S, S) in [0, 1]: a
    crop-space mask (e.g. from face parsing); default: the analytic :func:`ellipse_mask`.
    """
    x0, y0, x1, y1 = region
    size = alignment.size
    m = torch.from_numpy(alignment.photo_to_crop()).float()
    ys = torch.arange(y0, y1, dtype=torch.float32) + 0.5
    xs = torch.arange(x0, x1, dtype=torch.float32) + 0.5
    py, px = torch.meshgrid(ys, xs, indexing="ij")
    u = m[0, 0] * px + m[0, 1] * py + m[0, 2]
    v = m[1, 0] * px + m[1, 1] * py + m[1, 2]
    grid = torch.stack([u / size * 2 - 1, v / size * 2 - 1], dim=-1)[None]  # align_corners=False
    values = F.grid_sample(crop[None].float(), grid, mode="bilinear", padding_mode="border", align_corners=False)[0]
    if mask is None:
        weight = ellipse_mask(u, v, size)
    else:
        weight = F.grid_sample(mask[None, None].float(), grid, mode="bilinear", padding_mode="zeros",
                               align_corners=False)[0, 0] * border_fade(u, v, size)
    return values, weight.clamp(0, 1)


def paste_back(photo: Photo, crops: Sequence[torch.Tensor], alignments: Sequence[FaceAlignment],
               masks: Optional[Sequence[Optional[torch.Tensor]]] = None) -> Tuple[Photo, np.ndarray]:
    """Blend edited crops (each (3, S, S) in [-1, 1]) into ``photo`` at their alignments.

    Returns (the new photo, changed (H, W) bool: pixels with a non-zero blend weight). Faces are pasted
    in order; every pixel with weight 0 keeps its input value exactly.
    """
    pixels = photo.pixels.copy()
    h, w = pixels.shape[:2]
    touched = np.zeros((h, w), dtype=bool)
    peak = float(photo.max_value)
    for k, (crop, alignment) in enumerate(zip(crops, alignments)):
        region = face_region(alignment, (w, h))
        if region is None:
            continue
        x0, y0, x1, y1 = region
        values, weight = warp_to_photo(crop, alignment, region, None if masks is None else masks[k])
        edit = ((values.clamp(-1, 1) + 1) / 2).double()  # (3, h, w) in [0, 1]
        if pixels.shape[2] == 1:  # grey photo: ITU-R 601 luma of the edit
            edit = (0.299 * edit[0] + 0.587 * edit[1] + 0.114 * edit[2])[None]
        edit = edit.permute(1, 2, 0).numpy() * peak
        wgt = weight.double().numpy()
        inside = wgt > 0
        if not inside.any():
            continue
        block = pixels[y0:y1, x0:x1].astype(np.float64)
        mixed = block * (1 - wgt[..., None]) + edit * wgt[..., None]
        mixed = np.clip(np.floor(mixed + 0.5), 0, peak).astype(pixels.dtype)
        target = pixels[y0:y1, x0:x1]
        target[inside] = mixed[inside]
        touched[y0:y1, x0:x1] |= inside
    return photo.with_pixels(pixels), touched
