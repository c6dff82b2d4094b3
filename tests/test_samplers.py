"""Samplers against a closed form: Gaussian data, whose exact denoiser and probability-flow solution are known.

For x0 ~ N(mu, s^2) per coordinate and x_t = sqrt(a) x0 + sqrt(1 - a) eps, the exact x̂0(x_t) is
mu + sqrt(a) s^2 / (a s^2 + 1 - a) (x_t - sqrt(a) mu), and the ODE keeps xi = (x_t - sqrt(a) mu) / sqrt(a s^2 + 1 - a)
constant, so decoding x_T must end at mu + s xi.
"""

import math

import pytest
import torch

from diffedit_cli import diffusion
from diffedit_cli.sampling import OFFICIAL

MU, S = 0.3, 0.5
PROCESSES = {
    "eps-official": diffusion.Parameterization(),
    "v-zero-terminal-snr": diffusion.Parameterization(prediction="v", zero_terminal_snr=True, timestep_spacing="linspace"),
}


def exact_model(process):
    ab = process.alphas_cumprod()

    def fn(x, t):
        a = ab[t].to(x.dtype).view(-1, *([1] * (x.dim() - 1)))
        x0 = MU + (a.sqrt() * S ** 2 / (a * S ** 2 + 1 - a)) * (x - a.sqrt() * MU)
        eps = (x - a.sqrt() * x0) / (1 - a).clamp_min(1e-12).sqrt()
        return eps if process.prediction == "eps" else a.sqrt() * eps - (1 - a).sqrt() * x0
    return fn


def errors(process, steps, samplers=("ddim", "dpmpp-2m")):
    sched = process.schedule(steps)
    a_T = float(sched.alphas_cumprod[-1])
    x_T = torch.randn(512, 4, generator=torch.Generator().manual_seed(steps))
    exact = MU + S * (x_T - math.sqrt(a_T) * MU) / math.sqrt(a_T * S ** 2 + 1 - a_T)
    fn = exact_model(process)
    return {name: float((diffusion.SAMPLERS[name](fn, x_T, sched, clip=False) - exact).abs().max()) for name in samplers}


@pytest.mark.parametrize("name", PROCESSES)
def test_dpmpp_2m_converges_faster_than_ddim(name):
    process = PROCESSES[name]
    e20, e50, e200 = (errors(process, k) for k in (20, 50, 200))
    assert e20["dpmpp-2m"] < 0.5 * e20["ddim"], e20
    assert e50["dpmpp-2m"] < 0.1 * e50["ddim"] and e200["dpmpp-2m"] < 0.1 * e200["ddim"], (e50, e200)
    assert e50["dpmpp-2m"] < 0.02 and e200["dpmpp-2m"] < 0.005, (e50, e200)


@pytest.mark.parametrize("name", PROCESSES)
def test_dpmpp_2m_at_100_steps_matches_ddim_at_1000(name):
    process = PROCESSES[name]
    x_T = torch.randn(64, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    fn = exact_model(process)
    fine = diffusion.ddim_sample(fn, x_T, process.schedule(1000), clip=False)
    fast = diffusion.dpmpp_2m_sample(fn, x_T, process.schedule(100), clip=False)
    assert float((fast - fine).abs().max()) < 0.02  # DDIM's own error at 1000 steps is about 0.006 here


def test_quadratic_timesteps_are_distinct_and_dense_at_low_noise():
    for total in (20, 1000):
        for n in range(1, total + 1):
            t = diffusion.quadratic_timesteps(total, n)
            assert len(t) == n and int(t[-1]) == total - 1 and (n == 1 or int(t[0]) == 0)
            assert bool((t[1:] > t[:-1]).all()), (total, n)
    t = diffusion.quadratic_timesteps(1000, 10)
    assert t.tolist() == [0, 12, 49, 111, 197, 308, 444, 604, 789, 999]  # round((k/9)^2 * 999)
    gaps = (t[1:] - t[:-1]).tolist()
    assert gaps == sorted(gaps)  # each step longer than the one before: dense near the data


def test_spacing_of_a_schedule_is_the_models_own_unless_quadratic_is_asked():
    official, ztsnr = PROCESSES["eps-official"], PROCESSES["v-zero-terminal-snr"]
    assert official.schedule(10).timesteps.tolist() == list(range(0, 1000, 100))
    assert official.schedule(10, "uniform").timesteps.tolist() == list(range(0, 1000, 100))
    assert ztsnr.schedule(10, "uniform").timesteps.tolist() == ztsnr.schedule(10).timesteps.tolist()
    quad = ztsnr.schedule(10, "quadratic")
    assert quad.timesteps.tolist() == diffusion.quadratic_timesteps(1000, 10).tolist()
    assert torch.allclose(quad.alphas_cumprod, ztsnr.alphas_cumprod()[quad.timesteps], rtol=1e-12, atol=1e-15)
    assert float(quad.alphas_cumprod[-1]) == 0.0  # still starts from pure noise with a zero terminal SNR
    with pytest.raises(ValueError, match="quadratic"):
        official.schedule(10, "cubic")


def test_dpmpp_2m_calls_the_network_once_per_step_and_reports_each_step():
    process = PROCESSES["eps-official"]
    calls, steps = [], []
    fn = exact_model(process)
    diffusion.dpmpp_2m_sample(lambda x, t: calls.append(int(t[0])) or fn(x, t), torch.zeros(2, 3),
                              process.schedule(10), callback=lambda i, x, x0: steps.append(i))
    assert calls == sorted(calls, reverse=True) and len(calls) == 10 and steps == list(range(10))


def inversion_errors(process, steps, spacing):
    """Max error of each inversion against the exact x_T: the ODE from the first timestep's x (the data) keeps xi
    constant and ends at alpha-bar 0, where x_T = xi."""
    sched = process.schedule(steps, spacing)
    a0 = float(sched.alphas_cumprod[0])
    x0 = MU + S * torch.randn(512, 4, generator=torch.Generator().manual_seed(steps))
    exact = (x0 - math.sqrt(a0) * MU) / math.sqrt(a0 * S ** 2 + 1 - a0)
    fn = exact_model(process)
    return {name: float((invert(fn, x0, sched, clip=False) - exact).abs().max())
            for name, invert in diffusion.INVERTERS.items()}


@pytest.mark.parametrize("spacing", ["uniform", "quadratic"])
@pytest.mark.parametrize("name", PROCESSES)
def test_dpmpp_2m_inversion_is_second_order(name, spacing):
    """DPM-Solver++ 2M run towards noise: its error falls about 16x from 50 to 200 steps (second order; DDIM's 4x)
    and is below DDIM's at every count."""
    process = PROCESSES[name]
    e50, e200 = (inversion_errors(process, k, spacing) for k in (50, 200))
    assert e200["dpmpp-2m"] < e50["dpmpp-2m"] / 8 and e200["ddim"] > e50["ddim"] / 6, (e50, e200)
    assert e50["dpmpp-2m"] < 0.4 * e50["ddim"] and e200["dpmpp-2m"] < 0.2 * e200["ddim"], (e50, e200)
    if spacing == "quadratic":
        assert e50["dpmpp-2m"] < 0.1 * e50["ddim"], e50


def test_dpmpp_2m_inversion_of_two_steps_is_ddim():
    """The first step (from the data) and the step into alpha-bar 0 are first order: two steps are DDIM's."""
    process = PROCESSES["eps-official"]
    x0 = torch.randn(8, 4, generator=torch.Generator().manual_seed(0))
    sched = process.schedule(2)
    fn = exact_model(process)
    assert torch.allclose(diffusion.dpmpp_2m_invert(fn, x0, sched), diffusion.ddim_invert(fn, x0, sched), rtol=1e-6, atol=1e-5)


# -- the --sampler option through the CLI, on the shipped default model --------------------------------------

@pytest.fixture(scope="module")
def two_faces(tmp_path_factory):
    import numpy as np
    from PIL import Image

    folder = tmp_path_factory.mktemp("faces")
    for k in range(2):
        Image.fromarray((np.random.default_rng(k).random((64, 64, 3)) * 255).astype("uint8")).save(folder / f"{k}.png")
    return folder


@pytest.mark.parametrize("sampler", ["ddim", "dpmpp-2m"])
@pytest.mark.parametrize("command", ["decode", "edit", "interpolate", "sample", "style-mix"])
def test_every_command_takes_every_sampler_and_spacing(command, sampler, two_faces, tmp_path, capsys):
    from PIL import Image

    from diffedit_cli.cli import main

    a, b = str(two_faces / "0.png"), str(two_faces / "1.png")
    out = tmp_path / "out"
    spacing = "uniform" if sampler == "ddim" else "quadratic"  # both spacings, each with one sampler
    fast = ["--steps", "3", "--sampler", sampler, "--spacing", spacing, "--out", str(out), "-q"]
    argv = {
        "decode": ["decode", a, "--inv-steps", "2", *fast],
        "edit": ["edit", a, "--attr", "Smiling", "--inv-steps", "2", *fast],
        "interpolate": ["interpolate", a, b, "--frames", "2", "--inv-steps", "2", *fast],
        "sample": ["sample", "--n", "1", "--latent-steps", "2", *fast],
        "style-mix": ["style-mix", a, b, "--levels", "1", "--inv-steps", "2", *fast],
    }[command]
    assert main(argv) == 0, capsys.readouterr().err
    written = sorted(out.rglob("*.png"))
    assert written
    assert all(Image.open(p).size[0] >= 64 for p in written)


def test_unknown_sampler_is_one_line(two_faces, capsys):
    from diffedit_cli.cli import main

    assert main(["decode", str(two_faces / "0.png"), "--sampler", "euler", "--steps", "2", "--inv-steps", "2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: --sampler 'euler'") and "dpmpp-2m" in err


def test_dpmpp_decode_on_the_shipped_model_is_nearer_ddim_at_many_steps(two_faces):
    """On the shipped model, from x_T drawn from the prior (the ODE's own start): DPM-Solver++ at 20 steps lands
    nearer DDIM at 200 steps than DDIM at 20 does. (From a DDIM-inverted x_T it does not: docs/speed.md.)"""
    from diffedit_cli import pipeline
    from diffedit_cli.io.images import load_image
    from diffedit_cli.io.models import load_model

    ae = load_model(None, components=()).autoencoder
    x0 = load_image(two_faces / "0.png", 64)[None]
    z = pipeline.encode_semantic(ae, x0, "fp32")
    x_T = pipeline.random_x_T([0], 64, seed=3)
    fine = pipeline.decode(ae, z, x_T, OFFICIAL.replace(steps=200))
    fast = pipeline.decode(ae, z, x_T, OFFICIAL.replace(steps=20, sampler="dpmpp-2m"))
    coarse = pipeline.decode(ae, z, x_T, OFFICIAL.replace(steps=20))
    assert float((fast - fine).pow(2).mean()) <= float((coarse - fine).pow(2).mean())


def test_unknown_spacing_is_one_line(two_faces, capsys):
    from diffedit_cli.cli import main

    assert main(["decode", str(two_faces / "0.png"), "--spacing", "cubic", "--steps", "2", "--inv-steps", "2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: --spacing 'cubic'") and "quadratic" in err


def test_quadratic_spacing_reconstructs_the_shipped_model_better_at_few_steps():
    """Inversion and decoding with 10 steps each on held-out generated faces: quadratic spacing (steps dense at
    low noise, where the details are decided) reconstructs better than the model's own uniform spacing, with
    either sampler (docs/speed.md has the full curves)."""
    import numpy as np

    from diffedit_cli import pipeline
    from diffedit_cli.data.toyfaces import face_seed, render, sample_face
    from diffedit_cli.io.images import to_model_range
    from diffedit_cli.io.models import load_model

    ae = load_model(None, components=()).autoencoder
    faces = np.stack([render(sample_face(face_seed(7, i)))[0] for i in range(3)])
    x0 = to_model_range(torch.from_numpy(faces).permute(0, 3, 1, 2))
    z = pipeline.encode_semantic(ae, x0, "fp32")

    def mse(sampler, spacing):
        x_T = pipeline.invert(ae, x0, z, OFFICIAL.replace(inv_steps=10, spacing=spacing))
        return float((pipeline.decode(ae, z, x_T, OFFICIAL.replace(steps=10, sampler=sampler, spacing=spacing)) - x0).pow(2).mean())

    for sampler in ("ddim", "dpmpp-2m"):
        assert mse(sampler, "quadratic") < 0.7 * mse(sampler, "uniform"), sampler


def test_inversion_sampler_through_the_cli_is_recorded_and_reproducible(two_faces, tmp_path, capsys):
    """``--inv-sampler dpmpp-2m`` on encode: the latent file says so and holds what the library computes."""
    from diffedit_cli import pipeline
    from diffedit_cli.cli import main
    from diffedit_cli.io.images import load_image
    from diffedit_cli.io.latents import load_latent
    from diffedit_cli.io.models import load_model

    out = tmp_path / "codes"
    argv = ["encode", str(two_faces / "0.png"), "--inv-sampler", "dpmpp-2m", "--inv-steps", "6", "--precision", "fp32",
            "--out", str(out), "-q"]
    assert main(argv) == 0, capsys.readouterr().err
    code = load_latent(out / "0.safetensors")
    assert code.meta["inv_sampler"] == "dpmpp-2m" and code.meta["inv_steps"] == "6"
    model = load_model(None, components=())
    ae = pipeline.prepare(model.autoencoder, torch.device("cpu"))
    x0 = load_image(two_faces / "0.png", 64)[None]
    sampling = OFFICIAL.replace(inv_sampler="dpmpp-2m", inv_steps=6, spacing="quadratic", precision="fp32")
    x_T = pipeline.invert(ae, x0, pipeline.encode_semantic(ae, x0, "fp32"), sampling)
    assert float((x_T[0] - code.x_T).abs().max()) < 1e-4
    ddim = pipeline.invert(ae, x0, pipeline.encode_semantic(ae, x0, "fp32"), sampling.replace(inv_sampler="ddim"))
    assert float((ddim[0] - code.x_T).abs().max()) > 1e-2  # the option is not ignored


def test_unknown_inversion_sampler_is_one_line(two_faces, capsys):
    from diffedit_cli.cli import main

    assert main(["encode", str(two_faces / "0.png"), "--inv-sampler", "euler", "--inv-steps", "2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: --inv-sampler 'euler'") and "dpmpp-2m" in err
