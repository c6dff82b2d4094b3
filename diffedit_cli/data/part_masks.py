"""Per-pixel loss weights from part masks: make the training loss look harder at small parts.

A face's mouth and eyes cover about 3 % of a 64 px image, so an unweighted denoising loss gains little from
carrying them in the semantic code. A weight map raises their share: pixel weight = the largest weight of
the (dilated) parts covering it, 1 elsewhere. Masks are one ``.npz`` per image (a bool (H, W) array per part
name), as ``diffedit data toyfaces`` writes them next to ``images/``; for photos a face parser gives the same.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import DiffeditError, InputError


def parse_part_weights(spec: str) -> Dict[str, float]:
    """``"mouth=8,eyes=8"`` -> ``{"mouth": 8.0, "eyes": 8.0}``; every weight a finite number >= 1."""
    weights: Dict[str, float] = {}
    for item in filter(None, (s.strip() for s in str(spec).split(","))):
        name, sep, value = item.partition("=")
        try:
            weight = float(value) if sep else float("nan")
        except ValueError:
            weight = float("nan")
        if not name or not math.isfinite(weight) or weight < 1:
            raise DiffeditError(f"part weights: cannot read '{item}' (use part=weight with a weight >= 1, e.g. mouth=8,eyes=8)")
        weights[name.strip()] = weight
    return weights


def weight_map(masks: Dict[str, np.ndarray], weights: Dict[str, float], size: int, dilate: int = 1) -> torch.Tensor:
    """One image's weight map, float32 (1, size, size): max over covering parts, 1 where none.

    ``masks``: bool (H, W) per part (H = W = size); a part named in ``weights`` but absent from ``masks`` is
    an error; ``dilate`` grows every mask by that many pixels (a square neighbourhood) so that a part's
    outline, where an edit moves it, counts too.
    """
    out = torch.ones(1, size, size)
    for name, weight in weights.items():
        if name not in masks:
            raise InputError(f"part '{name}' is not in the masks (they have: {', '.join(sorted(masks))})")
        mask = torch.from_numpy(np.asarray(masks[name], dtype=np.float32))
        if mask.shape != (size, size):
            raise InputError(f"part mask '{name}' is {tuple(mask.shape)}, the images are {size} x {size}")
        if dilate:
            mask = F.max_pool2d(mask[None, None], 2 * dilate + 1, stride=1, padding=dilate)[0]
        else:
            mask = mask[None]
        out = torch.maximum(out, torch.where(mask > 0, torch.tensor(weight), torch.tensor(1.0)))
    return out


def load_weight_maps(image_files: Sequence[Path], masks_dir: Path, weights: Dict[str, float], size: int,
                     dilate: int = 1) -> torch.Tensor:
    """Weight maps float16 (N, 1, size, size) for images ``image_files`` (row i: ``masks_dir/<stem i>.npz``)."""
    masks_dir = Path(masks_dir)
    if not masks_dir.is_dir():
        raise InputError(f"no part masks: '{masks_dir}' is not a folder (generate the data with masks, or name the folder)")
    out = torch.empty(len(image_files), 1, size, size, dtype=torch.float16)
    missing: List[str] = []
    for i, path in enumerate(image_files):
        mask_path = masks_dir / f"{Path(path).stem}.npz"
        if not mask_path.is_file():
            missing.append(mask_path.name)
            continue
        with np.load(mask_path, allow_pickle=False) as masks:
            out[i] = weight_map({k: masks[k] for k in masks.files}, weights, size, dilate).half()
    if missing:
        raise InputError(f"{len(missing)} image(s) have no part mask in '{masks_dir}' (first: {missing[0]})")
    return out
