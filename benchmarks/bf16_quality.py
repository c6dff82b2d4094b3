"""What bf16 autocast does to results: the full round trip and a decode, against fp32, on a model's faces.

For the first ``--n`` images of a folder: fp32 round trip (encode, ``--inv-steps`` DDIM inversion,
``--steps`` decode) vs the same round trip in bf16, and a bf16 decode of the fp32 codes vs the fp32 decode.
Prints PSNR (dB, images in [0, 1]) and the largest 8-bit difference of each, the reconstruction PSNR of both
round trips against the inputs, and, when the model has an oracle (or ``--oracle`` names one), the fraction of
oracle labels the bf16 round trip keeps from the fp32 one. The CPU's bf16 support is printed with the numbers
(``torch.backends.cpu.get_cpu_capability()``): bf16 is native with AVX512-BF16 or AMX, emulated otherwise.

    python benchmarks/bf16_quality.py runs/data/heldout/images --n 4 --inv-steps 250 --steps 100
    python benchmarks/bf16_quality.py runs/data/heldout/images --n 8 --sampling defaults   # the CLI's settings

``--sampling official`` (the default) is the official DDIM setting with ``--inv-steps`` / ``--steps``;
``--sampling defaults`` is the command line's (diffedit_cli.sampling.DEFAULT), its step counts unless given.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from diffedit_cli import pipeline
from diffedit_cli.sampling import DEFAULT, OFFICIAL
from diffedit_cli.io.images import is_image_path, load_image
from diffedit_cli.io.models import load_model


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a.clamp(-1, 1) - b.clamp(-1, 1)) / 2).pow(2).mean())
    return float("inf") if mse == 0 else -10 * torch.log10(torch.tensor(mse)).item()


def max_levels(a: torch.Tensor, b: torch.Tensor) -> int:
    to8 = lambda x: ((x.clamp(-1, 1) + 1) * 127.5).round()  # noqa: E731
    return int((to8(a) - to8(b)).abs().max())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("images", type=Path, help="folder of face images (e.g. diffedit data toyfaces --n 500 --seed 7)")
    parser.add_argument("--model", default=None, help="model (default: the shipped default model)")
    parser.add_argument("--oracle", default="toyfaces", help="model whose oracle compares labels ('' for none)")
    parser.add_argument("--n", type=int, default=4)
    parser.add_argument("--sampling", choices=["official", "defaults"], default="official")
    parser.add_argument("--inv-steps", type=int, default=None, help="default: 250 (official) or the CLI's")
    parser.add_argument("--steps", type=int, default=None, help="default: 100 (official) or the CLI's")
    args = parser.parse_args(argv)
    base = OFFICIAL if args.sampling == "official" else DEFAULT
    base = base.replace(inv_steps=args.inv_steps or base.inv_steps, steps=args.steps or base.steps)
    args.inv_steps, args.steps = base.inv_steps, base.steps

    device = torch.device("cpu")
    model = load_model(args.model, components=("oracle",))
    ae = pipeline.prepare(model.autoencoder, device)
    files = sorted(p for p in args.images.iterdir() if is_image_path(p))[:args.n]
    x = torch.stack([load_image(p, model.image_size) for p in files])
    out, seconds = {}, {}
    for precision in ("fp32", "bf16"):
        tick = time.perf_counter()
        z = pipeline.encode_semantic(ae, x, precision)
        x_T = pipeline.invert(ae, x, z, base.replace(precision=precision))
        out[precision] = (z, x_T, pipeline.decode(ae, z, x_T, base.replace(precision=precision)))
        seconds[precision] = time.perf_counter() - tick
    z32, xT32, rt32 = out["fp32"]
    rt16 = out["bf16"][2]
    dec16 = pipeline.decode(ae, z32, xT32, base.replace(precision="bf16"))
    print(f"# {len(files)} faces of {args.images}, model {model.model_id}, {base.describe()}; CPU capability {torch.backends.cpu.get_cpu_capability()}, {torch.get_num_threads()} threads")
    print(f"round trip bf16 vs fp32:       {psnr(rt16, rt32):6.2f} dB, max {max_levels(rt16, rt32)} levels")
    print(f"decode bf16 vs fp32 (same codes): {psnr(dec16, out['fp32'][2]):6.2f} dB, max {max_levels(dec16, rt32)} levels")
    print(f"reconstruction vs input:       fp32 {psnr(rt32, x):6.2f} dB, bf16 {psnr(rt16, x):6.2f} dB")
    print(f"round trip wall-clock:         fp32 {seconds['fp32']:.1f} s, bf16 {seconds['bf16']:.1f} s")
    oracle = None
    if "oracle" in model.extra:
        oracle = model.extra["oracle"]
    elif args.oracle:
        oracle = load_model(args.oracle, components=("oracle",)).extra.get("oracle")
    if oracle is not None:
        with torch.no_grad():
            kept = (oracle.predict(rt16) == oracle.predict(rt32)).float().mean().item()
        print(f"oracle labels kept (bf16 vs fp32 round trip): {kept:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
