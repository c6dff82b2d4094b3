"""Resolution levels of semantic codes: parsing ``levels``, style mixing, level-restricted codes.

Levels are numbered from 1 on the command line (``levels 3-4``): level 1 is the finest (full-resolution
UNet blocks), level L the coarsest (lowest-resolution UNet blocks and the middle block), L =
``len(channel_mult)`` of the autoencoder. Library functions take 0-based level lists.

Two routes, one interface (:func:`level_styles`):

* HDAE models (``networks/hdae.py``): the code (N, L*D) holds one D-wide slice per level; taking levels from
  another code swaps those slices. For HDAE(U) this changes exactly the UNet blocks of those levels; for
  HDAE(E) every block sees the mixed code.
* plain Diff-AE models (one code for every block): **our extension** — the blocks at the chosen levels get
  the other code's AdaGN projections, the rest keep the base code's (see docs/hdae.md).
"""

from __future__ import annotations

from typing import List, Optional, Sequence

import torch

from ..errors import InputError
from .hdae import block_levels, is_hierarchical


def num_levels(autoencoder) -> int:
    return len(autoencoder.config.channel_mult)


def parse_levels(spec: Optional[str], n_levels: int) -> Optional[List[int]]:
    """``"3-4"`` / ``"1,3"`` / ``"2"`` / ``"all"`` (1-based, inclusive ranges) -> sorted 0-based list; None -> None."""
    if spec is None:
        return None
    text = spec.strip().lower()
    if text == "all":
        return list(range(n_levels))
    levels = set()
    try:
        for part in text.split(","):
            part = part.strip()
            if not part:
                continue
            lo, sep, hi = part.partition("-")
            lo_i = int(lo)
            hi_i = int(hi) if sep else lo_i
            if lo_i > hi_i:
                raise ValueError
            if not (1 <= lo_i <= n_levels and 1 <= hi_i <= n_levels):  # checked before the range is built
                raise InputError(f"levels '{spec}': this model has levels 1..{n_levels} (1 = finest, "
                                 f"{n_levels} = coarsest)", param="levels")
            levels.update(range(lo_i, hi_i + 1))
    except ValueError:
        raise InputError(f"levels '{spec}': expected levels like 3-4, 1,3 or all (1 = finest, "
                         f"{n_levels} = coarsest)", param="levels") from None
    bad = sorted(v for v in levels if not 1 <= v <= n_levels)
    if bad or not levels:
        raise InputError(f"levels '{spec}': this model has levels 1..{n_levels} (1 = finest, {n_levels} = coarsest)",
                         param="levels")
    return sorted(v - 1 for v in levels)


def check_levels(levels: Optional[Sequence[int]], autoencoder) -> Optional[List[int]]:
    """Sorted distinct 0-based ``levels`` of ``autoencoder`` (0 = finest), None -> None; out of range: InputError."""
    if levels is None:
        return None
    n_levels = num_levels(autoencoder)
    found = sorted({int(v) for v in levels})
    if not found or found[0] < 0 or found[-1] >= n_levels:
        raise InputError(f"levels {list(levels)}: this model has levels 0..{n_levels - 1} (0-based, 0 = finest)")
    return found


def format_levels(levels: Sequence[int]) -> str:
    """0-based list -> the 1-based text of ``levels``."""
    return ",".join(str(v + 1) for v in levels)


def level_mask(autoencoder, levels: Sequence[int]) -> torch.Tensor:
    """bool (L*D,): True on the coordinates of ``levels`` (0-based) of a hierarchical code."""
    cfg = autoencoder.config
    mask = torch.zeros(cfg.style_channels, dtype=torch.bool)
    for level in levels:
        mask[cfg.level_slices()[level]] = True
    return mask


def mix_codes(autoencoder, z_base: torch.Tensor, z_other: torch.Tensor, levels: Sequence[int]) -> torch.Tensor:
    """Hierarchical codes (N, L*D): ``z_base`` with the slices of ``levels`` taken from ``z_other``."""
    mask = level_mask(autoencoder, levels).to(z_base.device)
    return torch.where(mask, z_other.to(z_base.device), z_base)


def level_styles(autoencoder, z_base: torch.Tensor, z_other: torch.Tensor,
                 levels: Optional[Sequence[int]]) -> List[torch.Tensor]:
    """Per-block AdaGN styles: the blocks of ``levels`` driven by ``z_other``, the rest by ``z_base`` (both (N, D)).

    ``levels`` None means all levels (plain ``project_style(z_other)``).
    """
    if levels is None:
        return autoencoder.project_style(z_other)
    if is_hierarchical(autoencoder):
        return autoencoder.project_style(mix_codes(autoencoder, z_base, z_other, levels))
    base, other = autoencoder.project_style(z_base), autoencoder.project_style(z_other)
    chosen = set(levels)
    return [o if level in chosen else b for b, o, level in zip(base, other, block_levels(autoencoder))]


def level_layout(autoencoder) -> dict:
    """What a latent file records about the code layout: arch, levels, per-level width."""
    cfg = autoencoder.config
    if is_hierarchical(autoencoder):
        return {"arch": cfg.arch, "levels": cfg.num_levels, "level_channels": cfg.level_channels,
                "order": "finest first: z_sem[l*D:(l+1)*D] is level l+1"}
    return {"arch": cfg.arch, "levels": 1, "level_channels": cfg.style_channels}
