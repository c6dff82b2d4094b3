"""Parameter counts of the full-size FFHQ-128 configurations of HDAE Tab. 1, computed by instantiating them.

Run: python benchmarks/hdae_params.py   (builds on the meta device: no memory, a few seconds)
"""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from diffedit_cli.io.convert import PRESETS
from diffedit_cli.networks.hdae import autoencoder_config, build_autoencoder

PAPER = {"DAE": 122.59, "DAE(2560)": 190.6, "DAE(U)": 160.94, "HDAE(E)": 154.62, "HDAE(U)": 189.15}


def count(module) -> int:
    return sum(p.numel() for p in module.parameters())


def main() -> None:
    ffhq128 = dict(PRESETS["ffhq128"])
    with torch.device("meta"):
        dae = build_autoencoder(autoencoder_config("diffae", **ffhq128))
        dae2560 = build_autoencoder(autoencoder_config("diffae", **dict(ffhq128, enc_out_channels=2560)))
        hdae_e = build_autoencoder(autoencoder_config("hdae-e", **ffhq128))
        hdae_u = build_autoencoder(autoencoder_config("hdae-u", **ffhq128))
    # DAE(U): the U-shaped encoder but one 512-d code (the bottom head) for every AdaGN layer,
    # i.e. HDAE(U) without the per-level heads (its UNet projections already read 512 values).
    ours = {"DAE": count(dae), "DAE(2560)": count(dae2560), "DAE(U)": count(hdae_u) - count(hdae_u.encoder.heads),
            "HDAE(E)": count(hdae_e), "HDAE(U)": count(hdae_u)}
    print(f"{'model':10s} {'code dim':>8s} {'ours (M)':>9s} {'paper (M)':>9s} {'ours-DAE':>9s} {'paper-DAE':>9s}")
    dims = {"DAE": 512, "DAE(2560)": 2560, "DAE(U)": 512, "HDAE(E)": 2560, "HDAE(U)": 2560}
    for name, n in ours.items():
        print(f"{name:10s} {dims[name]:8d} {n / 1e6:9.2f} {PAPER[name]:9.2f} {(n - ours['DAE']) / 1e6:9.2f} "
              f"{PAPER[name] - PAPER['DAE']:9.2f}")


if __name__ == "__main__":
    main()
