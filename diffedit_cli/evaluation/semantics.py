"""How much a model's semantic code z_sem carries: the quick health check of any autoencoder.

:func:`eval_semantics` reports, on labelled toy-faces folders (``diffedit data toyfaces``):

* per attribute, the held-out accuracy of a linear probe (logistic regression) on z_sem, next to the
  same probe on a randomly initialised encoder of the same architecture: the floor a trained code must beat
  (a random conv encoder already separates attributes that change many pixels);
* the fraction of the oracle's attribute labels that survive decoding z_sem with a random x_T;
* the share of the decoded images' mean colour that comes from x_T: every face is decoded from two random
  x_T; the within-face variance of the decodes' channel means over their total variance (0: the colour
  comes from z_sem alone, 1: from x_T alone), and the MSE of the decodes' channel means against the inputs';
* reconstruction MSE with x_T inferred by DDIM inversion.

Images are (N, 3, S, S) in [-1, 1]; image metrics in [0, 1] units.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Tuple

import torch

from .. import pipeline
from .comparison import snapshot_steps
from ..errors import ModelError, InputError, opt
from .benchmarks import chunks, label_agreement, load_faces, to_unit
from ..io.models import DiffAEModel, ModelLocation, load_component, load_model
from ..sampling import EVALUATION
from ..networks.hdae import build_autoencoder


def fit_linear_probe(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor,
                     weight_decay: float = 1e-3, iterations: int = 200) -> torch.Tensor:
    """Logistic regression per column on standardised features; held-out accuracy per column (K,).

    train_x (N, D), train_y (N, K) in {0, 1}; full-batch L-BFGS with an L2 penalty.
    """
    with torch.inference_mode(False), torch.enable_grad():
        train_x, train_y, test_x, test_y = (t.clone().double() for t in (train_x, train_y, test_x, test_y))
        mean, std = train_x.mean(0, keepdim=True), train_x.std(0, keepdim=True).clamp_min(1e-6)
        xs, xt = (train_x - mean) / std, (test_x - mean) / std
        weight = torch.zeros(xs.shape[1], train_y.shape[1], dtype=torch.float64, requires_grad=True)
        bias = torch.zeros(train_y.shape[1], dtype=torch.float64, requires_grad=True)
        opt = torch.optim.LBFGS([weight, bias], max_iter=iterations, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            logits = xs @ weight + bias
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, train_y) + weight_decay * weight.pow(2).sum()
            loss.backward()
            return loss

        opt.step(closure)
        with torch.no_grad():
            return ((xt @ weight + bias > 0) == test_y.bool()).double().mean(0).float()


@torch.inference_mode()
def _codes(encoder_model, images: torch.Tensor, batch_size: int) -> torch.Tensor:
    return torch.cat([pipeline.encode_semantic(encoder_model, images[b], EVALUATION.precision).cpu()
                      for b in chunks(len(images), batch_size)])


def probe_table(autoencoder, probe_data, n: int, batch_size: int = 64, seed: int = 0,
                floor: Optional[List[float]] = None) -> Tuple[List[dict], int]:
    """(rows {"attribute", "probe", "random encoder"}, faces used): held-out probe accuracy on the last quarter
    of the first ``n`` faces, the probe fitted on the rest; the random encoder is drawn from ``seed``.

    ``floor``: the "random encoder" column of an earlier call with the same architecture, data, ``n`` and
    ``seed`` (it depends on nothing else), so that it is not computed again.
    """
    faces = load_faces(probe_data, n, autoencoder.config.image_size)
    if len(faces.files) < 8:
        raise ValueError(f"the probe needs at least 8 labelled faces, '{probe_data}' has {len(faces.files)}")
    split = len(faces.files) * 3 // 4
    labels = faces.labels.float()

    def accuracy(net) -> List[float]:
        z = _codes(net, faces.images, batch_size)
        return fit_linear_probe(z[:split], labels[:split], z[split:], labels[split:]).tolist()

    if floor is None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            random_model = pipeline.prepare(build_autoencoder(autoencoder.config), next(autoencoder.parameters()).device)
        floor = accuracy(random_model)
    trained = accuracy(autoencoder)
    rows = [{"attribute": attr, "probe": trained[k], "random encoder": floor[k]} for k, attr in enumerate(faces.attributes)]
    return rows, len(faces.files)


def channel_means(images: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, C)."""
    return images.mean(dim=(2, 3))


def eval_semantics(model: DiffAEModel, data_dir, n: int = 100, probe_data=None, probe_n: int = 2000,
                   steps: int = 20, batch_size: int = 32, seed: int = 0, oracle=None, progress=None,
                   floor: Optional[List[float]] = None) -> dict:
    """The semantic health of ``model`` on the first ``n`` faces of ``data_dir`` (probe: ``probe_data``, default the same).

    ``oracle``: the attribute oracle judging random-x_T decodes (default: the model's own, else none and
    the label row is None). ``steps``: DDIM steps of every decode and inversion. Returns
    ``{"n", "probe_n", "steps", "probe": [rows], "summary": {...}, "notes": [...]}``; summary keys:
    ``probe mean``, ``random encoder mean``, ``random x_T labels kept``, ``x_T colour share``,
    ``mean colour MSE``, ``recon MSE inferred``. ``floor``: see :func:`probe_table`.
    """
    autoencoder = model.autoencoder
    protocol = EVALUATION.replace(steps=steps, inv_steps=steps)
    notes = [f"sampling: {protocol.describe()}"]
    oracle = oracle if oracle is not None else model.extra.get("oracle")
    probe, probe_count = probe_table(autoencoder, probe_data or data_dir, probe_n, seed=seed, floor=floor)
    faces = load_faces(data_dir, n, model.image_size)
    count = len(faces.files)
    batches = chunks(count, batch_size)
    agree = label_agreement(oracle, faces)
    if agree is None:
        notes.append("random x_T labels kept n/a: no oracle that knows the dataset's attributes")
    if progress is not None:
        progress.start("semantics", count * 4)
    kept, means_a, means_b, recon = [], [], [], []
    for batch in batches:
        inputs = faces.images[batch]
        z = pipeline.encode_semantic(autoencoder, inputs, protocol.precision)
        decoded = []
        for offset in (0, count):
            x_T = pipeline.random_x_T(range(batch.start + offset, batch.stop + offset), model.image_size, seed)
            decoded.append(pipeline.decode(autoencoder, z, x_T, protocol).cpu())
            if progress is not None:
                progress.advance(batch.stop - batch.start)
        if agree is not None:
            kept.append(agree(decoded[0], batch))
        means_a.append(channel_means(to_unit(decoded[0])))
        means_b.append(channel_means(to_unit(decoded[1])))
        x_T = pipeline.invert(autoencoder, inputs, z, protocol)
        rec = pipeline.decode(autoencoder, z, x_T, protocol).cpu()
        recon.append((to_unit(rec) - to_unit(inputs)).pow(2).mean(dim=(1, 2, 3)))
        if progress is not None:
            progress.advance(2 * (batch.stop - batch.start))
    a, b = torch.cat(means_a), torch.cat(means_b)
    within = ((a - b) ** 2 / 4).mean()  # biased, like total: within + between = total exactly
    total = torch.cat([a, b]).var(dim=0, unbiased=False).mean()
    target = channel_means(to_unit(faces.images))
    summary: Dict[str, Optional[float]] = {
        "probe mean": sum(r["probe"] for r in probe) / len(probe),
        "random encoder mean": sum(r["random encoder"] for r in probe) / len(probe),
        "random x_T labels kept": torch.cat(kept).mean().item() if kept else None,
        "x_T colour share": (within / total).item() if total > 0 else None,
        "mean colour MSE": (a - target).pow(2).mean().item(),
        "recon MSE inferred": torch.cat(recon).mean().item(),
    }
    return {"n": count, "probe_n": probe_count, "steps": steps, "probe": probe,
            "summary": summary, "notes": notes}


def semantics_curve(run, data_dir, oracle=None, device: str = "cpu", **options) -> List[dict]:
    """:func:`eval_semantics` of every EMA snapshot of a run (``train autoencoder keep_every N``), by step.

    Rows ``{"run", "step", <summary keys>}``; ``options`` go to :func:`eval_semantics`. The snapshots share one
    architecture, so the random-encoder floor is computed once.
    """
    run = Path(run)
    snapshots = snapshot_steps(run)
    if not snapshots:
        raise InputError(f"'{run}' has no EMA snapshots (train with {opt('keep_every')} N)")
    rows, floor = [], None
    for step, folder in snapshots.items():
        ae = load_component(folder, "autoencoder", device)
        model = DiffAEModel(ModelLocation(folder, str(folder)), {}, ae)
        result = eval_semantics(model, data_dir, oracle=oracle, floor=floor, **options)
        floor = [row["random encoder"] for row in result["probe"]]
        rows.append({"run": run.name, "step": step, **result["summary"]})
    return rows


def load_oracle(spec: Optional[str], model: DiffAEModel):
    """The oracle of the model ``spec`` when given, else ``model``'s, else the shipped default model's."""
    if spec is None and "oracle" in model.extra:
        return model.extra["oracle"]
    source = load_model(spec, device=str(next(model.autoencoder.parameters()).device), components=("oracle",))
    if "oracle" not in source.extra:
        raise ModelError(f"model '{spec}' has no oracle component (train one: 'diffedit train oracle')")
    return source.extra["oracle"]
