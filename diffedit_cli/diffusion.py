"""Diffusion math: schedules and deterministic DDIM, as small pure functions.

Conventions (the official Diff-AE code):

* base process of T = 1000 steps; ``linear`` betas = linspace(1e-4, 0.02, T)
  (images) or ``const0.008`` (latent DDIM), alpha-bar = cumprod(1 - beta),
  all float64;
* ``ddimN`` respacing: timesteps S = range(0, T, s) for the smallest stride s
  giving exactly N steps; the respaced alpha-bar is recomputed from the
  respaced betas exactly as the official ``SpacedDiffusion`` does;
* the network is called with the original timestep S_i (int64), not with i;
* coefficients sqrt(1/a) and sqrt(1/a - 1) are computed in float64 and cast to
  float32; a_prev / a_next are cast to float32 before their square roots.

A model function has the signature ``eps = model_fn(x, t)`` with x (N, ...)
and t (N,) int64; it may run in reduced precision, the update itself is float32.
"""

from __future__ import annotations

import math

import numpy as np
from dataclasses import dataclass
from typing import Callable, Optional

import torch

ModelFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
StepCallback = Optional[Callable[[int, torch.Tensor, torch.Tensor], None]]


def make_betas(schedule: str, num_steps: int = 1000) -> torch.Tensor:
    """Base betas (T,) float64: ``"linear"`` or ``"constB"`` (e.g. ``"const0.008"``)."""
    if schedule == "linear":
        scale = 1000 / num_steps
        # numpy's linspace, bit-identical to the official schedule
        return torch.from_numpy(np.linspace(scale * 1e-4, scale * 0.02, num_steps, dtype=np.float64))
    if schedule.startswith("const"):
        return torch.full((num_steps,), float(schedule[len("const"):]), dtype=torch.float64)
    raise ValueError(f"unknown beta schedule {schedule!r} (use 'linear' or 'const<beta>')")


def respaced_timesteps(num_train_steps: int, num_steps: int) -> torch.Tensor:
    """Official ``ddimN`` spacing: (N,) int64 original timesteps, ascending."""
    if not 1 <= num_steps <= num_train_steps:
        raise ValueError(f"the number of DDIM steps must be in 1..{num_train_steps}, got {num_steps}")
    if num_steps == num_train_steps:
        return torch.arange(num_train_steps, dtype=torch.int64)
    for stride in range(1, num_train_steps):
        if len(range(0, num_train_steps, stride)) == num_steps:
            return torch.arange(0, num_train_steps, stride, dtype=torch.int64)
    valid = sorted({len(range(0, num_train_steps, s)) for s in range(1, num_train_steps)})
    near = sorted(valid, key=lambda v: abs(v - num_steps))[:3]
    raise ValueError(
        f"{num_steps} DDIM steps cannot be spaced evenly over {num_train_steps}; try one of {sorted(near)}"
    )


@dataclass(frozen=True)
class DDIMSchedule:
    """A respaced schedule: ``timesteps`` (K,) int64 and ``alphas_cumprod`` (K,) float64."""

    timesteps: torch.Tensor
    alphas_cumprod: torch.Tensor

    def __len__(self) -> int:
        return len(self.timesteps)


def ddim_schedule(betas: torch.Tensor, num_steps: int) -> DDIMSchedule:
    """Respace base betas (T,) float64 to ``num_steps`` DDIM steps (official ``SpacedDiffusion``)."""
    base = torch.cumprod(1.0 - betas.double(), dim=0)
    timesteps = respaced_timesteps(len(betas), num_steps)
    new_betas, last = [], 1.0
    for a in base[timesteps].tolist():
        new_betas.append(1.0 - a / last)
        last = a
    alphas = torch.cumprod(1.0 - torch.tensor(new_betas, dtype=torch.float64), dim=0)
    return DDIMSchedule(timesteps=timesteps, alphas_cumprod=alphas)


def _coef(value: float, device) -> torch.Tensor:
    return torch.tensor(value, dtype=torch.float64).float().to(device)


def predict_x0(x: torch.Tensor, eps: torch.Tensor, alpha_bar: float, clip: bool) -> torch.Tensor:
    """x̂0 = sqrt(1/a) x - sqrt(1/a - 1) eps, optionally clamped to [-1, 1]."""
    x0 = _coef(math.sqrt(1.0 / alpha_bar), x.device) * x - _coef(math.sqrt(1.0 / alpha_bar - 1.0), x.device) * eps
    return x0.clamp(-1, 1) if clip else x0


def ddim_move(x: torch.Tensor, eps: torch.Tensor, alpha_bar: float, alpha_bar_to: float, clip: bool):
    """One deterministic DDIM move from alpha-bar ``a`` to ``a_to`` (either direction).

    Returns (x_new, x̂0): x_new = x̂0 sqrt(a_to) + sqrt(1 - a_to) eps', with
    eps' = (sqrt(1/a) x - x̂0) / sqrt(1/a - 1) re-derived from the (clipped) x̂0.
    """
    x = x.float()
    eps = eps.float()
    x0 = predict_x0(x, eps, alpha_bar, clip)
    recip = _coef(math.sqrt(1.0 / alpha_bar), x.device)
    recipm1 = _coef(math.sqrt(1.0 / alpha_bar - 1.0), x.device)
    eps = (recip * x - x0) / recipm1
    a_to = _coef(alpha_bar_to, x.device)
    return x0 * torch.sqrt(a_to) + torch.sqrt(1 - a_to) * eps, x0


def _batch_t(t: int, x: torch.Tensor) -> torch.Tensor:
    return torch.full((x.shape[0],), int(t), dtype=torch.int64, device=x.device)


def ddim_sample(model_fn: ModelFn, x_T: torch.Tensor, schedule: DDIMSchedule, clip: bool = True,
                callback: StepCallback = None) -> torch.Tensor:
    """Deterministic DDIM decode (eta = 0): x_T (N, ...) -> x_0 (N, ...) float32.

    Runs i = K-1 ... 0; ``callback(step, x, x̂0)`` after each step.
    """
    alphas = schedule.alphas_cumprod.tolist()
    x = x_T.float()
    for step, i in enumerate(reversed(range(len(schedule)))):
        eps = model_fn(x, _batch_t(schedule.timesteps[i], x))
        x, x0 = ddim_move(x, eps, alphas[i], alphas[i - 1] if i > 0 else 1.0, clip)
        if callback is not None:
            callback(step, x, x0)
    return x


def ddim_invert(model_fn: ModelFn, x_0: torch.Tensor, schedule: DDIMSchedule, clip: bool = True,
                callback: StepCallback = None) -> torch.Tensor:
    """Deterministic DDIM inversion (official ``encode_stochastic``): x_0 -> x_T float32.

    Runs i = 0 ... K-1 with a_next = alpha-bar_{i+1} (0 at the last step, so x_T
    is the final eps').
    """
    alphas = schedule.alphas_cumprod.tolist()
    x = x_0.float()
    for i in range(len(schedule)):
        eps = model_fn(x, _batch_t(schedule.timesteps[i], x))
        x, x0 = ddim_move(x, eps, alphas[i], alphas[i + 1] if i + 1 < len(alphas) else 0.0, clip)
        if callback is not None:
            callback(i, x, x0)
    return x
