"""Benchmarks of the group-supervised autoencoder (GAE) on generated toy faces.

* :func:`perplexity_matrix` (DiffuseGAE Tab. 1): a linear probe (multinomial logistic regression, 80:20 split)
  predicts each attribute group's class from each z_dis slice; the same probes on contiguous slices of the
  raw (normalised) z_sem of equal sizes give the contrast. Probe faces have independent groups (each group's
  parameters from a different random face), so under disentanglement the diagonal is ~1 and the off-diagonal
  is at chance (the majority-class frequency, reported per row). A group's class is the combination of its
  attributes (identity: Male, No_Beard, Pale_Skin; hair: Bangs, Black_Hair, Blond_Hair; mouth; eyes;
  accessories) and, for background, its pattern (plain / gradient / stripes); pose has no class.
* :func:`swap_benchmark`: pairs (A, B) of held-out faces; for each slice g, A gets B's slice g (x_T inverted
  from A) and the oracle judges the result against the exact counterfactual ``share_group(A, B, g)``:
  success = all of g's attributes show B's values (pairs where A and B differ on them), preserved = the other
  attributes keep A's values; MSE / SSIM against the rendered counterfactual. Reference rows: plain
  reconstructions with z_sem and with z_sem passed through the GAE (MSE / SSIM against A, oracle agreement).

Face seeds: probe faces ``face_seed(probe_seed, .)`` (default 777), swap pairs ``face_seed(pair_seed, .)``
(default 888); both disjoint from the training set (0), the GAE's groups (100) and the oracle's (999, 1234+).
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from .. import pipeline
from ..data import toyfaces
from ..data.groups import render_faces
from ..editing.swapping import model_gae, swap_codes
from ..errors import InputError
from ..io.images import to_model_range
from ..io.models import DiffAEModel
from ..sampling import EVALUATION, Sampling
from .benchmarks import chunks, format_table, mse, ssim, to_unit


def independent_face(seed: int, index: int) -> toyfaces.FaceParams:
    """A face whose parameter groups come from different random faces (groups statistically independent)."""
    names = list(toyfaces.GROUPS)
    base = index * len(names)
    face = toyfaces.sample_face(toyfaces.face_seed(seed, base))
    for k, group in enumerate(names[1:], start=1):
        face = toyfaces.share_group(face, toyfaces.sample_face(toyfaces.face_seed(seed, base + k)), group)
    return face


def probe_class(face: toyfaces.FaceParams, group: str) -> Optional[int]:
    """The class of ``group`` used by the probes (see module docstring); None for groups without one."""
    if group == "background":
        return int(face.bg_pattern)
    attrs = toyfaces.GROUPS[group].attributes if group in toyfaces.GROUPS else ()
    if not attrs:
        return None
    present = toyfaces.attributes(face)
    return sum(int(present[a]) << k for k, a in enumerate(attrs))


def group_labels(faces: List[toyfaces.FaceParams], group: str) -> torch.Tensor:
    """The probe classes of ``group`` for ``faces`` as indices 0..C-1 (N,) int64 (see :func:`probe_class`)."""
    _, labels = np.unique(np.array([probe_class(f, group) for f in faces]), return_inverse=True)
    return torch.from_numpy(labels.astype(np.int64))


def linear_probe(x_train: torch.Tensor, y_train: torch.Tensor, x_test: torch.Tensor, y_test: torch.Tensor,
                 iterations: int = 200, l2: float = 1e-3) -> float:
    """Test accuracy of multinomial logistic regression (LBFGS) on standardised features x (N, F), y (N,) int."""
    mean, std = x_train.mean(0), x_train.std(0).clamp_min(1e-6)
    xs, xt = (x_train - mean) / std, (x_test - mean) / std
    classes = int(max(y_train.max(), y_test.max())) + 1
    torch.manual_seed(0)
    linear = torch.nn.Linear(xs.shape[1], classes).double()
    xs, xt = xs.double(), xt.double()
    opt = torch.optim.LBFGS(linear.parameters(), max_iter=iterations, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(linear(xs), y_train) + l2 * linear.weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    with torch.no_grad():
        return float((linear(xt).argmax(1) == y_test).float().mean())


@torch.no_grad()
def perplexity_matrix(model: DiffAEModel, n: int = 2000, seed: int = 777, batch_size: int = 64,
                      progress=None) -> dict:
    """Probe accuracy of every group class from every z_dis slice and from equal raw z_sem slices.

    Returns {"slices", "rows": [group names with a class], "chance": {group: majority frequency},
    "z_dis": {group: {slice: acc}}, "z_sem": {group: {slice: acc}}, "all_z_dis" / "all_z_sem": {group: acc of a
    probe on the whole code} (the ceiling), "n_train", "n_test"}.
    """
    if n < 10:
        raise InputError(f"probe_n must be at least 10, got {n}", param="probe_n")
    gae = model_gae(model)
    size = model.image_size
    faces = [independent_face(seed, i) for i in range(n)]
    z = pipeline.encode_dataset(model.autoencoder, render_faces(faces, size), batch_size=batch_size,
                                progress=progress, precision=EVALUATION.precision)
    z_dis = gae.encode(z.to(gae.z_mean.device)).cpu()
    z_norm = gae.normalize(z.to(gae.z_mean.device)).cpu()
    ranges = gae.slice_ranges()
    rows = [g for g in toyfaces.GROUPS if probe_class(faces[0], g) is not None]
    n_train = int(round(0.8 * n))
    out = {"slices": list(ranges), "rows": rows, "chance": {}, "z_dis": {}, "z_sem": {}, "all_z_dis": {},
           "all_z_sem": {}, "n_train": n_train, "n_test": n - n_train}
    for group in rows:
        y = group_labels(faces, group)
        test = y[n_train:]
        out["chance"][group] = float(torch.bincount(test).max()) / len(test)
        for key, features in (("z_dis", z_dis), ("z_sem", z_norm)):
            accs = {}
            for name, cols in ranges.items():
                x = features[:, cols]
                accs[name] = linear_probe(x[:n_train], y[:n_train], x[n_train:], test)
            out[key][group] = accs
            out["all_" + key][group] = linear_probe(features[:n_train], y[:n_train], features[n_train:], test)
    return out


def perplexity_rows(result: dict, key: str) -> List[dict]:
    """Table rows of one perplexity matrix (``key`` "z_dis" or "z_sem"): group, chance, one column per slice."""
    rows = []
    for group in result["rows"]:
        row = {f"group ({key})": group, "chance": round(result["chance"][group], 3)}
        row.update({name: round(acc, 3) for name, acc in result[key][group].items()})
        row["all"] = round(result["all_" + key][group], 3)
        rows.append(row)
    return rows


def _oracle_labels(oracle, images: torch.Tensor) -> torch.Tensor:
    return oracle.predict(images.to(next(oracle.parameters()).device)).cpu()


@torch.no_grad()
def _swap_row(group: str, faces_a, faces_b, truth_a: torch.Tensor, images_a: torch.Tensor, images: torch.Tensor,
              oracle, names: Sequence[str], size: int) -> Tuple[dict, Tuple[int, int, int, int]]:
    """One slice's row: pairs whose own attributes differ, success (the oracle reads B's own attributes
    on the swap), preservation (it reads A's others), distances to the counterfactual face; and the counts
    (pairs differing, successes, others kept, others) that the summary adds up."""
    counter = [toyfaces.share_group(a, b, group) for a, b in zip(faces_a, faces_b)]
    truth = torch.tensor([[toyfaces.attributes(f)[a] for a in names] for f in counter])
    target_images = to_model_range(render_faces(counter, size))
    predicted = _oracle_labels(oracle, images)
    own = [k for k, a in enumerate(names) if a in toyfaces.GROUPS[group].attributes]
    other = [k for k in range(len(names)) if k not in own]
    row = {"slice": group, "pairs_differ": None, "success": None, "preserved": None}
    n_differ = n_hits = 0
    if own:
        differ = (truth_a[:, own] != truth[:, own]).any(1)
        hit = (predicted[:, own] == truth[:, own]).all(1)
        row["pairs_differ"] = int(differ.sum())
        row["success"] = float(hit[differ].float().mean()) if differ.any() else None
        n_differ, n_hits = int(differ.sum()), int(hit[differ].sum())
    kept = (predicted[:, other] == truth[:, other])
    row["preserved"] = float(kept.float().mean())
    row["mse_vs_counterfactual"] = float(mse(to_unit(images), to_unit(target_images)).mean())
    row["ssim_vs_counterfactual"] = float(ssim(to_unit(images), to_unit(target_images)).mean())
    row["mse_A_vs_counterfactual"] = float(mse(to_unit(images_a), to_unit(target_images)).mean())
    return row, (n_differ, n_hits, int(kept.sum()), kept.numel())


def swap_benchmark(model: DiffAEModel, n: int = 50, seed: int = 888, sampling: Sampling = EVALUATION,
                   batch_size: int = 16, residual: bool = False, progress=None) -> dict:
    """Swap success / preservation per slice and reconstruction through the GAE on ``n`` pairs (A, B).

    Returns {"recon": rows, "swap": rows, "summary": {...}}; see the module docstring.
    """
    if n < 1:
        raise InputError(f"n must be at least 1, got {n}", param="n")
    gae = model_gae(model)
    oracle = model.component("oracle")
    names = list(oracle.attributes)
    size = model.image_size
    ae = model.autoencoder
    faces_a = [toyfaces.sample_face(toyfaces.face_seed(seed, 2 * i)) for i in range(n)]
    faces_b = [toyfaces.sample_face(toyfaces.face_seed(seed, 2 * i + 1)) for i in range(n)]
    images_a = to_model_range(render_faces(faces_a, size))
    images_b = to_model_range(render_faces(faces_b, size))
    slices = [s for s in gae.slice_names if s in toyfaces.GROUPS]
    total = n * (3 + len(slices))
    done = 0

    def tick(k: int) -> None:
        nonlocal done
        done += k
        if progress:
            progress(done, total)

    z_a, x_T = pipeline.encode_and_invert(ae, images_a, sampling, batch_size)
    z_b = torch.cat([pipeline.encode_semantic(ae, images_b[part], sampling.precision).cpu()
                     for part in chunks(n, batch_size)])
    tick(n)

    def decode_all(z: torch.Tensor) -> torch.Tensor:
        outs = []
        for part in chunks(n, batch_size):
            outs.append(pipeline.decode(ae, z[part], x_T[part], sampling).cpu())
            tick(part.stop - part.start)
        return torch.cat(outs)

    truth_a = torch.tensor([[toyfaces.attributes(f)[a] for a in names] for f in faces_a])
    recon_rows = []
    with torch.no_grad():
        z_gae = gae(z_a.to(gae.z_mean.device)).cpu()
    for label, z in (("z_sem (no GAE)", z_a), ("GAE(z_sem)", z_gae)):
        images = decode_all(z)
        agree = (_oracle_labels(oracle, images) == truth_a).float().mean()
        recon_rows.append({"reconstruction": label, "mse": float(mse(to_unit(images), to_unit(images_a)).mean()),
                           "ssim": float(ssim(to_unit(images), to_unit(images_a)).mean()),
                           "oracle_agreement": float(agree)})
    swaps = [_swap_row(group, faces_a, faces_b, truth_a, images_a,
                       decode_all(swap_codes(gae, z_a, z_b, [group], residual)), oracle, names, size) for group in slices]
    swap_rows = [row for row, _ in swaps]
    differ, hits, kept, others = (sum(counts[k] for _, counts in swaps) for k in range(4))
    summary = {"pairs": n, "swap_success": hits / differ if differ else None,
               "preserved": kept / others if others else None,
               "sampling": sampling.describe(), "residual": residual}
    return {"recon": recon_rows, "swap": swap_rows, "summary": summary}


def eval_gae(model: DiffAEModel, probe_n: int = 2000, probe_seed: int = 777, n: int = 50, pair_seed: int = 888,
             sampling: Sampling = EVALUATION, batch_size: int = 16,
             residual: bool = False, swap: bool = True, progress=None) -> dict:
    """Both benchmarks; ``progress`` is a :class:`jobs.Reporter` (or None)."""
    bar = progress.steps("encoding probe faces") if progress is not None else None
    result = {"perplexity": perplexity_matrix(model, probe_n, probe_seed, progress=bar)}
    if swap:
        bar = progress.steps("swapping and decoding") if progress is not None else None
        result.update(swap_benchmark(model, n, pair_seed, sampling, batch_size, residual, bar))
    return result


def format_gae_report(result: dict) -> str:
    """The eval result as text tables (perplexity matrices, reconstruction, swaps, summary)."""
    perplexity = result["perplexity"]
    parts = [f"perplexity matrix (linear-probe test accuracy, {perplexity['n_train']}:{perplexity['n_test']} "
             "split; rows: attribute group, columns: slice; all: the whole code)",
             format_table(perplexity_rows(perplexity, "z_dis")), "",
             format_table(perplexity_rows(perplexity, "z_sem"),
                          ["(z_sem: contiguous slices of normalised z_sem with the z_dis slice sizes)"])]
    if "swap" in result:
        parts += ["", format_table(result["recon"]), "", format_table(result["swap"])]
        s = result["summary"]
        def fmt(v):
            return "n/a" if v is None else f"{v:.3f}"
        parts.append(f"swap success {fmt(s['swap_success'])}, other attributes preserved {fmt(s['preserved'])} "
                     f"({s['pairs']} pairs; sampling: {s['sampling']}"
                     f"{', residual' if s['residual'] else ''})")
    return "\n".join(parts)
