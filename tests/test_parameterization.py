"""Diffusion parameterisations: schedules, v prediction, zero terminal SNR, loss weights, timestep sampling."""

import dataclasses
import math
from pathlib import Path

import pytest
import torch

from diffedit_cli import diffusion, pipeline
from diffedit_cli.sampling import OFFICIAL
from diffedit_cli.io.models import load_model
from diffedit_cli.networks.autoencoder import AutoencoderConfig
from diffedit_cli.networks.hdae import build_autoencoder
from diffedit_cli.training.diffae import AutoencoderTrainConfig, autoencoder_arch, learning_rate, sample_timesteps

ROOT = Path(__file__).resolve().parents[1]


# -- schedules -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_zero_terminal_snr_ends_at_zero_and_keeps_the_first_value(schedule):
    base = torch.cumprod(1 - diffusion.make_betas(schedule), 0)
    rescaled = torch.cumprod(1 - diffusion.make_betas(schedule, zero_terminal_snr=True), 0)
    assert rescaled[-1].item() == 0.0
    assert base[-1].item() > 0
    assert rescaled[0].item() == pytest.approx(base[0].item(), abs=1e-15)
    assert bool((rescaled[1:] < rescaled[:-1]).all())  # still strictly decreasing
    # sqrt(alpha-bar) is an affine map of the original one (Lin et al., Algorithm 1)
    a, b = base.sqrt(), rescaled.sqrt()
    slope = (b[0] - b[500]) / (a[0] - a[500])
    assert torch.allclose(b, slope * (a - a[-1]), atol=1e-12)


def test_cosine_schedule_follows_its_formula():
    alphas = torch.cumprod(1 - diffusion.make_betas("cosine", 1000), 0)
    f = lambda t: math.cos((t / 1000 + 0.008) / 1.008 * math.pi / 2) ** 2
    for t in (0, 250, 500, 900):
        assert alphas[t].item() == pytest.approx(f(t + 1) / f(0), rel=1e-9)


def test_linspace_spacing_includes_both_ends_and_official_is_unchanged():
    assert diffusion.respaced_timesteps(1000, 10, "linspace").tolist() == [0, 111, 222, 333, 444, 555, 666, 777, 888, 999]
    assert diffusion.respaced_timesteps(1000, 1, "linspace").tolist() == [999]
    assert diffusion.respaced_timesteps(1000, 10).tolist() == list(range(0, 1000, 100))
    with pytest.raises(ValueError, match="spacing"):
        diffusion.respaced_timesteps(1000, 10, "trailing")


def test_parameterization_defaults_are_the_official_process():
    official = diffusion.Parameterization()
    assert (official.prediction, official.beta_schedule, official.zero_terminal_snr) == ("eps", "linear", False)
    sched = official.schedule(10)
    ref = diffusion.ddim_schedule(diffusion.make_betas("linear"), 10)
    assert torch.equal(sched.timesteps, ref.timesteps) and torch.equal(sched.alphas_cumprod, ref.alphas_cumprod)
    with pytest.raises(ValueError, match="needs v prediction"):
        diffusion.Parameterization(zero_terminal_snr=True)
    with pytest.raises(ValueError, match="prediction"):
        diffusion.Parameterization(prediction="x0")


def test_an_old_config_without_the_fields_is_eps_linear():
    """Every official checkpoint, converted file and shipped model before the fields existed."""
    old = {k: v for k, v in AutoencoderConfig().to_dict().items()
           if k not in ("prediction", "zero_terminal_snr", "timestep_spacing")}
    cfg = AutoencoderConfig.from_dict(old)
    assert diffusion.Parameterization.of(cfg) == diffusion.Parameterization()
    with pytest.raises(ValueError):
        AutoencoderConfig.from_dict({**old, "prediction": "v", "zero_terminal_snr": True, "timestep_spacing": "sideways"})
    # the committed official-recipe HDAE(U) checkpoint's config.json predates the fields
    committed = load_model(str(ROOT / "checkpoints" / "toyfaces-hdae-eps"), components=()).autoencoder.config
    assert diffusion.Parameterization.of(committed) == diffusion.Parameterization()


# -- x0 / eps from a network output ----------------------------------------------------------------------------

@pytest.mark.parametrize("alpha_bar", [0.9999, 0.5, 0.01])
def test_split_output_is_consistent_for_both_predictions(alpha_bar):
    gen = torch.Generator().manual_seed(0)
    x0, eps = torch.rand(4, 3, 8, 8, generator=gen) * 2 - 1, torch.randn(4, 3, 8, 8, generator=gen)
    a = torch.full((4,), alpha_bar, dtype=torch.float64)
    x = diffusion.q_sample(x0, eps, a)
    for prediction in ("eps", "v"):
        out = diffusion.prediction_target(x0, eps, a, prediction)
        got_x0, got_eps = diffusion.split_output(x, out, alpha_bar, prediction, clip=False)
        assert torch.allclose(got_x0, x0, atol=2e-3 if prediction == "eps" and alpha_bar < 0.1 else 1e-4)
        assert torch.allclose(got_eps, eps, atol=1e-4)
        clipped_x0, clipped_eps = diffusion.split_output(x, out * 3, alpha_bar, prediction, clip=True)
        assert clipped_x0.abs().max() <= 1
        # the clipped pair still explains x exactly
        assert torch.allclose(alpha_bar ** 0.5 * clipped_x0 + (1 - alpha_bar) ** 0.5 * clipped_eps, x, atol=1e-4)


def test_v_at_zero_signal_is_minus_x0_and_eps_refuses_it():
    x, v = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    x0, eps = diffusion.split_output(x, v, 0.0, "v", clip=False)
    assert torch.equal(x0, -v) and torch.equal(eps, x)
    with pytest.raises(ValueError, match="alpha-bar = 0"):
        diffusion.split_output(x, v, 0.0, "eps", clip=False)


def _as_v(eps_fn, alphas_by_t):
    """The v network equivalent to an eps network: v = sqrt(a) eps - sqrt(1 - a) x0(eps)."""
    def v_fn(x, t):
        a = alphas_by_t[int(t[0])]
        eps = eps_fn(x, t)
        x0 = (x - (1 - a) ** 0.5 * eps) / a ** 0.5
        return a ** 0.5 * eps - (1 - a) ** 0.5 * x0
    return v_fn


def test_ddim_with_v_follows_the_same_path_as_eps():
    """One network written both ways decodes and inverts to the same images (no clipping)."""
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 3, 3, padding=1)
    eps_fn = lambda x, t: torch.tanh(conv(x)).detach() * (1 + t[:, None, None, None] / 1000)
    base = torch.cumprod(1 - diffusion.make_betas("linear"), 0).tolist()
    v_fn = _as_v(eps_fn, base)
    x0 = torch.rand(2, 3, 8, 8) * 2 - 1
    eps_sched = diffusion.ddim_schedule(diffusion.make_betas("linear"), 20)
    v_sched = diffusion.ddim_schedule(diffusion.make_betas("linear"), 20, prediction="v")
    xt_eps = diffusion.ddim_invert(eps_fn, x0, eps_sched, clip=False)
    xt_v = diffusion.ddim_invert(v_fn, x0, v_sched, clip=False)
    assert torch.allclose(xt_eps, xt_v, atol=1e-3)
    assert torch.allclose(diffusion.ddim_sample(eps_fn, xt_eps, eps_sched, clip=False),
                          diffusion.ddim_sample(v_fn, xt_eps, v_sched, clip=False), atol=1e-3)


@pytest.mark.parametrize("steps", [2, 10, 50])
def test_exact_v_model_round_trips_through_zero_terminal_snr(steps):
    """For a point-mass data distribution the exact v is known: inversion into alpha-bar = 0 and back is exact."""
    process = diffusion.Parameterization(prediction="v", zero_terminal_snr=True, timestep_spacing="linspace")
    alphas = process.alphas_cumprod().tolist()
    target = torch.linspace(-0.8, 0.8, 3 * 8 * 8).reshape(1, 3, 8, 8)

    def exact_v(x, t):
        a = alphas[int(t[0])]
        if a == 0:
            return -target.expand_as(x)
        eps = (x - a ** 0.5 * target) / (1 - a) ** 0.5
        return a ** 0.5 * eps - (1 - a) ** 0.5 * target

    calls = []
    counting = lambda x, t: (calls.append(int(t[0])), exact_v(x, t))[1]
    sched = process.schedule(steps)
    x_T = diffusion.ddim_invert(counting, target.clone(), sched)
    assert len(calls) == diffusion.inversion_calls(sched) == steps - 1
    assert calls[-1] == sched.timesteps[-2]  # the move into alpha-bar = 0 is the last call
    assert torch.allclose(diffusion.ddim_sample(exact_v, x_T, sched), target, atol=1e-5)
    # any x_T decodes to the data: at zero SNR the first step already predicts x0 from the condition alone
    assert torch.allclose(diffusion.ddim_sample(exact_v, torch.randn(1, 3, 8, 8), sched), target, atol=1e-5)


def test_pipeline_decodes_and_inverts_a_v_model():
    cfg = dataclasses.replace(autoencoder_arch("tiny32"), prediction="v", zero_terminal_snr=True, timestep_spacing="linspace")
    torch.manual_seed(0)
    model = pipeline.prepare(build_autoencoder(cfg), torch.device("cpu"))
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    z = pipeline.encode_semantic(model, images, "fp32")
    done = []
    x_T = pipeline.invert(model, images, z, OFFICIAL.replace(inv_steps=5), progress=lambda d, n: done.append((d, n)))
    assert done[-1] == (4, 4)
    out = pipeline.decode(model, z, x_T, OFFICIAL.replace(steps=5))
    assert out.shape == images.shape and torch.isfinite(out).all() and out.abs().max() <= 1


# -- loss weights and timestep sampling ----------------------------------------------------------------------

def test_loss_weights_follow_their_definitions():
    a = torch.tensor([0.0, 0.5, 5 / 6, 0.999], dtype=torch.float64)
    snr = a / (1 - a)
    assert torch.equal(diffusion.loss_weights(a, "v"), torch.ones(4))
    eps_min = diffusion.loss_weights(a[1:], "eps", "min-snr:5")
    assert torch.allclose(eps_min, (snr[1:].clamp(max=5) / snr[1:]).float())
    v_min = diffusion.loss_weights(a, "v", "min-snr:5")
    assert torch.allclose(v_min, (snr.clamp(max=5) / (snr + 1)).float())
    assert v_min[0] == 0  # min-SNR gives no weight at zero SNR
    p2 = diffusion.loss_weights(a, "eps", "p2:1:1")
    assert torch.allclose(p2, (1 / (1 + snr)).float())
    with pytest.raises(ValueError, match="weighting"):
        diffusion.loss_weights(a, "eps", "snr")


def test_timestep_sampling():
    gen = torch.Generator().manual_seed(0)
    high = sample_timesteps(1000, 1000, "high:0.25:900", 0, gen)
    assert (high >= 900).float().mean().item() == pytest.approx(0.25 + 0.75 * 0.1, abs=0.04)
    early = sample_timesteps(500, 1000, "curriculum:100", 0, gen)
    late = sample_timesteps(500, 1000, "curriculum:100", 100, gen)
    assert early.min() >= 700 and late.min() < 50
    assert sample_timesteps(500, 1000, "uniform", 0, gen).max() < 1000


def test_cosine_learning_rate_with_warmup():
    cfg = AutoencoderTrainConfig(data="d", run="r", steps=110, lr=1e-3, warmup=10, lr_schedule="cosine")
    assert learning_rate(cfg, 0) == pytest.approx(1e-4)
    assert learning_rate(cfg, 10) == pytest.approx(1e-3)
    assert learning_rate(cfg, 110) == pytest.approx(1e-4)
    assert learning_rate(AutoencoderTrainConfig(data="d", run="r"), 5000) == 1e-4


def test_committed_v_checkpoint_takes_its_colour_from_z_sem(tmp_path):
    """checkpoints/toyfaces-v and the default model (v + zero terminal SNR) against the committed eps model
    (checkpoints/toyfaces-hdae-eps, official recipe): x_T's share of the colour."""
    from diffedit_cli.evaluation.semantics import eval_semantics
    from diffedit_cli.data.toyfaces import write_dataset

    write_dataset(tmp_path / "faces", 12, seed=7, size=64, masks=False)
    checkpoint = load_model(str(ROOT / "checkpoints" / "toyfaces-v"), components=())
    assert diffusion.Parameterization.of(checkpoint.autoencoder.config) == diffusion.Parameterization(
        prediction="v", zero_terminal_snr=True, timestep_spacing="linspace")
    default = load_model("toyfaces", components=())
    assert diffusion.Parameterization.of(default.autoencoder.config) == diffusion.Parameterization.of(
        checkpoint.autoencoder.config)
    shares = {}
    eps = load_model(str(ROOT / "checkpoints" / "toyfaces-hdae-eps"), components=())
    for name, model in (("v", checkpoint), ("default", default), ("eps", eps)):
        result = eval_semantics(model, tmp_path / "faces", n=6, probe_n=12, steps=5)
        shares[name] = result["summary"]["x_T colour share"]
    assert max(shares["v"], shares["default"]) < 0.05 < 0.2 < shares["eps"], shares
