"""Reconstruction quality vs network calls: DDIM inversion steps x decoder (DDIM, DPM-Solver++ 2M) steps,
for each timestep spacing (uniform: the model's own; quadratic: dense at low noise), used by inversion and decoder alike.

For each spacing, inversion sampler (DDIM; DPM-Solver++ 2M run towards noise) and inversion step count, the images are encoded (z_sem + DDIM-inverted x_T) once, then decoded
by each sampler at each step count; prints MSE and PSNR (images in [0, 1]) against the inputs. The official
setting is uniform spacing, 250 inversion + 100 DDIM steps.

    python benchmarks/nfe.py --data runs/data/heldout/images --n 32
    python benchmarks/nfe.py --model runs/toyfaces-v --inv-steps 10 20 50 --steps 5 10 20 50
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch

from diffedit_cli import pipeline
from diffedit_cli.sampling import OFFICIAL
from diffedit_cli.diffusion import INVERTERS, SAMPLERS, SAMPLING_SPACINGS
from diffedit_cli.io.images import is_image_path, load_image
from diffedit_cli.io.models import load_model


def psnr(mse: float) -> float:
    return 10 * math.log10(1.0 / mse) if mse > 0 else float("inf")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="model (default: the shipped default model)")
    parser.add_argument("--data", required=True, help="folder of images (e.g. diffedit data toyfaces --seed 7)")
    parser.add_argument("--n", type=int, default=32)
    parser.add_argument("--inv-steps", nargs="+", type=int, default=[10, 20, 50, 100, 250])
    parser.add_argument("--steps", nargs="+", type=int, default=[5, 10, 20, 50])
    parser.add_argument("--samplers", nargs="+", default=list(SAMPLERS), choices=list(SAMPLERS))
    parser.add_argument("--inv-samplers", nargs="+", default=list(INVERTERS), choices=list(INVERTERS))
    parser.add_argument("--spacings", nargs="+", default=list(SAMPLING_SPACINGS), choices=list(SAMPLING_SPACINGS))
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                        help="auto: the CLI's CPU default (bf16 where native, else fp32)")
    args = parser.parse_args()

    model = load_model(args.model, components=())
    device = torch.device("cpu")
    precision = pipeline.pick_precision(args.precision, device)
    ae = pipeline.prepare(model.autoencoder.eval(), device)
    paths = sorted(p for p in Path(args.data).rglob("*") if is_image_path(p))[: args.n]
    x0 = torch.stack([load_image(p, model.image_size) for p in paths])
    parts = list(x0.split(args.batch_size))

    def mse(a, b):
        return float(((a.clamp(-1, 1) - b.clamp(-1, 1)) / 2).pow(2).mean())

    started = time.perf_counter()
    zs = [pipeline.encode_semantic(ae, x, precision) for x in parts]
    print(f"# {model.model_id}: {len(paths)} images from {args.data}, {model.image_size} px, {precision}, "
          f"channels_last; MSE / PSNR (dB) vs input")
    print(f"{'spacing':>9} {'inverter':>9} {'inv steps':>9} {'sampler':>9} {'steps':>5} {'MSE':>9} {'PSNR':>6}")
    for spacing in args.spacings:
        for inverter in args.inv_samplers:
            for inv in args.inv_steps:
                inversion = OFFICIAL.replace(inv_steps=inv, precision=precision, spacing=spacing, inv_sampler=inverter)
                xs = [pipeline.invert(ae, x, zz, inversion) for x, zz in zip(parts, zs)]
                for sampler in args.samplers:
                    for steps in args.steps:
                        rec = torch.cat([pipeline.decode(ae, zz, xx, OFFICIAL.replace(
                            steps=steps, precision=precision, sampler=sampler, spacing=spacing)) for zz, xx in zip(zs, xs)])
                        err = mse(rec, x0)
                        print(f"{spacing:>9} {inverter:>9} {inv:9d} {sampler:>9} {steps:5d} {err:9.2e} {psnr(err):6.2f}",
                              flush=True)
    print(f"# {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
