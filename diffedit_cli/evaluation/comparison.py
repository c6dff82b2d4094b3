"""The HDAE paper's comparison on generated faces: DAE vs HDAE(U) vs HDAE(U) + top-k.

* :func:`eval_fidelity` — HDAE supplement Tab. 2 protocol: edit each face along each attribute's classifier
  direction with signed ``alpha`` in [-0.5, 0.5] (not toward a target), and measure MSE and LPIPS between
  ``I_0 * (1 - M)`` and ``I_m * (1 - M)``, M the attribute's dilated part mask (:func:`evaluation.edit_region`,
  exact on toy faces), averaged over alphas and faces.
* :func:`compare_models` — one row per (model, top-k): the fidelity above, attribute dependency and oracle flip
  rate (:func:`evaluation.eval_editing`), reconstruction MSE with inferred and random x_T
  (:func:`evaluation.eval_reconstruction`).
* :func:`training_curve` — reconstruction vs training steps from a run's EMA snapshots (``train autoencoder
  keep_every N`` writes ``snapshots/autoencoder_<step>/``) next to the logged training loss.

All images in [0, 1]; MSE in [0, 1]; LPIPS >= 0 (None when LPIPS cannot run: no lpips package, or
no AlexNet weights and no way to download them).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch

from .. import pipeline
from ..data import toyfaces
from ..editing.attributes import edit_z_sem, level_edit_route
from ..errors import InputError, opt
from ..io.components import SNAPSHOT_DIR
from ..io.models import DiffAEModel, ModelLocation, load_component
from ..sampling import EVALUATION, Sampling
from .benchmarks import (EDIT_PARTS, LPIPS, chunks, edit_region, eval_editing, eval_reconstruction, finite_or_none,
                         load_face_params, load_faces, load_lpips, masked_mse, to_unit, with_mean_row)

TAB2_ALPHAS = (-0.5, -0.25, 0.0, 0.25, 0.5)


@torch.inference_mode()
def eval_fidelity(model: DiffAEModel, data_dir, n: int = 50, alphas: Sequence[float] = TAB2_ALPHAS,
                  topk: Optional[int] = None, levels: Optional[Sequence[int]] = None,
                  sampling: Sampling = EVALUATION, batch_size: int = 32, progress=None,
                  lpips: Optional[LPIPS] = None) -> List[dict]:
    """Tab. 2 fidelity of edits on the first ``n`` faces, per attribute of the classifier that toy faces have.

    Edit: ``alpha`` along the classifier direction (``topk`` truncation, ``levels`` restriction), x_T from DDIM
    inversion, decoded (both with ``sampling``). The mask M is the attribute's dilated part region for
    the edit's sign (alpha > 0: toward having it; alpha = 0: the face as it is). Rows ``{"attribute",
    "MSE outside", "LPIPS outside"}`` averaged over faces and alphas, then a ``"mean"`` row. ``lpips``:
    :func:`evaluation.load_lpips`'s result (loaded here when None).
    """
    classifier = model.component("classifier")
    names = [name for name in classifier.attributes if name in EDIT_PARTS]
    if not names:
        raise InputError("the model's classifier has no toy-face attribute to evaluate")
    autoencoder = model.autoencoder
    device = next(autoencoder.parameters()).device
    faces = load_faces(data_dir, n, model.image_size)
    params = load_face_params(data_dir, faces.files)
    count = len(faces.files)
    lpips_fn = (lpips or load_lpips(device))[0]
    mask, route = level_edit_route(autoencoder, levels)
    if progress is not None:
        progress.start("fidelity", count * (1 + len(names) * len(alphas)))
    z_sem, x_T = pipeline.encode_and_invert(autoencoder, faces.images, sampling, batch_size,
                                            progress.advancing() if progress is not None else None)
    clf_device = next(classifier.parameters()).device
    rows = []
    for name in names:
        index = classifier.attributes.index(name)
        mse_values, lpips_values = [], []
        for alpha in alphas:
            edited_codes = edit_z_sem(z_sem.to(clf_device), classifier, {index: alpha}, topk, mask).cpu()
            keep = torch.stack([~edit_region(params[i], name, alpha > 0 if alpha else
                                             toyfaces.attributes(params[i])[name], model.image_size)
                                for i in range(count)])  # (N, S, S): pixels that must not change
            for batch in chunks(count, batch_size):
                edited = pipeline.decode_levels(autoencoder, z_sem[batch], edited_codes[batch], route, x_T[batch],
                                                sampling).cpu()
                before, after = to_unit(faces.images[batch]), to_unit(edited)
                mse_values.append(masked_mse(before, after, keep[batch]))
                if lpips_fn is not None:
                    weight = keep[batch][:, None].float()
                    lpips_values.append(lpips_fn(before * weight, after * weight).cpu())
                if progress is not None:
                    progress.advance(batch.stop - batch.start)
        rows.append({"attribute": name,
                     "MSE outside": finite_or_none(torch.nanmean(torch.cat(mse_values)).item()),
                     "LPIPS outside": torch.cat(lpips_values).mean().item() if lpips_values else None})
    return with_mean_row(rows)


def model_label(model: DiffAEModel) -> str:
    arch = model.autoencoder.config.arch
    return f"{Path(model.model_id).name} ({ {'diffae': 'DAE', 'hdae-e': 'HDAE(E)', 'hdae-u': 'HDAE(U)'}[arch] })"


def compare_models(models: Sequence[DiffAEModel], data_dir, n: int = 50, topks: Sequence[int] = (),
                   levels: Optional[Sequence[int]] = None, fidelity_alphas: Sequence[float] = TAB2_ALPHAS,
                   edit_alphas: Sequence[float] = (0.3, 0.5), sampling: Sampling = EVALUATION,
                   random_steps: int = 20, seed: int = 0, batch_size: int = 32,
                   progress=None, lpips: Optional[LPIPS] = None) -> List[dict]:
    """One row per model and per model x top-k (the paper's DAE / HDAE(U) / HDAE(U)+top-k, and more).

    Every model needs a classifier; the first oracle found among ``models`` judges all of them (so the run
    folder of a new autoencoder need not hold its own). Columns: ``model``, ``top-k``, ``MSE out`` / ``LPIPS
    out`` (Tab. 2, :func:`eval_fidelity`), ``AD`` (mean |logit change| of the other attributes, the oracle's),
    ``flip@A`` (oracle flip rate toward the opposite attribute value at each edit alpha), ``recon MSE
    inferred`` (x_T by ``sampling.inv_steps``-step inversion, decoded with as many steps), ``recon MSE random`` (random
    x_T, ``random_steps``). Reconstruction does not depend on top-k and is repeated on the top-k rows.
    ``lpips``: :func:`evaluation.load_lpips`'s result, loaded once here when None.
    """
    oracle = next((m.extra["oracle"] for m in models if "oracle" in m.extra), None)
    if oracle is None:
        raise InputError("no model has an oracle component (train one: 'diffedit train oracle')")
    lpips = lpips or load_lpips(next(models[0].autoencoder.parameters()).device)
    rows = []
    inv_steps = sampling.inv_steps
    for model in models:
        model.extra.setdefault("oracle", oracle)
        recon = eval_reconstruction(model, data_dir, n=n, steps=[inv_steps], random_steps=random_steps,
                                    batch_size=batch_size, seed=seed, sampling=sampling, progress=progress,
                                    lpips=lpips)
        by_label = {row["x_T"]: row for row in recon["rows"]}
        recon_inferred = by_label[f"inferred T={inv_steps}"]["MSE"]
        recon_random = by_label[f"random T={random_steps}"]["MSE"]
        for topk in [None, *topks]:
            fidelity = eval_fidelity(model, data_dir, n=n, alphas=fidelity_alphas, topk=topk, levels=levels,
                                     sampling=sampling, batch_size=batch_size, progress=progress, lpips=lpips)[-1]
            editing = eval_editing(model, data_dir, n=n, alphas=edit_alphas, topk=topk, sampling=sampling,
                                   batch_size=batch_size, progress=progress, levels=levels)[-1]
            row = {"model": model_label(model), "top-k": "-" if topk is None else str(topk),
                   "MSE out": fidelity["MSE outside"], "LPIPS out": fidelity["LPIPS outside"],
                   "AD": editing["dependency"]}
            row.update({key: value for key, value in editing.items() if key.startswith("flip@")})
            row.update({"recon MSE inferred": recon_inferred, "recon MSE random": recon_random})
            rows.append(row)
    return rows


# -- training curves -------------------------------------------------------------------------------------------

def snapshot_steps(run: Path) -> Dict[int, Path]:
    """{step: snapshot component folder} of a training run (``snapshots/autoencoder_<step>/``)."""
    folder = Path(run) / SNAPSHOT_DIR
    found = {}
    if folder.is_dir():
        for sub in folder.iterdir():
            if sub.name.startswith("autoencoder_") and (sub / "config.json").is_file():
                found[int(sub.name.split("_")[1])] = sub
    return dict(sorted(found.items()))


def logged_loss(run: Path) -> Dict[int, float]:
    """{step: training loss} from ``train_log.jsonl`` (every 10th step)."""
    path = Path(run) / "train_log.jsonl"
    losses = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
                losses[int(record["step"])] = float(record["loss"])
            except (ValueError, KeyError):
                continue
    return losses


@torch.inference_mode()
def training_curve(run: Path, data_dir, n: int = 32, random_steps: int = 20, seed: int = 0,
                   batch_size: int = 32, device: str = "cpu", sampling: Sampling = EVALUATION,
                   progress=None) -> List[dict]:
    """Reconstruction vs steps: one row per EMA snapshot ``{"run", "step", "train loss", "recon MSE inferred",
    "recon MSE random"}``; ``train loss`` is the mean logged loss over the steps since the previous snapshot.

    Inferred x_T: ``sampling.inv_steps`` steps of inversion and of decoding. A run without snapshots gives only its
    loss curve (one row per 250 logged steps, recon columns None).
    """
    run = Path(run)
    snapshots = snapshot_steps(run)
    losses = logged_loss(run)
    if not snapshots and not losses:
        raise InputError(f"'{run}' has no snapshots/ and no train_log.jsonl (train with {opt('keep_every')} N)")
    inv_steps = sampling.inv_steps
    points = list(snapshots) or sorted({((s + 249) // 250) * 250 for s in losses})
    rows, previous = [], 0
    for step in points:
        window = [v for s, v in losses.items() if previous < s <= step]
        row = {"run": run.name, "step": step, "train loss": sum(window) / len(window) if window else None,
               "recon MSE inferred": None, "recon MSE random": None}
        if step in snapshots:
            ae = load_component(snapshots[step], "autoencoder", device)
            model = DiffAEModel(ModelLocation(snapshots[step], str(snapshots[step])), {}, ae)
            recon = eval_reconstruction(model, data_dir, n=n, steps=[inv_steps], random_steps=random_steps,
                                        batch_size=batch_size, seed=seed, sampling=sampling, progress=progress)
            by_label = {r["x_T"]: r for r in recon["rows"]}
            row["recon MSE inferred"] = by_label[f"inferred T={inv_steps}"]["MSE"]
            row["recon MSE random"] = by_label[f"random T={random_steps}"]["MSE"]
        rows.append(row)
        previous = step
    return rows
