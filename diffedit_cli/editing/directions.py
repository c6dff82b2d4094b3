"""Edit directions beyond the attribute classifier, and the files that hold them.

Every direction is a unit vector (D,) in *normalised* z_sem space, z_n = (z_sem - mean) / std, the space in which
the official editing formula moves codes (see :mod:`diffedit_cli.editing.attributes`): an edit of strength alpha adds
``alpha * sqrt(D) * direction * std`` to z_sem. Directions come from

* :func:`pca_directions`: the principal components of many normalised codes (GANSpace, Härkönen et al. 2020;
  in a diffusion model's semantic space: faces-thesis Paper V, Sec. 4.1), sorted by explained variance;
* :func:`example_direction`: a few labelled examples per side: the difference of the class means, or an
  L2-regularised logistic regression's normal when there are enough examples (:data:`LOGISTIC_MIN_PER_SIDE`);
* :func:`orthogonal_to`: a direction minus its components along others (orthonormalised first): conditional
  manipulation after Shen et al. (faces-thesis Paper V, "Disentanglement of semantic directions").

A direction file (``.safetensors``) holds ``directions`` (K, D) float32, ``mean`` and ``std`` (D,) (the
normalisation its directions live in), optional ``explained`` (K,) (PCA variance ratios), and metadata:
``diffedit_directions`` (format), ``names`` (JSON list), ``model_id``, ``model_fingerprint`` (of the autoencoder
weights: a file made for another model is refused) and ``provenance`` (JSON: method, inputs, counts).
"""

from __future__ import annotations

import difflib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save

from ..errors import InputError, reason
from ..io.files import write_bytes

DIRECTIONS_FORMAT = "1"
LOGISTIC_MIN_PER_SIDE = 20  # below this many examples per side, the class-mean difference is used
FEW_EXAMPLES = 5  # fewer examples per side than this earn a warning


@dataclass
class DirectionSet:
    """K named unit directions (K, D) in the normalised space (z_sem - mean) / std of one model."""

    names: List[str]
    vectors: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor
    model_id: str = ""
    fingerprint: str = ""
    provenance: Dict = field(default_factory=dict)
    explained: Optional[torch.Tensor] = None

    def __post_init__(self):
        if self.vectors.ndim != 2 or self.vectors.shape[0] != len(self.names):
            raise ValueError(f"{len(self.names)} names for directions of shape {tuple(self.vectors.shape)}")
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"direction names must be unique, got {self.names}")

    def index(self, name: str, source: str = "direction file") -> int:
        """Case-insensitive lookup; an unknown name suggests close ones."""
        lower = {n.lower(): i for i, n in enumerate(self.names)}
        if name.lower() in lower:
            return lower[name.lower()]
        close = difflib.get_close_matches(name.lower(), list(lower), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(self.names[lower[c]] for c in close)}?" if close else \
            f" (it has: {', '.join(self.names[:12])}{', ...' if len(self.names) > 12 else ''})"
        raise InputError(f"{source} has no direction '{name}'{hint}")

    def raw(self, index: int) -> torch.Tensor:
        """Direction ``index`` as a change of z_sem per unit of normalised code: (D,) = direction * std."""
        return self.vectors[index] * self.std


# -- finding directions ------------------------------------------------------------------------------------------

def normalise(z_sem: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    return (z_sem.float() - mean) / std


def _signed(vectors: torch.Tensor) -> torch.Tensor:
    """Fix each row's sign so that its largest-magnitude coordinate is positive (PCA signs are arbitrary)."""
    pick = vectors.abs().argmax(dim=1)
    signs = torch.sign(vectors[torch.arange(len(vectors)), pick])
    return vectors * signs[:, None]


def pca_directions(z_n: torch.Tensor, components: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Principal directions of normalised codes z_n (N, D): ((K, D) unit rows, (K,) explained variance ratios)."""
    n, d = z_n.shape
    if n < 2:
        raise InputError(f"PCA needs at least 2 codes, got {n}")
    k = min(components, n - 1, d)
    centred = z_n.double() - z_n.double().mean(dim=0)
    _, s, vh = torch.linalg.svd(centred, full_matrices=False)
    variance = s.pow(2)
    return _signed(vh[:k].float()), (variance[:k] / variance.sum()).float()


def example_direction(positive: torch.Tensor, negative: torch.Tensor, method: str = "auto",
                      l2: float = 1e-2, iterations: int = 200) -> Tuple[torch.Tensor, str]:
    """A unit direction (D,) from normalised codes of examples with (P, D) and without (Q, D) the attribute.

    ``method``: ``mean-difference`` (mean(positive) - mean(negative)), ``logistic`` (the normal of an
    L2-regularised logistic regression, fitted with L-BFGS), or ``auto``: logistic from
    :data:`LOGISTIC_MIN_PER_SIDE` examples per side, else the mean difference. Returns (direction, method used).
    """
    if len(positive) < 1 or len(negative) < 1:
        raise InputError("a direction from examples needs at least one example on each side")
    if method == "auto":
        method = "logistic" if min(len(positive), len(negative)) >= LOGISTIC_MIN_PER_SIDE else "mean-difference"
    if method == "mean-difference":
        direction = positive.double().mean(dim=0) - negative.double().mean(dim=0)
    elif method == "logistic":
        x = torch.cat([positive, negative]).double()
        y = torch.cat([torch.ones(len(positive)), torch.zeros(len(negative))]).double()
        weight = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
        bias = torch.zeros((), dtype=torch.float64, requires_grad=True)
        opt = torch.optim.LBFGS([weight, bias], max_iter=iterations, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            loss = F.binary_cross_entropy_with_logits(x @ weight + bias, y) + l2 * weight.pow(2).sum()
            loss.backward()
            return loss
        opt.step(closure)
        direction = weight.detach()
    else:
        raise InputError(f"unknown method '{method}' (auto, mean-difference or logistic)")
    norm = direction.norm()
    if not torch.isfinite(norm) or norm == 0:
        raise InputError("the two example sets have the same mean code: no direction separates them")
    return (direction / norm).float(), method


def orthogonal_to(direction: torch.Tensor, others: torch.Tensor) -> torch.Tensor:
    """``direction`` (D,) minus its projection on the span of ``others`` (M, D), renormalised to unit length.

    The others are orthonormalised first (QR), so correlated ``others`` are handled exactly; the result has a
    zero dot product with every one of them (up to rounding).
    """
    if others.numel() == 0:
        return direction
    q, r = torch.linalg.qr(others.double().T)  # (D, M): columns span the others
    keep = r.diagonal().abs() > 1e-9 * max(1.0, float(r.diagonal().abs().max()))
    q = q[:, keep]
    residual = direction.double() - q @ (q.T @ direction.double())
    norm = residual.norm()
    if norm < 1e-6:
        raise InputError("the direction lies in the span of the directions it should be orthogonal to")
    return (residual / norm).float()


def in_space(raw: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """A z_sem change per unit (D,) expressed as a unit direction in the space normalised by ``std``."""
    return F.normalize((raw / std)[None].double(), dim=1)[0].float()


# -- files ------------------------------------------------------------------------------------------------------

def save_directions(path: Path, directions: DirectionSet, exclusive: bool = False) -> None:
    """Write a direction file atomically (``exclusive``: refuse an existing ``path``)."""
    check_direction_names(list(directions.names), directions.vectors, path, nonzero=False)  # names load can read
    tensors = {"directions": directions.vectors.float().contiguous(), "mean": directions.mean.float().contiguous(),
               "std": directions.std.float().contiguous()}
    if directions.explained is not None:
        tensors["explained"] = directions.explained.float().contiguous()
    meta = {"diffedit_directions": DIRECTIONS_FORMAT, "names": json.dumps(directions.names),
            "model_id": directions.model_id, "model_fingerprint": directions.fingerprint,
            "provenance": json.dumps(directions.provenance, sort_keys=True)}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_bytes(path, save(tensors, metadata=meta), exclusive)


def load_directions(path: Path) -> DirectionSet:
    """Read a direction file; a missing, corrupt or foreign file is a one-line InputError."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"direction file '{path}' not found")
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = dict(fh.metadata() or {})
            if "diffedit_directions" not in meta or "directions" not in set(fh.keys()):
                raise InputError(f"'{path}' is a safetensors file but not a diffedit direction file")
            tensors = {k: fh.get_tensor(k).float() for k in fh.keys()}
        names = json.loads(meta["names"])
        result = DirectionSet(names, tensors["directions"], tensors["mean"], tensors["std"], meta.get("model_id", ""),
                              meta.get("model_fingerprint", ""), json.loads(meta.get("provenance", "{}")),
                              tensors.get("explained"))
    except InputError:
        raise
    except Exception as err:
        raise InputError(f"cannot read direction file '{path}': corrupt or not safetensors "
                         f"({reason(err, 120)})") from None
    width = result.vectors.shape[1]
    if result.mean.shape != (width,) or result.std.shape != (width,):
        raise InputError(f"'{path}': mean / std do not match its {width}-value directions")
    for name, tensor in (("directions", result.vectors), ("mean", result.mean), ("std", result.std)):
        if not torch.isfinite(tensor).all():
            raise InputError(f"'{path}': {name} holds NaN or inf values")
    if (result.std <= 0).any():
        raise InputError(f"'{path}': std must be positive")
    if (result.std > 1e6).any() or (result.mean.abs() > 1e6).any():
        raise InputError(f"'{path}': mean / std hold absurd values (beyond 1e6): not a normalisation of z_sem")
    check_direction_names(result.names, result.vectors, path)
    return result


NAME_FORBIDDEN = ":=,"  # they separate FILE:NAME=ALPHA and comma lists on the command line


def check_direction_names(names, vectors: torch.Tensor, path, nonzero: bool = True) -> None:
    """Names are distinct strings (case-insensitively: the command line resolves them so) without ``: = ,``;
    one per direction; with ``nonzero``, no direction is zero."""
    if not isinstance(names, list) or len(names) != len(vectors):
        raise InputError(f"'{path}': expected {len(vectors)} direction names, found {names!r:.80}")
    seen = {}
    for k, name in enumerate(names):
        if not isinstance(name, str) or not name.strip() or any(c in name for c in NAME_FORBIDDEN):
            raise InputError(f"'{path}': direction name {name!r:.40} must be non-empty text without "
                             f"{' '.join(NAME_FORBIDDEN)}")
        if name.lower() in seen:
            raise InputError(f"'{path}': directions '{seen[name.lower()]}' and '{name}' differ only in case")
        seen[name.lower()] = name
        if nonzero and not vectors[k].abs().sum() > 0:
            raise InputError(f"'{path}': direction '{name}' is zero (it would edit nothing)")


def check_directions_model(directions: DirectionSet, model, path) -> None:
    """Refuse directions made for another model (autoencoder fingerprint) or of the wrong width."""
    if directions.fingerprint != model.fingerprint:
        raise InputError(f"'{path}' holds directions for model '{directions.model_id or '?'}' (weights "
                         f"{directions.fingerprint or '?'}), not for '{model.model_id}' (weights {model.fingerprint})")
    width = model.autoencoder.config.style_channels
    if directions.vectors.shape[1] != width:
        raise InputError(f"'{path}': directions have {directions.vectors.shape[1]} values, the model's z_sem {width}")


def model_normalisation(model, z_n_source: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor, str]:
    """The z normalisation new directions use: the classifier's (so they mix with its directions), else the
    latent DDIM's, else mean / std of ``z_n_source`` (raw codes). Returns (mean (D,), std (D,), which)."""
    for name in ("classifier", "latent"):
        module = getattr(model, name, None)
        if module is not None and hasattr(module, "conds_mean"):
            return module.conds_mean.reshape(-1).float().cpu(), module.conds_std.reshape(-1).float().cpu(), name
    if z_n_source is None or len(z_n_source) < 2:
        raise InputError("the model has no classifier or latent DDIM to normalise codes with; give more inputs")
    return z_n_source.float().mean(0), z_n_source.float().std(0).clamp_min(1e-6), "inputs"


# -- edits ---------------------------------------------------------------------------------------------------------

@dataclass
class Edit:
    """One edit: a z_sem change per unit of strength ``raw`` (D,), its normalisation ``std`` and strength."""

    label: str
    raw: torch.Tensor
    std: torch.Tensor
    alpha: float

    def direction(self) -> torch.Tensor:
        return in_space(self.raw, self.std)


def shape_direction(direction: torch.Tensor, topk: Optional[int] = None,
                    mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``mask`` (bool (D,)) keeps only those coordinates (renormalised); ``topk`` then keeps the K largest."""
    available = direction.numel()
    if mask is not None:
        mask = mask.to(direction.device)
        available = int(mask.sum())
        if not (direction * mask).abs().sum() > 0:
            raise InputError("the direction is zero on the chosen levels: the edit would change nothing there "
                             "(choose other levels)", param="levels")
        direction = F.normalize((direction * mask)[None], dim=1)[0]
    if topk is not None:
        if not 1 <= topk <= available:
            raise InputError(f"topk must be in 1..{available}" + (" (the chosen levels' coordinates)" if mask is not None else "")
                             + f", got {topk}", param="topk")
        keep = direction.abs().topk(topk).indices
        truncated = torch.zeros_like(direction)
        truncated[keep] = direction[keep]
        direction = F.normalize(truncated[None], dim=1)[0]
    return direction


def apply_edits(z_sem: torch.Tensor, edits: Sequence[Edit], orthogonal: Sequence[torch.Tensor] = (),
                topk: Optional[int] = None, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """z_sem (N, D) moved by alpha * sqrt(D) * std * d for each edit, d its unit direction in its own
    normalised space, first made orthogonal to ``orthogonal`` (raw (D,) changes, expressed in the same space),
    then restricted by ``mask`` and truncated to ``topk``. Returns (N, D)."""
    z = z_sem.float().clone()
    scale = math.sqrt(z.shape[-1])
    for edit in edits:
        d = edit.direction()
        if orthogonal:
            d = orthogonal_to(d, torch.stack([in_space(o, edit.std) for o in orthogonal]))
        d = shape_direction(d, topk, mask)
        z = z + edit.alpha * scale * (d * edit.std).to(z.device)
    return z
