"""Batch invariance: N images in one batch equal N single runs up to floating-point rounding (z_sem 1e-5,
x_T 1e-3 after 10 inversion steps, decoded 8-bit images within 1 level); random x_T depends on seed + index only.
A lone image runs at batch 1: convolution kernels for other batch sizes round differently, nothing more."""

import torch

from diffedit_cli import pipeline
from diffedit_cli.sampling import OFFICIAL
from diffedit_cli.io.images import to_u8


def _levels_apart(a: torch.Tensor, b: torch.Tensor) -> int:
    """Largest difference in 8-bit levels between two (N, 3, H, W) images in [-1, 1]."""
    return max(int((torch.from_numpy(to_u8(x)).int() - torch.from_numpy(to_u8(y)).int()).abs().max())
               for x, y in zip(a, b))


def test_batched_equals_single(tiny_model, ref_tensors):
    ae = tiny_model.autoencoder
    x0 = ref_tensors["tiny_autoenc"]["x0"]
    z = pipeline.encode_semantic(ae, x0, "fp32")
    x_T = pipeline.invert(ae, x0, z, OFFICIAL.replace(inv_steps=10))
    rec = pipeline.decode(ae, z, x_T, OFFICIAL.replace(steps=10))
    for i in range(len(x0)):
        zi = pipeline.encode_semantic(ae, x0[i:i + 1], "fp32")
        assert (zi - z[i:i + 1]).abs().max() <= 1e-5
        xi = pipeline.invert(ae, x0[i:i + 1], zi, OFFICIAL.replace(inv_steps=10))
        assert (xi - x_T[i:i + 1]).abs().max() <= 1e-3
        ri = pipeline.decode(ae, zi, xi, OFFICIAL.replace(steps=10))
        assert _levels_apart(ri, rec[i:i + 1]) <= 1


def test_uneven_batches_equal_one_batch(tiny_model, ref_tensors):
    """The same 4 images as batches of 3 + 1 and of 2 + 2: the same codes up to rounding."""
    ae = tiny_model.autoencoder
    x0 = ref_tensors["tiny_autoenc"]["x0"]
    z = pipeline.encode_semantic(ae, x0, "fp32")
    x_T = pipeline.invert(ae, x0, z, OFFICIAL.replace(inv_steps=5))
    for split in ([3, 1], [2, 2]):
        parts = list(zip(x0.split(split), z.split(split)))
        zs = torch.cat([pipeline.encode_semantic(ae, x, "fp32") for x, _ in parts])
        xs = torch.cat([pipeline.invert(ae, x, zz, OFFICIAL.replace(inv_steps=5)) for x, zz in parts])
        assert (zs - z).abs().max() <= 1e-5 and (xs - x_T).abs().max() <= 1e-3, split


def test_encode_and_invert_in_batches_reports_progress(tiny_model, ref_tensors):
    """pipeline.encode_and_invert over batches of 3 + 1 equals one batch up to rounding; progress counts images."""
    from diffedit_cli.jobs.report import Reporter

    ae = tiny_model.autoencoder
    x0 = ref_tensors["tiny_autoenc"]["x0"]
    z = pipeline.encode_semantic(ae, x0, "fp32")
    x_T = pipeline.invert(ae, x0, z, OFFICIAL.replace(inv_steps=5))
    with Reporter(quiet=False) as reporter:
        reporter.start("encoding", len(x0))
        seen = []
        advance = reporter.advancing()
        zs, xs = pipeline.encode_and_invert(ae, x0, OFFICIAL.replace(inv_steps=5), batch_size=3,
                                            progress=lambda done, total: (seen.append((done, total)), advance(done, total)))
        assert seen == [(3, len(x0)), (len(x0), len(x0))]
        assert reporter._progress.tasks[0].completed == len(x0)
    assert (zs - z).abs().max() <= 1e-5 and (xs - x_T).abs().max() <= 1e-3


def test_random_xT_is_per_image():
    a = pipeline.random_x_T([0, 1, 2, 3], 16, seed=7)
    b = torch.cat([pipeline.random_x_T([i], 16, seed=7) for i in range(4)])
    assert torch.equal(a, b)
    assert torch.equal(pipeline.random_x_T([2], 16, seed=7)[0], pipeline.random_x_T([1], 16, seed=8)[0])
    assert not torch.equal(a[0], a[1])


def test_interpolation_endpoints():
    a, b = torch.randn(8), torch.randn(8)
    w = torch.linspace(0, 1, 5)
    out = pipeline.lerp(a, b, w)
    assert torch.allclose(out[0], a) and torch.allclose(out[-1], b)
    na, nb = torch.randn(3, 4, 4), torch.randn(3, 4, 4)
    s = pipeline.slerp(na, nb, w)
    assert s.shape == (5, 3, 4, 4)
    assert torch.allclose(s[0], na, atol=1e-5) and torch.allclose(s[-1], nb, atol=1e-5)


def test_channels_last_changes_results_by_rounding_only(tiny_model_dir, ref_tensors):
    """channels_last (the CLI's default memory format) against the contiguous format, fp32: codes within
    1e-5 / 1e-3, images within one 8-bit level."""
    import copy

    from diffedit_cli.io.models import load_model

    dense = pipeline.prepare(load_model(str(tiny_model_dir), components=()).autoencoder, torch.device("cpu"),
                             channels_last=False)
    last = pipeline.prepare(copy.deepcopy(dense), torch.device("cpu"), channels_last=True)
    x0 = ref_tensors["tiny_autoenc"]["x0"]
    results = []
    for ae in (dense, last):
        z = pipeline.encode_semantic(ae, x0, "fp32")
        x_T = pipeline.invert(ae, x0, z, OFFICIAL.replace(inv_steps=10))
        results.append((z, x_T, pipeline.decode(ae, z, x_T, OFFICIAL.replace(steps=10))))
    (z_d, x_d, img_d), (z_l, x_l, img_l) = results
    assert (z_d - z_l).abs().max() <= 1e-5 and (x_d - x_l).abs().max() <= 1e-3
    assert _levels_apart(img_d, img_l) <= 1


def test_bf16_decode_of_the_default_model_stays_above_35_db():
    """bf16 autocast against fp32 on the shipped model (docs/speed.md measures 46.5 dB for 4 faces, 20 steps)."""
    import math

    from diffedit_cli.io.models import load_model

    ae = pipeline.prepare(load_model(None, components=()).autoencoder, torch.device("cpu"))
    gen = torch.Generator().manual_seed(0)
    z = pipeline.encode_semantic(ae, torch.rand(1, 3, 64, 64, generator=gen) * 2 - 1, "fp32")
    x_T = torch.randn(1, 3, 64, 64, generator=gen)
    fp32, bf16 = (pipeline.decode(ae, z, x_T, OFFICIAL.replace(steps=10, precision=precision)) for precision in ("fp32", "bf16"))
    mse = float(((fp32.clamp(-1, 1) - bf16.clamp(-1, 1)) / 2).pow(2).mean())
    assert 10 * math.log10(1 / mse) >= 35


def test_cpu_default_precision_is_bf16_only_where_it_is_native(monkeypatch, tmp_path, capsys):
    from diffedit_cli import pipeline
    from diffedit_cli.cli import main

    cpu = torch.device("cpu")
    from diffedit_cli.sampling import CPU_PRECISION_ENV

    monkeypatch.delenv(CPU_PRECISION_ENV, raising=False)
    for native, expected in ((True, "bf16"), (False, "fp32")):
        monkeypatch.setattr(pipeline, "native_bf16_cpu", lambda: native)
        assert pipeline.pick_precision(None, cpu) == pipeline.pick_precision("auto", cpu) == expected
        assert pipeline.pick_precision("fp32", cpu) == "fp32"  # an explicit choice always wins
    monkeypatch.setenv(CPU_PRECISION_ENV, "fp32")
    monkeypatch.setattr(pipeline, "native_bf16_cpu", lambda: True)
    assert pipeline.pick_precision(None, cpu) == "fp32"
    monkeypatch.setenv(CPU_PRECISION_ENV, "fp8")
    assert main(["decode", "x.safetensors", "--device", "cpu"]) == 2
    assert "DIFFEDIT_CPU_PRECISION must be fp32 or bf16" in capsys.readouterr().err
    assert pipeline.pick_precision(None, torch.device("cuda")) == "fp16"


def test_job_loop_batches_slots_across_inputs_and_writes_each_input_once():
    """run_units: slots of consecutive inputs share batches of at most batch_size; an input is written once
    all its slots have results (per slot, or through its finish), in input order; a failure is reported for
    its input and the loop goes on; every input, slots or not, advances the bar once."""
    from pathlib import Path

    from diffedit_cli.errors import InputError
    from diffedit_cli.jobs.options import RunOptions
    from diffedit_cli.jobs.report import Reporter
    from diffedit_cli.jobs.runner import Slot, Unit, run_units

    def slots(name, n):
        return [Slot(name, Path(f"{name}_{k}.png"), info={"k": k}) for k in range(n)]

    finished = []
    units = [Unit("a", slots("a", 1)), Unit("empty", []), Unit("b", slots("b", 3)),
             Unit("c", slots("c", 2), finish=lambda results: finished.append(("c", results))),
             Unit("d", slots("d", 1))]
    batches, written = [], []

    def compute(batch):
        batches.append([(s.source, s.info["k"]) for s in batch])
        return [f"{s.source}{s.info['k']}" for s in batch]

    def write(slot, result):
        if result == "b1":
            raise InputError("cannot write b_1")
        written.append(result)

    reporter = Reporter(quiet=True)
    advanced = []
    reporter.advance = lambda n=1: advanced.append(n)
    run_units(units, RunOptions(batch_size=2), compute, write, reporter)
    assert batches == [[("a", 0), ("b", 0)], [("b", 1), ("b", 2)], [("c", 0), ("c", 1)], [("d", 0)]]
    assert written == ["a0", "b0", "b2", "d0"]
    assert finished == [("c", ["c0", "c1"])]
    assert len(advanced) == 5
    assert reporter.done == 4  # the outputs written per slot; c's finish reports its own
    assert [source for source, _ in reporter.failures] == ["b"]


# the bounds the README states for each precision: (z_sem, x_T after 10 inversion steps, decoded 8-bit levels)
INVARIANCE_BOUNDS = {"fp32": (1e-5, 1e-3, 1), "bf16": (1e-2, 0.5, 4)}


def test_batch_invariance_at_this_cpus_default_precision():
    """What a user gets without --precision: the library and the CLI share one precision rule (bf16 on CPUs with
    native bf16, else fp32); batch 1 and batch 4 agree within the README's bound for that precision."""
    from pathlib import Path

    from diffedit_cli.io.images import load_image
    from diffedit_cli.sampling import DEFAULT

    ae = pipeline.load("toyfaces", "cpu", ()).autoencoder
    precision = pipeline.pick_precision(None, torch.device("cpu"))
    sampling = DEFAULT.replace(steps=10, inv_steps=10)  # precision None: the default rule, as the CLI
    examples = Path(__file__).resolve().parent.parent / "examples"
    gen = torch.Generator().manual_seed(3)
    x0 = torch.stack([load_image(examples / name, 64) for name in ("face.png", "face2.png")] +
                     [torch.rand(3, 64, 64, generator=gen) * 2 - 1 for _ in range(2)])
    z4 = pipeline.encode_semantic(ae, x0)
    x4 = pipeline.invert(ae, x0, z4, sampling)
    r4 = pipeline.decode(ae, z4, x4, sampling)
    z1 = torch.cat([pipeline.encode_semantic(ae, x0[i:i + 1]) for i in range(4)])
    x1 = torch.cat([pipeline.invert(ae, x0[i:i + 1], z1[i:i + 1], sampling) for i in range(4)])
    r1 = torch.cat([pipeline.decode(ae, z1[i:i + 1], x1[i:i + 1], sampling) for i in range(4)])

    z_bound, x_bound, level_bound = INVARIANCE_BOUNDS[precision]
    assert (z4 - z1).abs().max() <= z_bound
    assert (x4 - x1).abs().max() <= x_bound
    assert _levels_apart(r4, r1) <= level_bound


def test_cpu_batches_run_in_calls_of_a_bounded_size_with_each_images_own_result(monkeypatch):
    """On a CPU a batch is run as network calls of at most CPU_CALL_PIXELS images x pixels (larger calls spill the
    caches): with the bound at one 64 px image, a batch of 3 makes calls of 1 and decodes and inverts each image
    exactly as it alone."""
    from diffedit_cli import pipeline
    from diffedit_cli.io.models import load_model
    from diffedit_cli.sampling import DEFAULT

    monkeypatch.setattr(pipeline, "CPU_CALL_PIXELS", 64 * 64)
    ae = pipeline.prepare(load_model(None, components=()).autoencoder, torch.device("cpu"))
    sizes = []
    forward = type(ae).forward
    monkeypatch.setattr(type(ae), "forward", lambda self, x, *a, **k: sizes.append(len(x)) or forward(self, x, *a, **k))
    gen = torch.Generator().manual_seed(0)
    x0 = torch.rand(3, 3, 64, 64, generator=gen) * 2 - 1
    sampling = DEFAULT.replace(steps=3, inv_steps=3, precision="fp32")
    z = pipeline.encode_semantic(ae, x0, "fp32")
    x_T = pipeline.invert(ae, x0, z, sampling)
    out = pipeline.decode(ae, z, x_T, sampling)
    assert sizes and set(sizes) == {1}
    for k in range(3):
        zk = pipeline.encode_semantic(ae, x0[k:k + 1], "fp32")
        xk = pipeline.invert(ae, x0[k:k + 1], zk, sampling)
        assert torch.equal(zk[0], z[k]) and torch.equal(xk[0], x_T[k])
        assert torch.equal(pipeline.decode(ae, zk, xk, sampling)[0], out[k])
