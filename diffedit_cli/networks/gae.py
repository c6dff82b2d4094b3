"""Group-supervised autoencoder (GAE, DiffuseGAE section 3.4) on the semantic code z_sem.

The GAE maps z_sem (N, D) to a disentangled code z_dis (N, sum of slice sizes) whose named slices (one per
attribute group: identity, hair, mouth, ...) can be swapped between images, and back. Layout::

    encode: z_sem -> (z_sem - z_mean) / z_std -> MLP, MLP, Bottleneck, MLP, Bottleneck, MLP -> z_dis
    decode: z_dis -> MLP, Bottleneck, MLP, Bottleneck, MLP, MLP -> * z_std + z_mean -> z_sem

Four MLP blocks and two bottleneck blocks on each side, as in the paper. Every block is a skip-connection
block ``out = skip(x) + f(x)`` (``skip`` is the identity, or a linear map when the width changes), so the last
block of the GAE is a skip connection (the paper found training unstable otherwise). Norms: LayerNorm in the
encoder (its input is normalised z_sem), GroupNorm in the decoder (its input is a concatenation of slices);
SiLU everywhere. Norms work per sample, so results never depend on the batch.

``z_mean`` / ``z_std`` (D,) are buffers set from the training codes' statistics.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Dict, List, Sequence, Tuple

import torch
from torch import nn

from ..errors import InputError
from .config import JsonConfig

DEFAULT_SLICES: Tuple[Tuple[str, int], ...] = (
    ("identity", 24), ("hair", 16), ("mouth", 16), ("eyes", 16), ("accessories", 16), ("background", 16),
    ("pose", 16),
)


@dataclass
class GAEConfig(JsonConfig):
    z_sem_dim: int = 256
    hidden: int = 512
    bottleneck_ratio: int = 4  # bottleneck width = hidden // bottleneck_ratio
    slices: List[Tuple[str, int]] = field(default_factory=lambda: [list(s) for s in DEFAULT_SLICES])
    norm_groups: int = 8  # GroupNorm groups in the decoder (reduced to a divisor of the width)

    def __post_init__(self):
        self.slices = [(str(name), int(size)) for name, size in self.slices]
        names = [name for name, _ in self.slices]
        if not self.slices or len(set(names)) != len(names) or any(size < 1 for _, size in self.slices):
            raise ValueError(f"slices must be distinct names with sizes >= 1, got {self.slices}")

    @property
    def z_dis_dim(self) -> int:
        return sum(size for _, size in self.slices)



def _group_norm(width: int, groups: int) -> nn.GroupNorm:
    """GroupNorm with the largest group count <= ``groups`` that divides ``width`` into groups of >= 4."""
    while groups > 1 and (width % groups or width // groups < 4):
        groups -= 1
    return nn.GroupNorm(groups, width)


class MLPBlock(nn.Module):
    """out = skip(x) + Linear(SiLU(Linear(SiLU(Norm(x))))): (N, d_in) -> (N, d_out)."""

    def __init__(self, d_in: int, d_out: int, hidden: int, norm: str, groups: int):
        super().__init__()
        self.norm = nn.LayerNorm(d_in) if norm == "layer" else _group_norm(d_in, groups)
        self.fc1 = nn.Linear(d_in, hidden)
        self.fc2 = nn.Linear(hidden, d_out)
        self.act = nn.SiLU()
        self.skip = nn.Identity() if d_in == d_out else nn.Linear(d_in, d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.skip(x) + self.fc2(self.act(self.fc1(self.act(self.norm(x)))))


class BottleneckBlock(nn.Module):
    """out = x + Linear_up(SiLU(Norm(Linear_down(SiLU(Norm(x)))))): (N, d) -> (N, d), inner width d // ratio."""

    def __init__(self, width: int, ratio: int, norm: str, groups: int):
        super().__init__()
        inner = max(1, width // ratio)
        make = (lambda w: nn.LayerNorm(w)) if norm == "layer" else (lambda w: _group_norm(w, groups))
        self.norm1 = make(width)
        self.down = nn.Linear(width, inner)
        self.norm2 = make(inner)
        self.up = nn.Linear(inner, width)
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.up(self.act(self.norm2(self.down(self.act(self.norm1(x))))))


class GroupAutoencoder(nn.Module):
    """z_sem (N, D) <-> z_dis (N, Z) with named slices; see the module docstring."""

    def __init__(self, cfg: GAEConfig):
        super().__init__()
        self.config = cfg
        d, h, z, r, g = cfg.z_sem_dim, cfg.hidden, cfg.z_dis_dim, cfg.bottleneck_ratio, cfg.norm_groups
        self.encoder = nn.Sequential(
            MLPBlock(d, h, h, "layer", g), MLPBlock(h, h, h, "layer", g), BottleneckBlock(h, r, "layer", g),
            MLPBlock(h, h, h, "layer", g), BottleneckBlock(h, r, "layer", g), MLPBlock(h, z, h, "layer", g))
        self.decoder = nn.Sequential(
            MLPBlock(z, h, h, "group", g), BottleneckBlock(h, r, "group", g), MLPBlock(h, h, h, "group", g),
            BottleneckBlock(h, r, "group", g), MLPBlock(h, h, h, "group", g), MLPBlock(h, d, h, "group", g))
        self.register_buffer("z_mean", torch.zeros(d))
        self.register_buffer("z_std", torch.ones(d))

    # -- slices -------------------------------------------------------------------------------------------------
    @property
    def slice_names(self) -> List[str]:
        return [name for name, _ in self.config.slices]

    def slice_ranges(self) -> Dict[str, slice]:
        """{name: slice of z_dis columns}, in config order."""
        out, start = {}, 0
        for name, size in self.config.slices:
            out[name] = slice(start, start + size)
            start += size
        return out

    def resolve_slice(self, name: str) -> str:
        """A slice name (case-insensitive); unknown names raise an InputError suggesting close ones."""
        lower = {n.lower(): n for n in self.slice_names}
        key = name.strip().lower()
        if key in lower:
            return lower[key]
        close = difflib.get_close_matches(key, list(lower), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(lower[c] for c in close)}?" if close else ""
        raise InputError(f"unknown attribute slice '{name}'{hint} (the GAE has: {', '.join(self.slice_names)})")

    # -- codes --------------------------------------------------------------------------------------------------
    def normalize(self, z_sem: torch.Tensor) -> torch.Tensor:
        return (z_sem - self.z_mean) / self.z_std

    def denormalize(self, z_norm: torch.Tensor) -> torch.Tensor:
        return z_norm * self.z_std + self.z_mean

    def encode_normalized(self, z_norm: torch.Tensor) -> torch.Tensor:
        """Normalised z_sem (N, D) -> z_dis (N, Z)."""
        return self.encoder(z_norm)

    def decode_normalized(self, z_dis: torch.Tensor) -> torch.Tensor:
        """z_dis (N, Z) -> normalised z_sem (N, D)."""
        return self.decoder(z_dis)

    def encode(self, z_sem: torch.Tensor) -> torch.Tensor:
        """z_sem (N, D) as the semantic encoder gives it -> z_dis (N, Z)."""
        return self.encoder(self.normalize(z_sem))

    def decode(self, z_dis: torch.Tensor) -> torch.Tensor:
        """z_dis (N, Z) -> z_sem (N, D) in the semantic encoder's units."""
        return self.denormalize(self.decoder(z_dis))

    def forward(self, z_sem: torch.Tensor) -> torch.Tensor:
        """Reconstruction through the GAE: z_sem (N, D) -> z_sem (N, D)."""
        return self.decode(self.encode(z_sem))


def swap_slices(target: torch.Tensor, source: torch.Tensor, ranges: Sequence[slice]) -> torch.Tensor:
    """A copy of z_dis ``target`` (N, Z) whose columns in ``ranges`` come from ``source`` (N, Z) or (Z,)."""
    out = target.clone()
    source = source.expand_as(target)
    for cols in ranges:
        out[:, cols] = source[:, cols]
    return out

