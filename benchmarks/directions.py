"""How good are directions beyond the classifier? Few-shot, PCA and projected directions, judged by the oracle.

On generated held-out faces (``diffedit data toyfaces --seed 7``), with labelled example faces from another
seed for the few-shot directions and the PCA:

1. per attribute: flip@ALPHA (the oracle reads the target after an edit toward the opposite of what it saw)
   and attribute dependency (mean |logit change| of the oracle's other attributes) for the classifier
   direction and for few-shot directions from 5, 20 and 100 examples per side (ground-truth labels);
2. the leading PCA components of the example codes, each with the attribute it correlates with most (|r|);
3. correlated pairs (Male / No_Beard, Wearing_Hat / Bangs): the change of the partner's oracle logit when
   editing one, with and without --orthogonal-to the partner.

    python benchmarks/directions.py --heldout runs/data/heldout --examples runs/data/probe --n 32
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from diffedit_cli.editing import directions as dirs
from diffedit_cli.sampling import OFFICIAL
from diffedit_cli import pipeline
from diffedit_cli.editing.attributes import classifier_edit
from diffedit_cli.evaluation.benchmarks import load_faces
from diffedit_cli.io.models import load_model

PAIRS = [("Male", "No_Beard"), ("Wearing_Hat", "Bangs")]


def read_labels(folder: Path, files) -> torch.Tensor:
    lines = (folder / "list_attr.txt").read_text().splitlines()
    names = lines[1].split()
    table = {parts[0]: [int(v) > 0 for v in parts[1:]] for parts in (line.split() for line in lines[2:])}
    return names, torch.tensor([table[Path(f).name] for f in files])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None)
    parser.add_argument("--heldout", required=True)
    parser.add_argument("--examples", required=True)
    parser.add_argument("--n", type=int, default=32, help="held-out faces edited")
    parser.add_argument("--n-examples", type=int, default=3000, help="example faces encoded (PCA and few-shot pool)")
    parser.add_argument("--shots", nargs="+", type=int, default=[5, 20, 100])
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--components", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                        help="of the autoencoder (auto: the CLI's CPU default, bf16 where native, else fp32)")
    args = parser.parse_args()
    started = time.perf_counter()

    model = load_model(args.model, components=("classifier", "oracle"))
    precision = pipeline.pick_precision(args.precision, torch.device("cpu"))
    ae = pipeline.prepare(model.autoencoder.eval(), torch.device("cpu"))
    classifier, oracle = model.classifier, model.component("oracle")
    names = [a for a in classifier.attributes if a in oracle.attributes]
    mean, std, _ = dirs.model_normalisation(model)

    pool = load_faces(args.examples, args.n_examples, model.image_size)
    label_names, labels = read_labels(Path(args.examples), pool.files)
    z_pool = torch.cat([pipeline.encode_semantic(ae, x, precision) for x in pool.images.split(args.batch_size)])
    zn_pool = dirs.normalise(z_pool, mean, std)

    faces = load_faces(args.heldout, args.n, model.image_size)
    z = torch.cat([pipeline.encode_semantic(ae, x, precision) for x in faces.images.split(args.batch_size)])
    x_T = torch.cat([pipeline.invert(ae, x, zz, OFFICIAL.replace(inv_steps=args.steps, precision=precision)) for x, zz in
                     zip(faces.images.split(args.batch_size), z.split(args.batch_size))])
    with torch.no_grad():
        seen = torch.cat([oracle(x).float() for x in faces.images.split(args.batch_size)])

    def judge(edit_for, name, against=()):
        """Edit every face toward the opposite of the oracle's reading of ``name``; (flip rate, logits after)."""
        col = oracle.attributes.index(name)
        toward = seen[:, col] <= 0
        up = dirs.apply_edits(z, [edit_for(name, args.alpha)], against)
        down = dirs.apply_edits(z, [edit_for(name, -args.alpha)], against)
        codes = torch.where(toward[:, None], up, down)
        out = torch.cat([pipeline.decode(ae, c, x, OFFICIAL.replace(steps=args.steps, precision=precision)) for c, x in
                         zip(codes.split(args.batch_size), x_T.split(args.batch_size))])
        with torch.no_grad():
            after = torch.cat([oracle(o).float() for o in out.split(args.batch_size)])
        return float(((after[:, col] > 0) == toward).float().mean()), after

    def dependency(after, name):
        others = [oracle.attributes.index(o) for o in names if o != name]
        return float((after[:, others] - seen[:, others]).abs().mean())

    def classifier_dir(name, alpha):
        return classifier_edit(classifier, classifier.attributes.index(name), alpha)

    print(f"# {model.model_id}: {len(faces.files)} held-out faces from {args.heldout}, alpha {args.alpha}, "
          f"{args.steps} DDIM steps, {precision}; examples: {len(pool.files)} faces from {args.examples}")
    print("## flip@alpha / dependency per attribute and direction source")
    header = ["classifier"] + [f"{k} per side" for k in args.shots]
    print(f"{'attribute':20} " + " ".join(f"{h:>17}" for h in header))
    totals = {h: [0.0, 0.0] for h in header}
    for name in names:
        cells = []
        flip, after = judge(classifier_dir, name)
        cells.append((flip, dependency(after, name)))
        col = label_names.index(name)
        for shots in args.shots:
            pos = zn_pool[labels[:, col]][:shots]
            neg = zn_pool[~labels[:, col]][:shots]
            if min(len(pos), len(neg)) < shots:
                cells.append((float("nan"), float("nan")))
                continue
            vector, _ = dirs.example_direction(pos, neg)
            few = dirs.Edit(name, vector * std, std, 0.0)
            flip, after = judge(lambda n, a: dirs.Edit(n, few.raw, few.std, a), name)
            cells.append((flip, dependency(after, name)))
        for h, (f, d) in zip(header, cells):
            totals[h][0] += f / len(names)
            totals[h][1] += d / len(names)
        print(f"{name:20} " + " ".join(f"{f:8.3f} / {d:6.3f}" for f, d in cells), flush=True)
    print(f"{'mean':20} " + " ".join(f"{totals[h][0]:8.3f} / {totals[h][1]:6.3f}" for h in header))

    print("## leading PCA components of the example codes: the attribute each correlates with most")
    vectors, explained = dirs.pca_directions(zn_pool, args.components)
    scores = (zn_pool - zn_pool.mean(0)) @ vectors.T
    truth = labels.float()
    for k in range(len(vectors)):
        s = scores[:, k]
        r = [float(torch.corrcoef(torch.stack([s, truth[:, j]]))[0, 1]) for j in range(truth.shape[1])]
        best = max(range(len(r)), key=lambda j: abs(r[j]) if r[j] == r[j] else -1)
        print(f"pc{k + 1:02d}  variance {float(explained[k]):6.1%}  {label_names[best]:20} |r| {abs(r[best]):.2f}")

    print("## correlated pairs: partner's mean |logit change| when editing the first, with / without projection")
    for first, partner in PAIRS:
        if first not in names or partner not in names:
            continue
        pcol = oracle.attributes.index(partner)
        plain_flip, plain = judge(classifier_dir, first)
        raw_partner = classifier_edit(classifier, classifier.attributes.index(partner), 1.0).raw
        proj_flip, proj = judge(classifier_dir, first, [raw_partner])
        print(f"{first:12} vs {partner:10}  plain: flip {plain_flip:.3f}, partner change "
              f"{float((plain[:, pcol] - seen[:, pcol]).abs().mean()):.3f}   --orthogonal-to {partner}: flip "
              f"{proj_flip:.3f}, partner change {float((proj[:, pcol] - seen[:, pcol]).abs().mean()):.3f}")
    print(f"# {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
