"""Benchmarks on a toy-faces dataset folder: reconstruction quality and attribute-editing quality.

Both benchmarks take a loaded :class:`~diffedit_cli.io.models.DiffAEModel` and a folder written by
:func:`diffedit_cli.data.toyfaces.write_dataset` (``images/``, ``list_attr.txt``, ``params.jsonl``), use its first
``n`` faces (in ``list_attr.txt`` order) and return plain rows (dicts) that :func:`format_table` prints.

* :func:`eval_reconstruction`: the Diff-AE paper's Table 2 protocol. x_T is inferred by DDIM inversion with
  T steps and decoded with T steps ("inferred x_T"), or drawn at random; each decode is compared with its
  input by MSE, PSNR, SSIM and LPIPS (AlexNet backbone downloaded on first use; n/a offline). With an
  attribute oracle it also reports how often the oracle's reading of the decoded face agrees with the
  dataset's labels.
* :func:`eval_editing`: for each attribute known to both the model's classifier and the oracle, edit every
  face toward the opposite of what the oracle sees, and report how often the oracle then sees the target
  (flip rate), how much the oracle's other logits move (attribute dependency) and how much the image changes
  outside the pixels that the attribute may touch (from the toy faces' exact part masks).

All image metrics work on images in [0, 1] (model outputs are clamped from [-1, 1] first).
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from .. import pipeline
from ..data import toyfaces
from ..editing.attributes import edit_z_sem, level_edit_route
from ..errors import InputError, ModelError, reason
from ..io import downloads
from ..io.images import load_image
from ..io.models import DiffAEModel
from ..pipeline import sample_latents
from ..sampling import EVALUATION as EVAL_SAMPLING, OFFICIAL, Sampling

# torchvision's AlexNet_Weights.IMAGENET1K_V1, the backbone lpips uses
ALEXNET_URL = "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"

EDIT_PARTS: Dict[str, tuple] = {
    "Smiling": ("mouth",),
    "Mouth_Slightly_Open": ("mouth",),
    "Eyeglasses": ("glasses", "eyes", "brows"),
    "Wearing_Hat": ("hat", "hair"),
    "Bangs": ("hair",),
    "Blond_Hair": ("hair", "brows", "beard"),
    "Black_Hair": ("hair", "brows", "beard"),
    "No_Beard": ("beard", "mouth"),
    "Narrow_Eyes": ("eyes",),
    "Pale_Skin": ("skin", "nose", "mouth", "beard", "brows"),
    "Male": tuple(part for part in toyfaces.PARTS if part != "background"),  # global: face shape, brows, lips
}
"""Toy-face parts (:data:`toyfaces.PARTS`) whose pixels an edit of each attribute may change."""


# -- image metrics ---------------------------------------------------------------------------------------------

def mse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean squared error per image: a, b (N, C, H, W) in [0, 1] -> (N,) in [0, 1]."""
    return (a.float() - b.float()).pow(2).flatten(1).mean(1)


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """PSNR in dB per image with peak 1: a, b (N, C, H, W) in [0, 1] -> (N,); inf for identical images."""
    return 10 * torch.log10(1 / mse(a, b))


def gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Normalised 2-D Gaussian (size, size) float64."""
    offsets = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-offsets ** 2 / (2 * sigma ** 2))
    g = g / g.sum()
    return torch.outer(g, g)


def ssim(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """SSIM per image: a, b (N, C, H, W) in [0, 1] -> (N,) in [-1, 1], 1 for identical images.

    The formula of Wang et al. (2004) as in the official Diff-AE ``ssim.py``: local means, variances and
    covariance under an 11x11 Gaussian window (sigma 1.5) applied per channel with zero padding ("same" size),
    C1 = 0.01^2, C2 = 0.03^2, and the SSIM map averaged over channels and pixels.
    """
    a, b = a.double(), b.double()
    channels = a.shape[1]
    window = gaussian_window().to(a.device).expand(channels, 1, 11, 11)

    def blur(x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, window, padding=5, groups=channels)

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a ** 2
    var_b = blur(b * b) - mu_b ** 2
    cov = blur(a * b) - mu_a * mu_b
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return ssim_map.mean(dim=(1, 2, 3)).float()


def masked_mse(a: torch.Tensor, b: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
    """MSE over the selected pixels: a, b (N, C, H, W) in [0, 1], where bool (N, H, W) -> (N,); NaN if none."""
    weight = where[:, None].to(a.dtype)
    squared = (a.float() - b.float()).pow(2) * weight
    return squared.sum(dim=(1, 2, 3)) / (weight.sum(dim=(1, 2, 3)) * a.shape[1])


def lpips_alexnet_url() -> str:
    """Where LPIPS's AlexNet backbone comes from: torchvision's file, or ``$DIFFEDIT_LPIPS_ALEXNET_URL``."""
    return os.environ.get("DIFFEDIT_LPIPS_ALEXNET_URL", "").strip() or ALEXNET_URL


def lpips_alexnet_path() -> Path:
    """The backbone file in the torch hub cache (``$TORCH_HOME/hub/checkpoints``, where torchvision keeps it)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / downloads.file_name(lpips_alexnet_url())


def lpips_unavailable() -> Optional[str]:
    """One line saying why LPIPS cannot run, or None when it can (possibly after downloading AlexNet).

    Never downloads: LPIPS needs the ``lpips`` package (which ships its linear-layer weights) and the AlexNet
    backbone, either cached or downloadable (not offline).
    """
    spec = importlib.util.find_spec("lpips")
    if spec is None or spec.origin is None:
        return "the lpips package is not installed (pip install lpips)"
    linear_weights = Path(spec.origin).parent / "weights" / "v0.1" / "alex.pth"
    if not linear_weights.is_file():
        return f"lpips' linear-layer weights are missing ({linear_weights})"
    backbone = lpips_alexnet_path()
    if not backbone.is_file() and downloads.offline():
        return (f"AlexNet weights not in the torch hub cache and downloads are off (DIFFEDIT_OFFLINE / "
                f"HF_HUB_OFFLINE): put {backbone.name} from {lpips_alexnet_url()} at {backbone}")
    return None


def lpips_network(device="cpu") -> torch.nn.Module:
    """LPIPS (AlexNet, v0.1) in eval mode, its backbone loaded from the verified cached file.

    Downloads the backbone on first use (see :mod:`diffedit_cli.io.downloads`); raises :class:`ModelError` (one
    line) when LPIPS cannot be built. The backbone file is read with ``weights_only=True``.
    """
    missing = lpips_unavailable()
    if missing is not None:
        raise ModelError(missing)

    import lpips  # optional: the [metrics] extra, imported when LPIPS is asked for

    path = downloads.fetch(lpips_alexnet_url(), lpips_alexnet_path(), "LPIPS's AlexNet weights")
    state = downloads.load_state_dict(path, "AlexNet weights")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchvision's 'pretrained' deprecation notice inside lpips
        net = lpips.LPIPS(net="alex", pretrained=True, pnet_rand=True, verbose=False)
    # lpips keeps AlexNet's feature layers under their torchvision indices: net.slice{k}.{i} = features.{i}
    backbone = {name: f"features.{name.split('.', 1)[1]}" for name in net.net.state_dict()}
    missing = [key for key in backbone.values() if key not in state]
    if missing:
        raise ModelError(f"'{path}' is not torchvision's AlexNet (missing {', '.join(missing[:3])})")
    try:
        net.net.load_state_dict({name: state[key] for name, key in backbone.items()}, strict=True)
    except RuntimeError as err:
        raise ModelError(f"'{path}' does not match torchvision's AlexNet: {reason(err, 120)}") from None
    return net.to(device).eval().requires_grad_(False)


LPIPS = Tuple[Optional[Callable[[torch.Tensor, torch.Tensor], torch.Tensor]], Optional[str]]
"""What :func:`load_lpips` returns: (distance, None) or (None, one-line reason)."""


def load_lpips(device) -> LPIPS:
    """(LPIPS as a callable a, b (N, 3, H, W) in [0, 1] -> (N,), None) or (None, one-line reason).

    Builds the network (downloading AlexNet if needed) each call: load it once and pass it to the evals
    (their ``lpips`` argument) when several run in one process.
    """
    try:
        net = lpips_network(device)
    except ModelError as err:
        return None, str(err)

    def distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return net(a.to(device).float(), b.to(device).float(), normalize=True).flatten().float()
    return distance, None


def to_unit(images: torch.Tensor) -> torch.Tensor:
    """Model-range images [-1, 1] -> [0, 1] (clamped)."""
    return ((images.float() + 1) / 2).clamp(0, 1)


# -- edit regions ----------------------------------------------------------------------------------------------

def dilate(mask: torch.Tensor, pixels: int) -> torch.Tensor:
    """Binary dilation of a bool mask (H, W) by a (2 * pixels + 1)^2 square."""
    if pixels == 0:
        return mask
    return F.max_pool2d(mask[None].float(), 2 * pixels + 1, stride=1, padding=pixels)[0] > 0


def edit_region(params: toyfaces.FaceParams, attribute: str, target: bool, size: int,
                dilation: int = 2) -> torch.Tensor:
    """Pixels that editing ``attribute`` of a face toward ``target`` may change: bool (size, size).

    The union, over the face and its counterfactual ``with_attribute(params, attribute, target)`` rendered at
    ``size``, of the :data:`EDIT_PARTS` masks of every attribute the counterfactual changes (the edited one
    plus implied changes, e.g. giving a woman a beard also makes her Male), dilated by ``dilation`` pixels.
    """
    counterfactual = toyfaces.with_attribute(params, attribute, target)
    before, after = toyfaces.attributes(params), toyfaces.attributes(counterfactual)
    changed = {attribute} | {name for name in before if before[name] != after[name]}
    parts = {part for name in changed for part in EDIT_PARTS[name]}
    region = np.zeros((size, size), dtype=bool)
    for face in (params, counterfactual):
        _, masks = toyfaces.render(face, size)
        for part in parts:
            region |= masks[part]
    return dilate(torch.from_numpy(region), dilation)


# -- datasets --------------------------------------------------------------------------------------------------

@dataclass
class FaceSet:
    """The first faces of a dataset folder."""

    files: List[str]
    images: torch.Tensor  # (N, 3, S, S) float32 in [-1, 1] at the model's image size S
    attributes: List[str]  # the columns of list_attr.txt
    labels: torch.Tensor  # (N, len(attributes)) bool


def load_faces(data_dir, n: int, image_size: int) -> FaceSet:
    """The first ``n`` faces (``list_attr.txt`` order) of a dataset folder, images resized to ``image_size``."""
    data_dir = Path(data_dir)
    table = data_dir / "list_attr.txt"
    if not table.is_file():
        raise InputError(f"'{data_dir}' is not a toy-faces dataset folder: it has no list_attr.txt")
    if n < 1:
        raise InputError(f"need at least one face to evaluate, got n={n}")
    names, files, labels = toyfaces.read_attr_table(table)
    files = files[:n]
    if not files:
        raise InputError(f"{table} lists no images")
    images = torch.stack([load_image(data_dir / "images" / name, image_size) for name in files])
    return FaceSet(files, images, names, torch.from_numpy(labels[:len(files)]).bool())


def load_face_params(data_dir, files: Sequence[str]) -> List[toyfaces.FaceParams]:
    """The :class:`toyfaces.FaceParams` of ``files`` from the folder's ``params.jsonl``."""
    path = Path(data_dir) / "params.jsonl"
    if not path.is_file():
        raise InputError(f"'{data_dir}' has no params.jsonl: editing is evaluated on toy-faces datasets only")
    by_file = {}
    for line in path.read_text().splitlines():
        if line.strip():
            record = json.loads(line)
            by_file[record["file"]] = toyfaces.FaceParams(**record["params"])
    missing = [name for name in files if name not in by_file]
    if missing:
        raise InputError(f"{path} has no parameters for {len(missing)} image(s), e.g. {missing[0]}")
    return [by_file[name] for name in files]


def label_agreement(oracle, faces: FaceSet) -> Optional[Callable[[torch.Tensor, slice], torch.Tensor]]:
    """``agree(images, batch)`` -> (B, K) float, 1 where the oracle reads an attribute of ``images`` as
    ``faces.labels[batch]`` says, over the K attributes both know; None without an oracle or shared attribute."""
    shared = [name for name in oracle.attributes if name in faces.attributes] if oracle is not None else []
    if not shared:
        return None
    columns = [oracle.attributes.index(name) for name in shared]
    truth = faces.labels[:, [faces.attributes.index(name) for name in shared]]
    device = next(oracle.parameters()).device

    def agree(images: torch.Tensor, batch: slice) -> torch.Tensor:
        return (oracle.predict(images.to(device))[:, columns].cpu() == truth[batch]).float()
    return agree


def chunks(total: int, size: int) -> List[slice]:
    """Consecutive slices of at most ``size`` covering range(total)."""
    return [slice(start, min(start + size, total)) for start in range(0, total, max(1, size))]


def finite_or_none(value: float) -> Optional[float]:
    return None if math.isnan(value) else value


# -- reconstruction --------------------------------------------------------------------------------------------

@torch.inference_mode()
def eval_reconstruction(model: DiffAEModel, data_dir, n: int = 500, steps: Sequence[int] = (10, 20, 50, 100),
                        random_steps: int = 100, batch_size: int = 32, seed: int = 0, sampling: Sampling = OFFICIAL,
                        progress=None, lpips: Optional[LPIPS] = None) -> dict:
    """Reconstruction quality of the first ``n`` faces of ``data_dir`` (Diff-AE Table 2 protocol).

    For each T in ``steps``: x_T by inversion (``sampling.inv_sampler``) with T steps, decoded with T steps (``sampling``'s sampler,
    spacing and precision; its step counts are replaced by T). Then x_T drawn by
    :func:`pipeline.random_x_T` (``seed`` + face index) decoded with ``random_steps``. Each decode is compared
    with its input. With an oracle in ``model.extra["oracle"]``, "Attr acc" is the fraction of (face,
    attribute) pairs where the oracle's prediction on the decode equals the ``list_attr.txt`` label, over the
    attributes both know; an extra "input" row gives the oracle's accuracy on the inputs themselves.
    ``progress``: an optional :class:`~diffedit_cli.jobs.report.Reporter`; ``lpips``: :func:`load_lpips`'s result
    (loaded here when None).

    Returns ``{"n": faces used, "rows": [...], "notes": [one-line strings]}``; each row is ``{"x_T": "inferred
    T=10" | "random T=100" | "input", "MSE", "PSNR", "SSIM", "LPIPS", "Attr acc"}`` with means over faces
    (MSE in [0, 1], PSNR in dB, SSIM in [-1, 1], LPIPS >= 0, Attr acc in [0, 1]) and None where not computed.
    """
    autoencoder = model.autoencoder
    device = next(autoencoder.parameters()).device
    faces = load_faces(data_dir, n, model.image_size)
    count = len(faces.files)
    batches = chunks(count, batch_size)
    inverter = "DDIM" if sampling.inv_sampler == "ddim" else sampling.inv_sampler
    notes = [f"sampling: {sampling.sampler} decoding and {inverter} inversion with T steps (per row), {sampling.spacing} "
             f"spacing, {sampling.precision or 'default precision'}"]
    lpips_fn, lpips_reason = lpips or load_lpips(device)
    if lpips_fn is None:
        notes.append(f"LPIPS n/a: {lpips_reason}")

    oracle = model.extra.get("oracle")
    agree = label_agreement(oracle, faces)
    if oracle is None:
        notes.append("Attr acc n/a: the model has no oracle component")
    elif agree is None:
        notes.append("Attr acc n/a: the oracle knows none of the dataset's attributes")

    def attribute_accuracy(images: torch.Tensor, batch: slice) -> Optional[torch.Tensor]:
        """Per image, the fraction of shared attributes the oracle reads as labelled: (B,) or None."""
        return None if agree is None else agree(images, batch).mean(dim=1)

    if progress is not None:
        progress.start("reconstruction", count * (2 + 2 * len(steps)))
    z_sem = []
    for batch in batches:
        z_sem.append(pipeline.encode_semantic(autoencoder, faces.images[batch], sampling.precision).cpu())
        if progress is not None:
            progress.advance(batch.stop - batch.start)
    z_sem = torch.cat(z_sem)

    settings = [(f"inferred T={t}", t) for t in steps] + [(f"random T={random_steps}", None)]
    rows = []
    for label, inversion_steps in settings:
        scores: Dict[str, List[torch.Tensor]] = {"MSE": [], "PSNR": [], "SSIM": [], "LPIPS": [], "Attr acc": []}
        for batch in batches:
            inputs, codes = faces.images[batch], z_sem[batch]
            if inversion_steps is None:
                x_T = pipeline.random_x_T(range(batch.start, batch.stop), model.image_size, seed)
                decoded = pipeline.decode(autoencoder, codes, x_T, sampling.replace(steps=random_steps))
            else:
                at_t = sampling.replace(steps=inversion_steps, inv_steps=inversion_steps)
                x_T = pipeline.invert(autoencoder, inputs, codes, at_t)
                decoded = pipeline.decode(autoencoder, codes, x_T, at_t)
            reference, output = to_unit(inputs), to_unit(decoded.cpu())
            scores["MSE"].append(mse(reference, output))
            scores["PSNR"].append(psnr(reference, output))
            scores["SSIM"].append(ssim(reference, output))
            if lpips_fn is not None:
                scores["LPIPS"].append(lpips_fn(reference, output).cpu())
            accuracy = attribute_accuracy(decoded, batch)
            if accuracy is not None:
                scores["Attr acc"].append(accuracy)
            if progress is not None:
                progress.advance((batch.stop - batch.start) * (1 if inversion_steps is None else 2))
        rows.append({"x_T": label, **{name: torch.cat(values).mean().item() if values else None
                                      for name, values in scores.items()}})
    if agree is not None:
        accuracy = torch.cat([attribute_accuracy(faces.images[batch], batch) for batch in batches])
        rows.append({"x_T": "input", "MSE": None, "PSNR": None, "SSIM": None, "LPIPS": None,
                     "Attr acc": accuracy.mean().item()})
    return {"n": count, "rows": rows, "notes": notes}


# -- editing ---------------------------------------------------------------------------------------------------

def with_mean_row(rows: List[dict]) -> List[dict]:
    """``rows`` (one per attribute) plus a row ``"attribute": "mean"`` averaging each other column over the rows
    where it is not None (None where it is None everywhere)."""
    mean_row = {"attribute": "mean"}
    for column in rows[0]:
        if column != "attribute":
            values = [row[column] for row in rows if row[column] is not None]
            mean_row[column] = sum(values) / len(values) if values else None
    return rows + [mean_row]


def edits_toward_targets(z_sem: torch.Tensor, classifier, names: Sequence[str], targets: torch.Tensor,
                         alphas: Sequence[float], topk, mask) -> torch.Tensor:
    """Every face's z_sem (N, D) moved by each alpha toward its target value of each attribute (``targets``
    (N, A) bool: True moves along +direction): (A * len(alphas) * N, D) on the CPU, ordered (attribute, alpha, face)."""
    classifier_device = next(classifier.parameters()).device
    codes = z_sem.to(classifier_device)
    out = []
    for name, toward_true in zip(names, targets.T):
        index = classifier.attributes.index(name)
        for alpha in alphas:
            up = edit_z_sem(codes, classifier, {index: alpha}, topk, mask)
            down = edit_z_sem(codes, classifier, {index: -alpha}, topk, mask)
            out.append(torch.where(toward_true[:, None].to(classifier_device), up, down).cpu())
    return torch.cat(out)


@torch.inference_mode()
def eval_editing(model: DiffAEModel, data_dir, n: int = 100, alphas: Sequence[float] = (0.3, 0.5),
                 topk: Optional[int] = None, sampling: Sampling = EVAL_SAMPLING, batch_size: int = 32,
                 progress=None, levels: Optional[Sequence[int]] = None) -> List[dict]:
    """Editing quality on the first ``n`` faces of a toy-faces folder, per attribute.

    ``levels`` (0-based resolution levels, HDAE): restrict the edits to those levels
    (:func:`diffedit_cli.editing.attributes.level_edit_route`).

    Attributes: those of the model's classifier that the oracle (``model.extra["oracle"]``) also knows and
    that toy faces have. For every face and attribute the target is the opposite of the oracle's prediction on
    the input; z_sem is moved toward it by ``alpha`` for each of ``alphas`` (``topk``: HDAE truncation), with
    x_T from one DDIM inversion per face and decoding, both with ``sampling``. Per attribute:

    * ``flip@ALPHA``: fraction of faces where the oracle predicts the target after the edit, in [0, 1];
    * ``dependency``: mean |logit change| (input vs edit) of the oracle's other attributes, >= 0, averaged
      over faces and alphas;
    * ``MSE outside``: MSE (pixels in [0, 1]) between input and edit over the pixels outside
      :func:`edit_region` (the attribute's parts in the face and its counterfactual, rendered at the model's
      image size, i.e. the dataset's size for a matching dataset, dilated by 2 px), averaged over faces and
      alphas. Male changes the whole face, so its region is every non-background part.

    Returns one row per attribute, ``{"attribute", "flip@0.3", "flip@0.5", "dependency", "MSE outside"}``
    (floats; None where undefined), then a row ``"attribute": "mean"`` averaging them.
    ``progress``: an optional :class:`~diffedit_cli.jobs.report.Reporter`.
    """
    classifier = model.component("classifier")
    oracle = model.component("oracle")
    names = [name for name in classifier.attributes if name in oracle.attributes and name in EDIT_PARTS]
    if not names:
        raise InputError("the model's classifier and the oracle share no toy-face attribute to evaluate")
    autoencoder = model.autoencoder
    faces = load_faces(data_dir, n, model.image_size)
    face_params = load_face_params(data_dir, faces.files)
    count, n_attrs, n_alphas = len(faces.files), len(names), len(alphas)
    target_columns = torch.tensor([oracle.attributes.index(name) for name in names])

    if progress is not None:
        progress.start("editing", count + count * n_attrs * n_alphas)
    z_sem, x_T = pipeline.encode_and_invert(autoencoder, faces.images, sampling, batch_size,
                                            progress.advancing() if progress is not None else None)
    oracle_device = next(oracle.parameters()).device
    input_logits = torch.cat([oracle(faces.images[batch].to(oracle_device)).float().cpu()
                              for batch in chunks(count, batch_size)])
    targets = input_logits[:, target_columns] <= 0  # (N, A): the opposite of what the oracle sees

    regions = torch.stack([torch.stack([edit_region(face_params[i], name, bool(targets[i, j]), model.image_size)
                                        for j, name in enumerate(names)]) for i in range(count)])  # (N, A, S, S)

    # edit jobs ordered (attribute, alpha, face): job = (j * n_alphas + k) * count + i
    mask, route = level_edit_route(autoencoder, levels)
    edited_codes = edits_toward_targets(z_sem, classifier, names, targets, alphas, topk, mask)
    face_of_job = torch.arange(count).repeat(n_attrs * n_alphas)
    attr_of_job = torch.arange(n_attrs).repeat_interleave(n_alphas * count)

    flipped, dependency, outside_mse = [], [], []
    for batch in chunks(len(edited_codes), batch_size):
        face, attr = face_of_job[batch], attr_of_job[batch]
        edited = pipeline.decode_levels(autoencoder, z_sem[face], edited_codes[batch], route, x_T[face], sampling)
        logits = oracle(edited).float().cpu()
        target_column = target_columns[attr]
        rows_index = torch.arange(len(face))
        flipped.append(((logits[rows_index, target_column] > 0) == targets[face, attr]).float())
        others = torch.ones_like(logits, dtype=torch.bool)
        others[rows_index, target_column] = False
        change = (logits - input_logits[face]).abs()
        dependency.append((change * others).sum(dim=1) / others.sum(dim=1))
        outside_mse.append(masked_mse(to_unit(faces.images[face]), to_unit(edited.cpu()), ~regions[face, attr]))
        if progress is not None:
            progress.advance(len(face))

    def per_attribute(values: List[torch.Tensor]) -> torch.Tensor:
        return torch.cat(values).reshape(n_attrs, n_alphas, count)

    flipped, dependency, outside_mse = per_attribute(flipped), per_attribute(dependency), per_attribute(outside_mse)
    rows = []
    for j, name in enumerate(names):
        row = {"attribute": name}
        for k, alpha in enumerate(alphas):
            row[f"flip@{alpha:g}"] = flipped[j, k].mean().item()
        row["dependency"] = finite_or_none(dependency[j].mean().item())
        row["MSE outside"] = finite_or_none(torch.nanmean(outside_mse[j]).item())
        rows.append(row)
    return with_mean_row(rows)


# -- tables ----------------------------------------------------------------------------------------------------

def format_cell(value) -> str:
    """None -> ``n/a``; floats with 4 decimals (scientific below 1e-3); anything else as str."""
    if value is None:
        return "n/a"
    if isinstance(value, float):
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return f"{value:.4f}" if value == 0 or abs(value) >= 1e-3 else f"{value:.2e}"
    return str(value)


def format_table(rows: Sequence[dict], notes: Sequence[str] = ()) -> str:
    """Fixed-width text table of ``rows`` (columns: the keys in first-seen order), then one line per note.

    The first column is left-aligned, the others right-aligned; missing values print as ``n/a``.
    """
    columns: List[str] = []
    for row in rows:
        columns.extend(key for key in row if key not in columns)
    cells = [[format_cell(row.get(column)) for column in columns] for row in rows]
    widths = [max([len(column)] + [len(line[c]) for line in cells]) for c, column in enumerate(columns)]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.ljust(w) if c == 0 else v.rjust(w) for c, (v, w) in enumerate(zip(values, widths)))

    lines = [line(columns), "  ".join("-" * w for w in widths)] + [line(values) for values in cells]
    return "\n".join([text.rstrip() for text in lines] + list(notes))


# -- sampling ----------------------------------------------------------------------------------------------------

@torch.inference_mode()
def eval_sampling(model: DiffAEModel, data_dir, n: int = 500, sampling: Sampling = EVAL_SAMPLING,
                  latent_steps: int = 100, seed: int = 0, batch_size: int = 32, progress=None) -> List[dict]:
    """Attribute frequencies of ``n`` unconditional samples (latent DDIM -> decoder), judged by the oracle.

    Rows: ``{"attribute", "data": label frequency in data_dir's list_attr.txt, "samples": oracle frequency on
    the decoded samples, "abs diff"}`` plus a final row with the largest difference.
    """
    oracle = model.extra.get("oracle")
    if oracle is None:
        raise InputError("sampling evaluation needs an oracle component in the model")
    latent = model.component("latent")
    table = Path(data_dir) / "list_attr.txt"
    if not table.is_file():
        raise InputError(f"'{data_dir}' is not a toy-faces dataset folder: it has no list_attr.txt")
    names, _, labels = toyfaces.read_attr_table(table)
    shared = [a for a in oracle.attributes if a in names]
    data_freq = {a: float(labels[:, names.index(a)].mean()) for a in shared}
    device = next(model.autoencoder.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    z_T = torch.randn(n, latent.config.num_channels, generator=gen)
    z_sem = sample_latents(latent, z_T.to(latent.conds_mean.device), latent_steps).cpu()
    x_T = pipeline.random_x_T(range(n), model.image_size, seed)
    if progress is not None:
        progress.start("sampling", n)
    predicted = []
    for batch in chunks(n, batch_size):
        images = pipeline.decode(model.autoencoder, z_sem[batch], x_T[batch], sampling)
        predicted.append(oracle.predict(images.to(device)).cpu())
        if progress is not None:
            progress.advance(batch.stop - batch.start)
    predicted = torch.cat(predicted).float()
    rows = []
    for a in shared:
        freq = predicted[:, oracle.attributes.index(a)].mean().item()
        rows.append({"attribute": a, "data": data_freq[a], "samples": freq, "abs diff": abs(freq - data_freq[a])})
    rows.append({"attribute": "max", "data": None, "samples": None, "abs diff": max(r["abs diff"] for r in rows)})
    return rows
