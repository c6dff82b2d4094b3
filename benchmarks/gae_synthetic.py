"""The GAE objective on synthetic codes: does L_r + L_ss + L_ur disentangle when z_sem holds every group?

    python benchmarks/gae_synthetic.py [--lr 3e-4] [--steps 600] [--groups 1000]

Stand-in for z_sem: a fixed random two-layer tanh network of all toy-face parameters (D = 256, plus 1 % noise),
so every group is present and entangled across all dimensions. GROUP(C, 1) samples come from
:func:`diffedit_cli.data.groups.toyface_group` (parameters only, nothing is rendered); training uses the real loss
(:func:`diffedit_cli.training.gae.gae_losses`) and GAE; the printout is the perplexity matrix (rows: group,
columns: z_dis slices) of linear probes on 1000 faces with independent groups (80:20), as ``diffedit eval gae``.
This isolates the GAE from the autoencoder: a weak matrix from ``eval gae`` with a strong one here means z_sem
lacks the information.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np
import torch

from diffedit_cli.data import toyfaces
from diffedit_cli.evaluation.gae import independent_face, linear_probe, probe_class
from diffedit_cli.training.gae import combine, gae_losses
from diffedit_cli.data.groups import toyface_group
from diffedit_cli.networks.gae import GAEConfig, GroupAutoencoder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--groups", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()

    names = list(toyfaces.GROUPS)
    fields = [f.name for f in dataclasses.fields(toyfaces.FaceParams)]
    torch.manual_seed(123)
    w1 = torch.randn(len(fields), 256) / len(fields) ** 0.5 * 2
    w2 = torch.randn(256, 256) / 16

    def codes_of(faces):
        f = torch.tensor([[float(getattr(x, k)) for k in fields] for x in faces])
        return torch.tanh(torch.tanh(f @ w1) @ w2) + 0.01 * torch.randn(len(faces), 256)

    faces = [f for k in range(args.groups) for f in toyface_group(100, k, names)]
    codes = codes_of(faces).reshape(args.groups, 1 + len(names), 256)
    gae = GroupAutoencoder(GAEConfig(z_sem_dim=256, hidden=256, slices=[(n, 16) for n in names]))
    flat = codes.reshape(-1, 256)
    gae.z_mean.copy_(flat.mean(0))
    gae.z_std.copy_(flat.std(0))
    z_norm = gae.normalize(codes)
    members = [(j + 1, n) for j, n in enumerate(names)]
    opt = torch.optim.Adam(gae.parameters(), lr=args.lr)
    start = time.time()
    for step in range(args.steps):
        gen = torch.Generator().manual_seed(step)
        idx = torch.randint(0, args.groups, (args.batch_size,), generator=gen)
        losses = gae_losses(gae, z_norm[idx], members, gen)
        loss = combine(losses, 1.0, 0.5)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 100 == 0 or step == args.steps - 1:
            print(step, {k: round(v.item(), 3) for k, v in losses.items()}, f"{time.time() - start:.0f}s", flush=True)
    probe_faces = [independent_face(777, i) for i in range(1000)]
    with torch.no_grad():
        z_dis = gae.encode(codes_of(probe_faces))
    print("group        chance  " + "  ".join(f"{n[:6]:>6}" for n in names))
    for group in names:
        classes = [probe_class(f, group) for f in probe_faces]
        if classes[0] is None:
            continue
        y = torch.from_numpy(np.unique(np.array(classes), return_inverse=True)[1].astype(np.int64))
        accs = [linear_probe(z_dis[:800, cols], y[:800], z_dis[800:, cols], y[800:]) for cols in gae.slice_ranges().values()]
        chance = float(torch.bincount(y[800:]).max()) / 200
        print(f"{group:12s} {chance:6.2f}  " + "  ".join(f"{a:6.2f}" for a in accs))


if __name__ == "__main__":
    main()
