"""Diffusion math: schedules, parameterisations and deterministic DDIM, as small pure functions.

Conventions (the official Diff-AE code, the default of every model folder):

* base process of T = 1000 steps; ``linear`` betas = linspace(1e-4, 0.02, T)
  (images) or ``const0.008`` (latent DDIM), alpha-bar = cumprod(1 - beta),
  all float64;
* ``ddimN`` respacing: timesteps S = range(0, T, s) for the smallest stride s
  giving exactly N steps; the respaced alpha-bar is recomputed from the
  respaced betas exactly as the official ``SpacedDiffusion`` does;
* the network is called with the original timestep S_i (int64), not with i;
* coefficients sqrt(1/a) and sqrt(1/a - 1) are computed in float64 and cast to
  float32; a_prev / a_next are cast to float32 before their square roots.

Models trained by diffedit may also use (recorded in their config.json):

* ``cosine`` betas (Nichol & Dhariwal 2021);
* ``zero_terminal_snr``: the rescaling of Lin et al. 2024 ("Common Diffusion
  Noise Schedules and Sample Steps are Flawed", Algorithm 1), so that
  alpha-bar_{T-1} = 0 and x_T carries no signal at all;
* ``v`` prediction (Salimans & Ho 2022): v = sqrt(a) eps - sqrt(1-a) x0, the
  only one of the two that can denoise at alpha-bar = 0 (x0 = -v there);
* ``linspace`` timestep spacing: round(linspace(0, T-1, N)), which starts
  decoding at the last timestep (needed with a zero terminal SNR).

A sampler may ask for ``quadratic`` spacing instead of the model's own (uniform)
one: timesteps dense at low noise, where a few-step solver's error in the
image's details comes from (the "quadratic" sequence of Song et al. 2021, §D.2;
DPM-Solver's ``time_quadratic``). Measured in docs/speed.md.

A model function has the signature ``out = model_fn(x, t)`` with x (N, ...)
and t (N,) int64, ``out`` being eps or v as the schedule's ``prediction``
says; it may run in reduced precision, the update itself is float32.
"""

from __future__ import annotations

import math

import numpy as np
from dataclasses import dataclass
from typing import Callable, Optional

import torch

ModelFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
StepCallback = Optional[Callable[[int, torch.Tensor, torch.Tensor], None]]


PREDICTIONS = ("eps", "v")
SPACINGS = ("official", "linspace")          # a model's own spacing (its config.json)
SAMPLING_SPACINGS = ("uniform", "quadratic")  # what a sampler may ask for; uniform = the model's own


def make_betas(schedule: str, num_steps: int = 1000, zero_terminal_snr: bool = False) -> torch.Tensor:
    """Base betas (T,) float64: ``"linear"``, ``"cosine"`` or ``"constB"`` (e.g. ``"const0.008"``).

    ``zero_terminal_snr`` rescales them so that alpha-bar_{T-1} = 0 (:func:`rescale_zero_terminal_snr`).
    """
    if schedule == "linear":
        scale = 1000 / num_steps
        # numpy's linspace, bit-identical to the official schedule
        betas = torch.from_numpy(np.linspace(scale * 1e-4, scale * 0.02, num_steps, dtype=np.float64))
    elif schedule == "cosine":
        betas = cosine_betas(num_steps)
    elif schedule.startswith("const"):
        betas = torch.full((num_steps,), float(schedule[len("const"):]), dtype=torch.float64)
    else:
        raise ValueError(f"unknown beta schedule {schedule!r} (use 'linear', 'cosine' or 'const<beta>')")
    return rescale_zero_terminal_snr(betas) if zero_terminal_snr else betas


def cosine_betas(num_steps: int, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """Nichol & Dhariwal's cosine schedule: alpha-bar(t) = cos^2((t/T + s) / (1 + s) * pi/2); (T,) float64."""
    t = np.arange(num_steps + 1, dtype=np.float64) / num_steps
    f = np.cos((t + s) / (1 + s) * math.pi / 2) ** 2
    return torch.from_numpy(np.minimum(1 - f[1:] / f[:-1], max_beta))


def rescale_zero_terminal_snr(betas: torch.Tensor) -> torch.Tensor:
    """Lin et al. 2024, Algorithm 1: shift and scale sqrt(alpha-bar) so its last value is 0 and its first unchanged.

    betas (T,) -> betas (T,) float64 with beta_{T-1} = 1 (alpha-bar_{T-1} = 0).
    """
    root = torch.cumprod(1.0 - betas.double(), dim=0).sqrt()
    first, last = root[0].clone(), root[-1].clone()
    root = (root - last) * first / (first - last)
    alphas_cumprod = root ** 2
    alphas = torch.cat([alphas_cumprod[:1], alphas_cumprod[1:] / alphas_cumprod[:-1]])
    return 1.0 - alphas


def respaced_timesteps(num_train_steps: int, num_steps: int, spacing: str = "official") -> torch.Tensor:
    """(N,) int64 original timesteps, ascending.

    ``official``: the ``ddimN`` spacing, range(0, T, s) for the smallest stride s giving N steps;
    ``linspace``: round(linspace(0, T-1, N)) (first and last timestep included; N = 1 gives [T-1]);
    ``quadratic``: :func:`quadratic_timesteps`.
    """
    if not 1 <= num_steps <= num_train_steps:
        raise ValueError(f"the number of DDIM steps must be in 1..{num_train_steps}, got {num_steps}")
    if spacing == "quadratic":
        return quadratic_timesteps(num_train_steps, num_steps)
    if spacing == "linspace":
        if num_steps == 1:
            return torch.tensor([num_train_steps - 1], dtype=torch.int64)
        return torch.from_numpy(np.round(np.linspace(0, num_train_steps - 1, num_steps)).astype(np.int64))
    if spacing != "official":
        raise ValueError(f"unknown timestep spacing {spacing!r} (use one of {', '.join(SPACINGS + ('quadratic',))})")
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


def quadratic_timesteps(num_train_steps: int, num_steps: int) -> torch.Tensor:
    """(N,) int64 ascending from 0 to T-1: round((k / (N-1))^2 (T-1)) for k = 0..N-1, raised to at least k
    where the squares crowd together below one timestep apart (so the N steps stay distinct)."""
    if num_steps == 1:
        return torch.tensor([num_train_steps - 1], dtype=torch.int64)
    square = np.round(np.linspace(0.0, 1.0, num_steps) ** 2 * (num_train_steps - 1)).astype(np.int64)
    return torch.from_numpy(np.maximum(square, np.arange(num_steps, dtype=np.int64)))


@dataclass(frozen=True)
class DDIMSchedule:
    """A respaced schedule: ``timesteps`` (K,) int64, ``alphas_cumprod`` (K,) float64 and what the network predicts."""

    timesteps: torch.Tensor
    alphas_cumprod: torch.Tensor
    prediction: str = "eps"

    def __len__(self) -> int:
        return len(self.timesteps)


def ddim_schedule(betas: torch.Tensor, num_steps: int, spacing: str = "official", prediction: str = "eps") -> DDIMSchedule:
    """Respace base betas (T,) float64 to ``num_steps`` DDIM steps (official ``SpacedDiffusion``)."""
    base = torch.cumprod(1.0 - betas.double(), dim=0)
    timesteps = respaced_timesteps(len(betas), num_steps, spacing)
    new_betas, last = [], 1.0
    for a in base[timesteps].tolist():
        new_betas.append(1.0 - a / last)
        last = a
    alphas = torch.cumprod(1.0 - torch.tensor(new_betas, dtype=torch.float64), dim=0)
    return DDIMSchedule(timesteps=timesteps, alphas_cumprod=alphas, prediction=prediction)


@dataclass(frozen=True)
class Parameterization:
    """The diffusion process a network was trained for (fields of an autoencoder's config.json).

    The defaults are the official Diff-AE process: eps prediction, linear betas, ``ddimN`` spacing.
    """

    beta_schedule: str = "linear"
    diffusion_steps: int = 1000
    prediction: str = "eps"
    zero_terminal_snr: bool = False
    timestep_spacing: str = "official"

    def __post_init__(self):
        if self.prediction not in PREDICTIONS:
            raise ValueError(f"unknown prediction {self.prediction!r} (use one of {', '.join(PREDICTIONS)})")
        if self.timestep_spacing not in SPACINGS:
            raise ValueError(f"unknown timestep spacing {self.timestep_spacing!r} (use one of {', '.join(SPACINGS)})")
        if self.zero_terminal_snr and self.prediction == "eps":
            raise ValueError("a zero terminal SNR needs v prediction (eps cannot be denoised at alpha-bar = 0)")
        make_betas(self.beta_schedule, 2)  # raises on an unknown schedule name

    @classmethod
    def of(cls, config) -> "Parameterization":
        """The parameterisation recorded in a config object (missing fields: the official defaults)."""
        return cls(**{name: getattr(config, name) for name in cls.__dataclass_fields__ if hasattr(config, name)})

    def betas(self) -> torch.Tensor:
        return make_betas(self.beta_schedule, self.diffusion_steps, self.zero_terminal_snr)

    def alphas_cumprod(self) -> torch.Tensor:
        """(T,) float64."""
        return torch.cumprod(1.0 - self.betas(), dim=0)

    def schedule(self, num_steps: int, spacing: Optional[str] = None) -> DDIMSchedule:
        """``num_steps`` steps of this process; ``spacing`` (:data:`SAMPLING_SPACINGS`): None or ``uniform`` is
        the model's own ``timestep_spacing``, ``quadratic`` is dense at low noise (:func:`quadratic_timesteps`)."""
        if spacing not in (None,) + SAMPLING_SPACINGS:
            raise ValueError(f"unknown sampling spacing {spacing!r} (use one of {', '.join(SAMPLING_SPACINGS)})")
        own = spacing in (None, "uniform")
        return ddim_schedule(self.betas(), num_steps, self.timestep_spacing if own else spacing, self.prediction)


# -- training-side formulas ---------------------------------------------------

def _expand(alpha_bar: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return alpha_bar.to(like.dtype).reshape(-1, *([1] * (like.dim() - 1)))


def q_sample(x0: torch.Tensor, noise: torch.Tensor, alpha_bar: torch.Tensor) -> torch.Tensor:
    """Forward noising x_t = sqrt(a) x0 + sqrt(1 - a) noise; alpha_bar (N,) per row."""
    a = _expand(alpha_bar, x0)
    return a.sqrt() * x0 + (1 - a).sqrt() * noise


def prediction_target(x0: torch.Tensor, noise: torch.Tensor, alpha_bar: torch.Tensor, prediction: str) -> torch.Tensor:
    """What the network learns to output: eps, or v = sqrt(a) eps - sqrt(1 - a) x0."""
    if prediction == "eps":
        return noise
    if prediction == "v":
        a = _expand(alpha_bar, x0)
        return a.sqrt() * noise - (1 - a).sqrt() * x0
    raise ValueError(f"unknown prediction {prediction!r}")


def loss_weights(alpha_bar: torch.Tensor, prediction: str, weighting: str = "uniform") -> torch.Tensor:
    """Per-sample weights (N,) of the squared error on the prediction target.

    ``uniform``; ``min-snr[:gamma]`` (Hang et al. 2023, gamma 5): min(SNR, gamma) / SNR on the eps error,
    i.e. min(SNR, gamma) / (SNR + 1) on the v error; ``p2[:gamma[:k]]`` (Choi et al. 2022, gamma 1, k 1):
    1 / (k + SNR)^gamma on the eps error, times SNR / (SNR + 1) on the v error (the same weight in x0
    terms). SNR = a / (1 - a).
    """
    a = alpha_bar.double()
    snr = a / (1 - a).clamp_min(1e-20)
    name, *text = weighting.split(":")
    try:
        args = [float(v) for v in text]
    except ValueError:
        args = None
    if args is None or not all(math.isfinite(v) and v > 0 for v in args):
        raise ValueError(f"loss weighting {weighting!r}: the parameters must be positive numbers")
    if name == "uniform" and not args:
        return torch.ones_like(alpha_bar, dtype=torch.float32)
    if name == "min-snr":
        gamma = args[0] if args else 5.0
        eps_weight = torch.where(snr > 0, snr.clamp(max=gamma) / snr.clamp_min(1e-20), torch.ones_like(snr))
    elif name == "p2":
        gamma = args[0] if args else 1.0
        k = args[1] if len(args) > 1 else 1.0
        eps_weight = 1.0 / (k + snr) ** gamma
    else:
        raise ValueError(f"unknown loss weighting {weighting!r} (use uniform, min-snr[:gamma] or p2[:gamma[:k]])")
    if prediction == "v":
        eps_weight = eps_weight * snr / (snr + 1)
    return eps_weight.float()


def _coef(value: float, device) -> torch.Tensor:
    return torch.tensor(value, dtype=torch.float64).float().to(device)


def predict_x0(x: torch.Tensor, eps: torch.Tensor, alpha_bar: float, clip: bool) -> torch.Tensor:
    """x̂0 = sqrt(1/a) x - sqrt(1/a - 1) eps, optionally clamped to [-1, 1]."""
    x0 = _coef(math.sqrt(1.0 / alpha_bar), x.device) * x - _coef(math.sqrt(1.0 / alpha_bar - 1.0), x.device) * eps
    return x0.clamp(-1, 1) if clip else x0


def split_output(x: torch.Tensor, out: torch.Tensor, alpha_bar: float, prediction: str = "eps",
                 clip: bool = True) -> tuple:
    """The network output at x (alpha-bar ``a``) as (x̂0, eps'), both float32.

    eps: x̂0 = sqrt(1/a) x - sqrt(1/a - 1) eps (official casting); v: x̂0 = sqrt(a) x - sqrt(1 - a) v.
    With ``clip`` x̂0 is clamped to [-1, 1] and eps' re-derived from it, so that
    x = sqrt(a) x̂0 + sqrt(1 - a) eps' holds exactly as in the official sampler.
    At a = 0 only v can be split: x̂0 = -v, eps' = x.
    """
    x = x.float()
    out = out.float()
    if prediction == "eps":
        if alpha_bar <= 0:
            raise ValueError("eps prediction cannot be denoised at alpha-bar = 0")
        x0 = predict_x0(x, out, alpha_bar, clip)
        recip = _coef(math.sqrt(1.0 / alpha_bar), x.device)
        recipm1 = _coef(math.sqrt(1.0 / alpha_bar - 1.0), x.device)
        return x0, (recip * x - x0) / recipm1
    if prediction != "v":
        raise ValueError(f"unknown prediction {prediction!r}")
    root_a = _coef(math.sqrt(alpha_bar), x.device)
    root_1a = _coef(math.sqrt(1.0 - alpha_bar), x.device)
    x0 = root_a * x - root_1a * out
    if not clip:
        return x0, root_1a * x + root_a * out
    x0 = x0.clamp(-1, 1)
    if alpha_bar >= 1:
        return x0, out
    return x0, (x - root_a * x0) / root_1a


def ddim_move(x: torch.Tensor, out: torch.Tensor, alpha_bar: float, alpha_bar_to: float, clip: bool,
              prediction: str = "eps"):
    """One deterministic DDIM move from alpha-bar ``a`` to ``a_to`` (either direction).

    Returns (x_new, x̂0): x_new = x̂0 sqrt(a_to) + sqrt(1 - a_to) eps', with (x̂0, eps') from
    :func:`split_output` (eps' re-derived from the clipped x̂0).
    """
    x0, eps = split_output(x, out, alpha_bar, prediction, clip)
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
        out = model_fn(x, _batch_t(schedule.timesteps[i], x))
        x, x0 = ddim_move(x, out, alphas[i], alphas[i - 1] if i > 0 else 1.0, clip, schedule.prediction)
        if callback is not None:
            callback(step, x, x0)
    return x


def _log_snr(alpha_bar: float) -> float:
    """lambda = log(alpha / sigma) = 0.5 log(a / (1 - a)); -inf at a = 0, +inf at a = 1."""
    if alpha_bar <= 0.0:
        return -math.inf
    if alpha_bar >= 1.0:
        return math.inf
    return 0.5 * (math.log(alpha_bar) - math.log1p(-alpha_bar))


def _second_order(x0: torch.Tensor, x0_prev: torch.Tensor, r: float) -> torch.Tensor:
    """DPM-Solver++(2M)'s data term D = (1 + 1/(2r)) x̂0 - 1/(2r) x̂0_prev, r = h_prev / h."""
    return (1 + 1 / (2 * r)) * x0 - (1 / (2 * r)) * x0_prev


def dpmpp_2m_sample(model_fn: ModelFn, x_T: torch.Tensor, schedule: DDIMSchedule, clip: bool = True,
                    callback: StepCallback = None) -> torch.Tensor:
    """Deterministic DPM-Solver++(2M) decode (Lu et al. 2022, multistep, data prediction): x_T -> x_0 float32.

    Same steps and network calls as :func:`ddim_sample` over the same schedule. With alpha = sqrt(a),
    sigma = sqrt(1 - a), lambda = log(alpha / sigma) and h = lambda_next - lambda, each step is

        x_next = (sigma_next / sigma) x - alpha_next (exp(-h) - 1) D,
        D = (1 + 1/(2r)) x̂0 - 1/(2r) x̂0_prev,   r = h_prev / h,

    first order (D = x̂0, i.e. DDIM) on the first step, after a step from alpha-bar 0 (h infinite) and on the
    last two steps: the step into alpha-bar 1 gives x_0 = x̂0, and the one before it, the longest in
    log-SNR under time-uniform spacing (r << 1 would amplify the extrapolation), is taken at first
    order as in the "lower order final" of the reference implementation. x̂0 comes from
    :func:`split_output` (clipped with ``clip``).
    """
    alphas = schedule.alphas_cumprod.tolist()
    x = x_T.float()
    x0_prev, h_prev = None, None
    for step, i in enumerate(reversed(range(len(schedule)))):
        a, a_next = alphas[i], alphas[i - 1] if i > 0 else 1.0
        out = model_fn(x, _batch_t(schedule.timesteps[i], x))
        x0, _ = split_output(x, out, a, schedule.prediction, clip)
        if a_next >= 1.0:
            x = x0
        else:
            h = _log_snr(a_next) - _log_snr(a)
            d = x0
            if x0_prev is not None and math.isfinite(h_prev) and i > 1:
                d = _second_order(x0, x0_prev, h_prev / h)
            ratio = math.sqrt((1 - a_next) / (1 - a))
            x = _coef(ratio, x.device) * x - _coef(math.sqrt(a_next) * math.expm1(-h), x.device) * d
            x0_prev, h_prev = x0, h
        if callback is not None:
            callback(step, x, x0)
    return x


SAMPLERS = {"ddim": ddim_sample, "dpmpp-2m": dpmpp_2m_sample}


def ddim_invert(model_fn: ModelFn, x_0: torch.Tensor, schedule: DDIMSchedule, clip: bool = True,
                callback: StepCallback = None) -> torch.Tensor:
    """Deterministic DDIM inversion (official ``encode_stochastic``): x_0 -> x_T float32.

    Runs i = 0 ... K-1 with a_next = alpha-bar_{i+1} (0 at the last step, so x_T
    is the final eps'). With a zero terminal SNR the schedule already ends at
    alpha-bar = 0, so the move into it is step K-2 and the last (identity) step
    is skipped: :func:`inversion_calls` network calls.
    """
    alphas = schedule.alphas_cumprod.tolist()
    x = x_0.float()
    for i in range(inversion_calls(schedule)):
        out = model_fn(x, _batch_t(schedule.timesteps[i], x))
        x, x0 = ddim_move(x, out, alphas[i], alphas[i + 1] if i + 1 < len(alphas) else 0.0, clip, schedule.prediction)
        if callback is not None:
            callback(i, x, x0)
    return x


def dpmpp_2m_invert(model_fn: ModelFn, x_0: torch.Tensor, schedule: DDIMSchedule, clip: bool = True,
                    callback: StepCallback = None) -> torch.Tensor:
    """Deterministic DPM-Solver++(2M) inversion: x_0 -> x_T float32, the probability-flow ODE integrated from the
    data towards noise over the same timesteps and network calls as :func:`ddim_invert`.

    The update of :func:`dpmpp_2m_sample` run forwards (h = lambda_next - lambda < 0), written so that it stays
    finite into alpha-bar 0:

        x_next = (sigma_next / sigma) x + (alpha_next - alpha sigma_next / sigma) D,
        D = (1 + 1/(2r)) x̂0 - 1/(2r) x̂0_prev,   r = h_prev / h,

    first order (D = x̂0: exactly DDIM inversion) on the first step and on the step into alpha-bar 0 (where it
    gives x_T = the predicted noise, as DDIM's last step does).
    """
    alphas = schedule.alphas_cumprod.tolist()
    x = x_0.float()
    x0_prev, h_prev = None, None
    for i in range(inversion_calls(schedule)):
        a, a_next = alphas[i], alphas[i + 1] if i + 1 < len(alphas) else 0.0
        out = model_fn(x, _batch_t(schedule.timesteps[i], x))
        x0, _ = split_output(x, out, a, schedule.prediction, clip)
        h = _log_snr(a_next) - _log_snr(a)
        d = x0
        if x0_prev is not None and math.isfinite(h) and math.isfinite(h_prev) and h != 0:
            d = _second_order(x0, x0_prev, h_prev / h)
        sigma, sigma_next = math.sqrt(1 - a), math.sqrt(1 - a_next)
        x = _coef(sigma_next / sigma, x.device) * x + _coef(math.sqrt(a_next) - math.sqrt(a) * sigma_next / sigma,
                                                             x.device) * d
        x0_prev, h_prev = x0, h
        if callback is not None:
            callback(i, x, x0)
    return x


INVERTERS = {"ddim": ddim_invert, "dpmpp-2m": dpmpp_2m_invert}


def inversion_calls(schedule: DDIMSchedule) -> int:
    """Network calls of :func:`ddim_invert`: K, or K - 1 when the schedule ends at alpha-bar = 0."""
    k = len(schedule)
    return k - 1 if k > 1 and float(schedule.alphas_cumprod[-1]) == 0.0 else k
