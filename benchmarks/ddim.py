"""DDIM decoding speed of the official Diff-AE architectures (random weights).

Prints per-step latency and images/s for ffhq128 / ffhq256 at the chosen batch
sizes, device and precisions, and the fp16/bf16-vs-fp32 difference of a short
decode from the same (z_sem, x_T).

    python benchmarks/ddim.py                                  # CPU, fp32, batch 1 and 8
    python benchmarks/ddim.py --device cuda --precision fp32 fp16 --steps 20
    python benchmarks/ddim.py --device cpu --precision fp32 bf16 --archs ffhq128 --batches 1
"""

from __future__ import annotations

import argparse
import time

import torch

from diffedit_cli import diffusion, pipeline
from diffedit_cli.sampling import OFFICIAL
from diffedit_cli.io.convert import PRESETS
from diffedit_cli.networks.autoencoder import AutoencoderConfig, DiffAEAutoencoder


def build(arch: str, device: torch.device) -> DiffAEAutoencoder:
    torch.manual_seed(0)
    model = DiffAEAutoencoder(AutoencoderConfig(**PRESETS[arch]))
    return pipeline.prepare(model, device)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_decode(model, z, x_T, steps, precision, device, repeat):
    """Best wall-clock of ``repeat`` decodes of ``steps`` steps, and the last output."""
    pipeline.decode(model, z, x_T, OFFICIAL.replace(steps=2, precision=precision))  # warm-up (kernel selection, allocator); 1 step cannot be respaced
    sync(device)
    best, out = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        out = pipeline.decode(model, z, x_T, OFFICIAL.replace(steps=steps, precision=precision))
        sync(device)
        best = min(best, time.perf_counter() - start)
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", nargs="+", default=None, help="fp32 fp16 bf16 (default: fp32, plus fp16 on CUDA)")
    parser.add_argument("--archs", nargs="+", default=["ffhq128", "ffhq256"], choices=sorted(PRESETS))
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--steps", type=int, default=10, help="DDIM steps per timed decode")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pipeline.pick_device(args.device)
    precisions = args.precision or (["fp32", "fp16"] if device.type == "cuda" else ["fp32"])
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU x{torch.get_num_threads()} threads"
    print(f"# DDIM decode benchmark: {name}, torch {torch.__version__}, {args.steps} steps, best of {args.repeat}")
    print(f"{'arch':9} {'batch':>5} {'precision':>9} {'ms/step':>9} {'images/s':>9} {'max|x - x_fp32|':>16}")
    for arch in args.archs:
        model = build(arch, device)
        size = model.config.image_size
        for batch in args.batches:
            gen = torch.Generator().manual_seed(batch)
            z = torch.randn(batch, model.config.enc_out_channels, generator=gen).to(device)
            x_T = torch.randn(batch, 3, size, size, generator=gen).to(device)
            reference = None
            for precision in precisions:
                seconds, out = time_decode(model, z, x_T, args.steps, precision, device, args.repeat)
                if precision == "fp32":
                    reference = out
                diff = "" if reference is None or precision == "fp32" else f"{(out - reference).abs().max().item():.2e}"
                print(f"{arch:9} {batch:5d} {precision:>9} {1000 * seconds / args.steps:9.1f} "
                      f"{batch / (seconds / args.steps * 100):9.3f} {diff:>16}", flush=True)
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()
    print("images/s is for a full 100-step decode (official editing setting).")


if __name__ == "__main__":
    main()
