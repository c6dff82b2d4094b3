"""Autoencoder training throughput (images/s) by precision, memory format, recipe and thread count.

Each row runs the real trainer (``diffedit_cli.training.diffae.train_autoencoder``) for --steps steps on generated
faces and reports the median images/s of the steps after the first two. Run it on an otherwise idle machine.

Run: python benchmarks/train_speed.py --steps 12 --batch-size 16
"""

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from diffedit_cli.data.toyfaces import write_dataset
from diffedit_cli.training.diffae import AutoencoderTrainConfig, train_autoencoder

RECIPES = {
    "official": {},
    "v + ztsnr": dict(prediction="v", zero_terminal_snr=True),
    "v + ztsnr + min-snr": dict(prediction="v", zero_terminal_snr=True, loss_weight="min-snr:5"),
}


def images_per_second(data: Path, preset: str, steps: int, batch_size: int, precision: str, channels_last: bool,
                      recipe: dict) -> float:
    speeds = []
    with tempfile.TemporaryDirectory() as run:
        cfg = AutoencoderTrainConfig(data=str(data), run=str(Path(run) / "r"), preset=preset, steps=steps,
                                     batch_size=batch_size, precision=precision, channels_last=channels_last,
                                     sample_every=0, save_every=10 ** 9, device="cpu", **recipe)
        train_autoencoder(cfg, log=lambda info: speeds.append(info["images_per_s"]))
    return statistics.median(speeds[2:] or speeds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="toy64")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, nargs="+", default=[torch.get_num_threads()])
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        size = 64 if args.preset == "toy64" else 32
        data = Path(tmp) / "faces"
        write_dataset(data, 64, seed=1, size=size, masks=False)
        print(f"preset {args.preset}, batch {args.batch_size}, {args.steps} steps, torch {torch.__version__}")
        print(f"{'threads':>7s}  {'precision':>9s}  {'memory format':>14s}  {'recipe':>20s}  {'images/s':>8s}")
        for threads in args.threads:
            torch.set_num_threads(threads)
            for precision in args.precisions:
                for channels_last in (False, True):
                    for name, recipe in RECIPES.items():
                        if name != "official" and (precision, channels_last) != (args.precisions[-1], True):
                            continue  # the recipes differ only in the loss: one setting is enough
                        ips = images_per_second(data / "images", args.preset, args.steps, args.batch_size, precision,
                                                channels_last, recipe)
                        fmt = "channels_last" if channels_last else "contiguous"
                        print(f"{threads:7d}  {precision:>9s}  {fmt:>14s}  {name:>20s}  {ips:8.1f}")


if __name__ == "__main__":
    main()
