"""FFHQ alignment: the eye / mouth quad, the aligned crop with FFHQ's border handling, crop <-> photo maps.

Coordinates: landmarks and boxes from detectors are in *pixel-index* coordinates (the centre of pixel
(i, j) is (i, j)); everything stored here is in *pixel-edge* coordinates (the centre of pixel i is i + 0.5,
the image spans [0, W] x [0, H]), the convention of PIL's ``Image.transform`` and of ``grid_sample`` with
``align_corners=False``. :func:`ffhq_quad` takes index coordinates and returns an edge-coordinate quad.

The construction follows the script that built FFHQ (``recreate_aligned_images`` of the FFHQ dataset,
also used by Diff-AE's ``align.py``): eye centres and mouth corners give an oriented square of side
``max(2 * |eye_to_eye|, 1.8 * |eye_to_mouth|)`` centred at ``eye_avg + 0.1 * eye_to_mouth``; the photo is
shrunk when the square is much larger than the output, cropped with a border, reflect-padded where the
square leaves the photo (the padding blurred and faded toward the median colour), sampled with a QUAD
transform at ``4 x`` the output size and resized down with Lanczos.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Dict, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

TRANSFORM_FACTOR = 4  # FFHQ: 4096-pixel transform for 1024-pixel outputs


def ffhq_quad(eye_left: Sequence[float], eye_right: Sequence[float], mouth_left: Sequence[float],
              mouth_right: Sequence[float]) -> np.ndarray:
    """FFHQ's oriented square from eye centres and mouth corners (index coordinates, image left/right).

    Returns (4, 2) float64 corners in edge coordinates: upper-left, lower-left, lower-right, upper-right
    (the order PIL's QUAD transform takes).
    """
    eye_left, eye_right = np.asarray(eye_left, np.float64), np.asarray(eye_right, np.float64)
    mouth_left, mouth_right = np.asarray(mouth_left, np.float64), np.asarray(mouth_right, np.float64)
    eye_avg = (eye_left + eye_right) * 0.5
    eye_to_eye = eye_right - eye_left
    mouth_avg = (mouth_left + mouth_right) * 0.5
    eye_to_mouth = mouth_avg - eye_avg
    x = eye_to_eye - np.flipud(eye_to_mouth) * [-1, 1]
    norm = np.hypot(*x)
    if not np.isfinite(norm) or norm == 0:
        raise ValueError("degenerate landmarks: eyes and mouth coincide")
    x = x / norm * max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    y = np.flipud(x) * [-1, 1]
    c = eye_avg + eye_to_mouth * 0.1
    return np.stack([c - x - y, c - x + y, c + x + y, c + x - y]) + 0.5


def quad_from_landmarks(landmarks: np.ndarray) -> np.ndarray:
    """(68, 2) dlib / iBUG or (5, 2) RetinaFace landmarks (index coordinates) -> FFHQ quad (4, 2)."""
    points = np.asarray(landmarks, np.float64)
    if points.shape == (68, 2):
        return ffhq_quad(points[36:42].mean(0), points[42:48].mean(0), points[48], points[54])
    if points.shape == (5, 2):  # left eye, right eye, nose, left mouth corner, right mouth corner
        return ffhq_quad(points[0], points[1], points[3], points[4])
    raise ValueError(f"expected (68, 2) or (5, 2) landmarks, got {points.shape}")


@dataclass
class FaceAlignment:
    """Where an aligned ``size`` x ``size`` crop comes from in a ``photo_size`` (W, H) photo.

    ``quad`` (4, 2): the crop's corners upper-left, lower-left, lower-right, upper-right in photo edge
    coordinates. The map is a similarity (rotation, uniform scale, translation).
    """

    quad: np.ndarray
    size: int
    photo_size: Tuple[int, int]

    def crop_to_photo(self) -> np.ndarray:
        """(2, 3) affine A: photo_xy = A @ (u, v, 1) for crop edge coordinates (u, v) in [0, size]."""
        q = np.asarray(self.quad, np.float64)
        return np.column_stack([(q[3] - q[0]) / self.size, (q[1] - q[0]) / self.size, q[0]])

    def photo_to_crop(self) -> np.ndarray:
        """(2, 3) inverse of :meth:`crop_to_photo`."""
        full = np.vstack([self.crop_to_photo(), [0, 0, 1]])
        return np.linalg.inv(full)[:2]

    def to_crop(self, points: np.ndarray) -> np.ndarray:
        """Photo index coordinates (K, 2) -> crop index coordinates (K, 2)."""
        m = self.photo_to_crop()
        p = np.asarray(points, np.float64) + 0.5
        return p @ m[:, :2].T + m[:, 2] - 0.5

    def to_dict(self) -> Dict:
        return {"quad": np.round(np.asarray(self.quad, np.float64), 4).tolist(), "size": int(self.size),
                "photo_size": [int(v) for v in self.photo_size],
                "crop_to_photo": np.round(self.crop_to_photo(), 6).tolist(),
                "photo_to_crop": np.round(self.photo_to_crop(), 6).tolist(),
                "coordinates": "pixel edges: pixel (i, j) centre at (i + 0.5, j + 0.5)"}

    @classmethod
    def from_dict(cls, data: Dict) -> "FaceAlignment":
        return cls(np.asarray(data["quad"], np.float64), int(data["size"]), tuple(int(v) for v in data["photo_size"]))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


def _gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """(H, W, C) float32 -> the same blurred per channel (truncated at 4 sigma, symmetric edges, like scipy)."""
    radius = max(1, int(4.0 * sigma + 0.5))
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (t / sigma) ** 2)
    kernel = (kernel / kernel.sum()).float()
    x = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))[:, None]  # (C, 1, H, W)
    h, w = image.shape[:2]
    for dim, length in ((3, w), (2, h)):
        pad_amount = min(radius, length - 1) if length > 1 else 0
        pads = (pad_amount, pad_amount, 0, 0) if dim == 3 else (0, 0, pad_amount, pad_amount)
        padded = F.pad(x, pads, mode="replicate" if pad_amount < radius else "reflect") if pad_amount else x
        if pad_amount < radius:  # tiny image: extend further by replication
            extra = radius - pad_amount
            pads = (extra, extra, 0, 0) if dim == 3 else (0, 0, extra, extra)
            padded = F.pad(padded, pads, mode="replicate")
        k = kernel.view(1, 1, 1, -1) if dim == 3 else kernel.view(1, 1, -1, 1)
        x = F.conv2d(padded, k)
    return x[:, 0].numpy().transpose(1, 2, 0)


def aligned_crop(photo: np.ndarray, quad: np.ndarray, size: int, enable_padding: bool = True) -> np.ndarray:
    """FFHQ crop: photo (H, W, 3) uint8 RGB, quad (4, 2) edge coordinates -> (size, size, 3) uint8."""
    img = Image.fromarray(np.ascontiguousarray(photo), "RGB")
    quad = np.asarray(quad, np.float64).copy()
    qsize = float(np.hypot(*(quad[3] - quad[0])))
    # shrink
    shrink = int(math.floor(qsize / size * 0.5))
    if shrink > 1:
        rsize = (max(1, int(round(img.size[0] / shrink))), max(1, int(round(img.size[1] / shrink))))
        quad *= [rsize[0] / img.size[0], rsize[1] / img.size[1]]
        qsize /= shrink
        img = img.resize(rsize, Image.LANCZOS)
    # crop
    border = max(int(round(qsize * 0.1)), 3)
    crop = [int(math.floor(quad[:, 0].min())), int(math.floor(quad[:, 1].min())),
            int(math.ceil(quad[:, 0].max())), int(math.ceil(quad[:, 1].max()))]
    crop = [max(crop[0] - border, 0), max(crop[1] - border, 0),
            min(crop[2] + border, img.size[0]), min(crop[3] + border, img.size[1])]
    if crop[2] - crop[0] < img.size[0] or crop[3] - crop[1] < img.size[1]:
        if crop[2] <= crop[0] or crop[3] <= crop[1]:
            raise ValueError("the face lies outside the photo")
        img = img.crop(tuple(crop))
        quad -= crop[0:2]
    # pad
    pad = [int(math.floor(quad[:, 0].min())), int(math.floor(quad[:, 1].min())),
           int(math.ceil(quad[:, 0].max())), int(math.ceil(quad[:, 1].max()))]
    pad = [max(-pad[0] + border, 0), max(-pad[1] + border, 0),
           max(pad[2] - img.size[0] + border, 0), max(pad[3] - img.size[1] + border, 0)]
    if enable_padding and max(pad) > border - 4:
        pad = np.maximum(pad, int(round(qsize * 0.3)))
        arr = np.asarray(img, np.float32)
        arr = np.pad(arr, ((pad[1], pad[3]), (pad[0], pad[2]), (0, 0)), "reflect")
        h, w, _ = arr.shape
        yy, xx = np.ogrid[:h, :w]
        xx, yy = xx.astype(np.float32)[..., None], yy.astype(np.float32)[..., None]
        mask = np.maximum(1.0 - np.minimum(xx / pad[0], (w - 1 - xx) / pad[2]),
                          1.0 - np.minimum(yy / pad[1], (h - 1 - yy) / pad[3]))
        blur = qsize * 0.02
        arr = arr + (_gaussian_blur(arr, blur) - arr) * np.clip(mask * 3.0 + 1.0, 0.0, 1.0)
        arr = arr + (np.median(arr, axis=(0, 1)) - arr) * np.clip(mask, 0.0, 1.0)
        img = Image.fromarray(np.uint8(np.clip(np.rint(arr), 0, 255)), "RGB")
        quad += pad[:2]
    transform_size = size * TRANSFORM_FACTOR
    img = img.transform((transform_size, transform_size), Image.QUAD, tuple(quad.flatten()), Image.BILINEAR)
    img = img.resize((size, size), Image.LANCZOS)
    return np.asarray(img)


def canonical_positions(quad: np.ndarray, landmarks: np.ndarray, size: int) -> np.ndarray:
    """Where the FFHQ construction puts a face's eye centres and mouth corners in a ``size`` crop.

    ``landmarks`` (68 or 5, 2) in photo index coordinates; returns (4, 2) crop index coordinates:
    left eye, right eye, left mouth corner, right mouth corner.
    """
    points = np.asarray(landmarks, np.float64)
    if points.shape == (68, 2):
        keys = np.stack([points[36:42].mean(0), points[42:48].mean(0), points[48], points[54]])
    else:
        keys = points[[0, 1, 3, 4]]
    photo = FaceAlignment(quad, size, (0, 0))
    return photo.to_crop(keys)
