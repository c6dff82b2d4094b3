"""How a job runs (:class:`RunOptions`): device, :class:`~diffedit_cli.sampling.Sampling`, batching, seed, existing outputs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import torch

from .. import pipeline
from ..diffusion import Parameterization
from ..io.latent_cache import LatentCache
from ..io.models import DiffAEModel
from ..sampling import DEFAULT, Sampling


@dataclass
class RunOptions:
    """How a job runs: device, :class:`~diffedit_cli.sampling.Sampling`, batching, seed, what to do with existing
    outputs, and the latent cache (None: every image is inverted; the command line uses the user's cache)."""

    device: str = "auto"
    sampling: Sampling = DEFAULT
    batch_size: int = 8
    seed: int = 0
    skip_existing: bool = False
    overwrite: bool = False
    relative_to: Optional[str] = None  # outputs mirror the inputs' paths inside this folder (see collect_inputs)
    cache: Optional[LatentCache] = None  # images inverted before are read from it (io.latent_cache)
    shard: Optional[Tuple[int, int]] = None  # (I, N): only the inputs of shard I of N (jobs.shards)

    def validate(self, model: DiffAEModel, decode: bool = True, invert: bool = True) -> None:
        """Check the sampling (names, step counts against the model's schedule) and the device before any work."""
        self.sampling.check(Parameterization.of(model.autoencoder.config), decode, invert)
        self.resolved()

    def resolved(self) -> Tuple[torch.device, str]:
        device = pipeline.pick_device(self.device)
        return device, pipeline.pick_precision(self.sampling.precision, device)
