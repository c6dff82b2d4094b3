"""How images are inverted and decoded: one value from the command line (or a Python caller) to the sampler.

A :class:`Sampling` names the decoder (``sampler``), its network calls (``steps``), the inversion (``inv_sampler``)
and its calls (``inv_steps``), the timestep ``spacing`` of both, and the network's compute ``precision``. The schedule is built
from it once, at the edge (:func:`diffedit_cli.pipeline.decode` / ``invert``), and handed to the pure sampler
functions of :mod:`diffedit_cli.diffusion`.

:data:`DEFAULT` is what every command uses unless told otherwise, chosen from the reconstruction-vs-network-calls
curves in docs/speed.md: quadratic spacing (timesteps dense at low noise) for inversion and decoding, and
DPM-Solver++ 2M for both (the inversion run towards noise), reconstruct better in 15 + 15 network calls than DDIM
inversion in 50 + 20 and the official setting in 350, with the same edit flip rates.
:data:`OFFICIAL` is the official Diff-AE setting (DDIM inversion and decoding, uniform spacing, 100 decoding and 250
inversion steps, fp32): it reproduces the official numbers. Kept free of torch so the command line can read it at start-up.

Precision (one rule for the command line and the library, :func:`default_precision`): ``None`` means fp16 on
CUDA; on a CPU bf16 where it is native (AVX512-BF16 / AMX), else fp32; ``$DIFFEDIT_CPU_PRECISION`` (fp32 | bf16)
overrides the CPU choice.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Optional

from .errors import DiffeditError

SAMPLER_NAMES = ("ddim", "dpmpp-2m")        # decoders (diffusion.SAMPLERS)
INV_SAMPLER_NAMES = ("ddim", "dpmpp-2m")    # inversions (diffusion.INVERTERS)
SPACINGS = ("uniform", "quadratic")          # uniform = the model's own timesteps
PRECISIONS = ("fp32", "fp16", "bf16")        # the network's compute precision (fp32: the official numbers)
CPU_PRECISION_ENV = "DIFFEDIT_CPU_PRECISION"  # fp32 | bf16: overrides the CPU default
MAX_STEPS = 1000                             # no process diffedit loads has more timesteps


@dataclass(frozen=True)
class Sampling:
    """The sampler, step counts, spacing and precision of one run. ``precision`` None: :func:`default_precision`."""

    sampler: str = "dpmpp-2m"
    steps: int = 15
    inv_steps: int = 15
    spacing: str = "quadratic"
    precision: Optional[str] = None
    inv_sampler: str = "dpmpp-2m"

    def replace(self, **changes) -> "Sampling":
        return dataclasses.replace(self, **changes)

    def check(self, process=None, decode: bool = True, invert: bool = True) -> "Sampling":
        """Refuse names and step counts that cannot run (DiffeditError naming the field), before any compute.

        ``process``: a :class:`diffedit_cli.diffusion.Parameterization`; with it, the step counts in use are
        checked against its schedule (a count that cannot be spaced on it is refused)."""
        if decode and self.sampler not in SAMPLER_NAMES:
            raise DiffeditError(f"sampler '{self.sampler}': choose from {', '.join(SAMPLER_NAMES)}", param="sampler")
        if invert and self.inv_sampler not in INV_SAMPLER_NAMES:
            raise DiffeditError(f"inv_sampler '{self.inv_sampler}': choose from {', '.join(INV_SAMPLER_NAMES)}",
                                param="inv_sampler")
        if (decode or invert) and self.spacing not in SPACINGS:
            raise DiffeditError(f"spacing '{self.spacing}': choose from {', '.join(SPACINGS)}", param="spacing")
        if self.precision is not None and self.precision not in PRECISIONS:
            raise DiffeditError(f"precision must be one of {', '.join(PRECISIONS)} (got '{self.precision}')",
                                param="precision")
        for field, value, used in (("steps", self.steps, decode), ("inv_steps", self.inv_steps, invert)):
            if not used:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_STEPS:
                raise DiffeditError(f"{field} {value!r}: a whole number in 1..{MAX_STEPS}", param=field)
            if process is not None:
                try:
                    process.schedule(value, self.spacing)
                except ValueError as err:
                    raise DiffeditError(f"{field} {value}: {err}", param=field) from None
        return self

    def describe(self, decode: bool = True, invert: bool = True) -> str:
        """One line for report headers: ``dpmpp-2m 20 steps, inversion 50 steps, quadratic spacing, bf16``."""
        parts = []
        if decode:
            parts.append(f"{self.sampler} {self.steps} steps")
        if invert:
            parts.append(f"{'DDIM' if self.inv_sampler == 'ddim' else self.inv_sampler} inversion {self.inv_steps} steps")
        official = self.sampler == OFFICIAL.sampler and self.spacing == OFFICIAL.spacing
        parts.append(f"{self.spacing} spacing")
        parts.append(self.precision or "default precision")
        return ", ".join(parts) + (" (the official sampler)" if official and decode else "")


DEFAULT = Sampling()
OFFICIAL = Sampling(sampler="ddim", steps=100, inv_steps=250, spacing="uniform", precision="fp32", inv_sampler="ddim")
# what the evaluation commands measure with unless told otherwise: the official sampler at 20 + 20 steps, fp32
EVALUATION = OFFICIAL.replace(steps=20, inv_steps=20)


def default_precision(device_type: str, native_bf16: bool) -> str:
    """The precision a run gets when none is asked for: fp16 on CUDA; on a CPU bf16 where it is native (AVX512-BF16
    or AMX), else fp32; ``$DIFFEDIT_CPU_PRECISION`` (fp32 | bf16) overrides the CPU choice."""
    if device_type == "cuda":
        return "fp16"
    chosen = os.environ.get(CPU_PRECISION_ENV, "").strip().lower()
    if chosen and chosen not in ("fp32", "bf16"):
        raise DiffeditError(f"${CPU_PRECISION_ENV} must be fp32 or bf16, got '{chosen}'")
    return chosen or ("bf16" if native_bf16 else "fp32")
