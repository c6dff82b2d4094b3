"""How much of each GAE attribute group does a model's z_sem hold? Linear and MLP probes on the whole code.

    python benchmarks/gae_ceiling.py [--model toyfaces] [--n 6000] [--train-sizes 1600,4800]

``diffedit eval gae`` probes each z_dis slice linearly on 2,000 faces (1,600 to train); its ``all`` column is the
same linear probe on the whole code. A GAE cannot put into a slice what z_sem does not hold, but its encoder is
nonlinear, so the linear ``all`` column is not a strict ceiling. This prints, per group class (the same classes and
independent-group faces as ``eval gae``, probe seed 777), the test accuracy on the last 20 % of ``--n`` faces of:

* the linear probe of ``eval gae`` (multinomial logistic regression) trained on the first ``k`` faces, for each
  ``k`` of ``--train-sizes`` (does the 1,600-face probe underestimate?);
* a two-layer MLP (512 hidden, SiLU, AdamW, weight decay, the epoch with the best accuracy on a validation tenth
  of the training faces) trained on the largest ``k``: a nonlinear read-out of z_sem.

If the MLP stays well below 0.95 on a group, no GAE on this autoencoder can reach the 0.95 diagonal for it: the
encoder has to hold the group better first.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from diffedit_cli import pipeline
from diffedit_cli.data import toyfaces
from diffedit_cli.data.groups import render_faces
from diffedit_cli.evaluation.gae import group_labels, independent_face, linear_probe, probe_class
from diffedit_cli.io.models import load_model


def mlp_probe(x_train: torch.Tensor, y_train: torch.Tensor, x_test: torch.Tensor, y_test: torch.Tensor,
              epochs: int = 200, hidden: int = 512, seed: int = 0) -> float:
    """Test accuracy of a two-layer MLP on standardised x (N, F), y (N,) int; epoch chosen on a validation tenth."""
    mean, std = x_train.mean(0), x_train.std(0).clamp_min(1e-6)
    xs, xt = (x_train - mean) / std, (x_test - mean) / std
    n_val = max(1, len(xs) // 10)
    xv, yv, xs, ys = xs[-n_val:], y_train[-n_val:], xs[:-n_val], y_train[:-n_val]
    classes = int(max(y_train.max(), y_test.max())) + 1
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(xs.shape[1], hidden), torch.nn.SiLU(), torch.nn.Dropout(0.2),
                              torch.nn.Linear(hidden, classes))
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-2)
    best_val, best_test = -1.0, 0.0
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        net.train()
        for idx in torch.randperm(len(xs), generator=gen).split(128):
            loss = F.cross_entropy(net(xs[idx]), ys[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        net.eval()
        with torch.no_grad():
            val = float((net(xv).argmax(1) == yv).float().mean())
            if val > best_val:
                best_val, best_test = val, float((net(xt).argmax(1) == y_test).float().mean())
    return best_test


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="toyfaces")
    parser.add_argument("--n", type=int, default=6000, help="independent-group faces (the last 20 %% are the test set)")
    parser.add_argument("--train-sizes", default="1600,4800", help="training faces of the linear probes (the "
                        "largest also trains the MLP)")
    parser.add_argument("--seed", type=int, default=777)
    parser.add_argument("--epochs", type=int, default=200)
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.train_sizes.split(","))
    n_test = args.n // 5
    if sizes[-1] > args.n - n_test:
        parser.error(f"--train-sizes up to {args.n - n_test} with --n {args.n}")

    torch.set_grad_enabled(False)
    model = load_model(args.model, device="cpu")
    tick = time.perf_counter()
    faces = [independent_face(args.seed, i) for i in range(args.n)]
    z = pipeline.encode_dataset(model.autoencoder, render_faces(faces, model.image_size), batch_size=64).float()
    print(f"encoded {args.n} faces in {time.perf_counter() - tick:.0f} s; z_sem {tuple(z.shape)}")
    x_test = z[-n_test:]
    header = ["group", "chance"] + [f"linear@{k}" for k in sizes] + [f"mlp@{sizes[-1]}"]
    print("  ".join(f"{h:>12}" for h in header))
    for group in toyfaces.GROUPS:
        if probe_class(faces[0], group) is None:
            continue
        y = group_labels(faces, group)
        y_test = y[-n_test:]
        row = [group, f"{float(torch.bincount(y_test).max()) / n_test:.4f}"]
        with torch.enable_grad():
            for k in sizes:
                row.append(f"{linear_probe(z[:k], y[:k], x_test, y_test):.4f}")
            row.append(f"{mlp_probe(z[:sizes[-1]], y[:sizes[-1]], x_test, y_test, epochs=args.epochs):.4f}")
        print("  ".join(f"{c:>12}" for c in row), flush=True)
    print(f"({n_test} test faces; {time.perf_counter() - tick:.0f} s in all)")


if __name__ == "__main__":
    main()
