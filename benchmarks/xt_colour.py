"""How much of an image's mean colour a model takes from z_sem and how much from x_T.

At a high-noise step t, x_t = sqrt(a) x0 + sqrt(1-a) eps with sqrt(a) ~ 0.006 at t=999. The
image's per-channel mean (its "DC" colour) survives in x_t only as a tiny offset, and the
eps-network's first x0 estimate, (x_t - sqrt(1-a) eps_hat) / sqrt(a), amplifies any error in the
DC of eps_hat by 1/sqrt(a) ~ 160. A converged model predicts eps_hat's DC as x_t's DC minus the
image colour it reads from z_sem (slope ~ 1 below); an under-trained one passes only part of x_t's DC
through, so a random x_T's own DC (std 1/image_size) becomes a colour cast of the decoded image.

For held-out images this prints, per t: the regression slope of eps_hat's channel means on the true
noise's channel means (ideal 1), and the mean absolute error of the x0 estimate's channel means in
[0, 1] image units, for the true noise and for the same noise with its channel means removed.
With --decode-steps it also decodes every face from its z_sem and a random x_T, as drawn and with its
channel means removed, and prints how many oracle labels survive (the "random x_T" row of
'diffedit eval recon'): if the colour casts were the whole story, the centred row would be much higher.

Run: python benchmarks/xt_colour.py --model toyfaces --data runs/data/heldout --n 64 --decode-steps 20
"""

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from diffedit_cli import diffusion, pipeline
from diffedit_cli.sampling import OFFICIAL
from diffedit_cli.evaluation.benchmarks import chunks, label_agreement, load_faces
from diffedit_cli.io.models import load_model
from diffedit_cli.pipeline import encode_semantic


def channel_means(x: torch.Tensor) -> torch.Tensor:
    return x.mean(dim=(2, 3))


@torch.no_grad()
def colour_table(autoencoder, images: torch.Tensor, timesteps, seed: int = 0, batch_size: int = 32):
    """Rows (t, slope, x0 DC error with noise, x0 DC error with zero-mean noise); images in [-1, 1]."""
    process = diffusion.Parameterization.of(autoencoder.config)
    alphas_cumprod = process.alphas_cumprod()
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn(images.shape, generator=gen)
    centred = noise - channel_means(noise)[..., None, None]
    z_sem = torch.cat([encode_semantic(autoencoder, images[i:i + batch_size], "fp32") for i in range(0, len(images), batch_size)])
    rows = []
    for t in timesteps:
        a = float(alphas_cumprod[t])
        errors, pairs = [], None
        for eps in (noise, centred):
            x_t = a ** 0.5 * images + (1 - a) ** 0.5 * eps
            out = torch.cat([autoencoder(x_t[i:i + batch_size], torch.full((len(x_t[i:i + batch_size]),), t),
                                         z_sem[i:i + batch_size]) for i in range(0, len(x_t), batch_size)])
            x0_hat, eps_hat = diffusion.split_output(x_t, out, a, process.prediction, clip=False)
            errors.append(((channel_means(x0_hat) - channel_means(images)).abs().mean() / 2).item())
            if pairs is None:
                pairs = (channel_means(eps).flatten(), channel_means(eps_hat).flatten())
        x, y = pairs
        slope = float(((x - x.mean()) * (y - y.mean())).sum() / (x - x.mean()).pow(2).sum())
        rows.append((t, slope, errors[0], errors[1]))
    return rows


@torch.no_grad()
def random_xt_label_agreement(model, faces, steps: int, seed: int = 0, batch_size: int = 32):
    """{"random x_T": acc, "centred random x_T": acc}: fraction of (face, attribute) oracle labels kept."""
    agree = label_agreement(model.extra["oracle"], faces)
    kept = {"random x_T": [], "centred random x_T": []}
    for batch in chunks(len(faces.files), batch_size):
        z_sem = encode_semantic(model.autoencoder, faces.images[batch], "fp32")
        x_T = pipeline.random_x_T(range(batch.start, batch.stop), model.image_size, seed)
        for name, start in (("random x_T", x_T), ("centred random x_T", x_T - channel_means(x_T)[..., None, None])):
            decoded = pipeline.decode(model.autoencoder, z_sem, start, OFFICIAL.replace(steps=steps))
            kept[name].append(agree(decoded, batch))
    return {name: torch.cat(values).mean().item() for name, values in kept.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="toyfaces")
    parser.add_argument("--data", required=True, help="held-out toy-faces folder (images/ + list_attr.txt)")
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--t", type=int, nargs="+", default=[999, 900, 800, 700, 500])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--decode-steps", type=int, default=0, help="also decode with random x_T (needs an oracle)")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    model = load_model(args.model, components=("oracle",) if args.decode_steps else ())
    autoencoder = model.autoencoder.eval()
    faces = load_faces(args.data, args.n, model.image_size)
    images = faces.images
    print(f"model {args.model}, {len(images)} images, seed {args.seed}")
    print(f"{'t':>5s} {'sqrt(a)':>8s} {'DC slope':>9s} {'x0 DC err':>10s} {'(0-mean noise)':>15s}")
    alphas_cumprod = diffusion.Parameterization.of(autoencoder.config).alphas_cumprod()
    for t, slope, err, err_centred in colour_table(autoencoder, images, args.t, args.seed):
        print(f"{t:5d} {alphas_cumprod[t].sqrt().item():8.4f} {slope:9.3f} {err:10.3f} {err_centred:15.3f}")
    if args.decode_steps:
        for name, value in random_xt_label_agreement(model, faces, args.decode_steps, args.seed).items():
            print(f"oracle labels kept, {name} (T={args.decode_steps}): {value:.4f}")


if __name__ == "__main__":
    main()
