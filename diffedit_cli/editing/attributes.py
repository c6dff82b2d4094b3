"""Attribute editing of semantic codes with linear-classifier directions.

Official formula (Diff-AE ``manipulate.ipynb`` / ``predict.py``)::

    z_n  = (z_sem - conds_mean) / conds_std
    z_n' = z_n + alpha * sqrt(D) * normalize(classifier.weight[k])
    z'   = z_n' * conds_std + conds_mean

with D the width of z_sem (the official code writes sqrt(512)). HDAE truncated
editing keeps only the ``topk`` largest-magnitude coordinates of the
normalised direction and renormalises it before applying.

Hierarchical (HDAE) codes: the classifier and its direction span all levels
(L*D values) and ``topk`` ranks coordinates over the whole code. A ``mask``
(bool (L*D,), from :func:`diffedit_cli.hierarchy.level_mask`) restricts the
direction to some levels: it is zeroed elsewhere and renormalised (before
``topk``), so a step of ``alpha`` has the same length whatever the levels.
"""

from __future__ import annotations

import difflib
import math
from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from ..errors import InputError, opt
from ..networks.classifier import AttributeClassifier
from ..networks.hierarchy import is_hierarchical, level_mask
from .directions import Edit, shape_direction

# Largest edit strength accepted: alpha is in units of sqrt(D) normalised-code standard deviations, so at 10
# the code is already far outside anything the model was trained on (the official demo uses 0.3).
MAX_ALPHA = 10.0


def check_alpha(value: float, what: str, param: Optional[str] = None) -> float:
    """``value`` if it is a finite edit strength with |alpha| <= MAX_ALPHA, else an InputError naming ``what``
    (``param``: the parameter ``what`` starts with, see :class:`~diffedit_cli.errors.DiffeditError`)."""
    if not math.isfinite(value):
        raise InputError(f"{what}: the edit strength must be a finite number (got {value})", param=param)
    if abs(value) > MAX_ALPHA:
        raise InputError(f"{what}: edit strength {value:g} is outside [-{MAX_ALPHA:g}, {MAX_ALPHA:g}] "
                         "(0.3 is the official demo; beyond a few units the code leaves the data)", param=param)
    return value


def resolve_attribute(name: str, attributes: Sequence[str]) -> Tuple[int, float]:
    """Attribute name -> (index, sign). Case-insensitive; ``No_X`` negates ``X`` when only ``X`` exists.

    Unknown names raise an InputError suggesting the closest names.
    """
    lower = {a.lower(): i for i, a in enumerate(attributes)}
    key = name.strip().lower()
    if key in lower:
        return lower[key], 1.0
    if key.startswith("no_") and key[3:] in lower:
        return lower[key[3:]], -1.0
    if "no_" + key in lower:
        return lower["no_" + key], -1.0
    close = difflib.get_close_matches(key, list(lower), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(attributes[lower[c]] for c in close)}?" if close else f" (see {opt('list_attrs')})"
    raise InputError(f"unknown attribute '{name}'{hint}")


def attribute_direction(classifier: AttributeClassifier, index: int, topk: Optional[int] = None,
                        mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Unit direction (D,) in normalised z_sem space; ``mask`` (bool (D,)) keeps only those coordinates,
    ``topk`` then keeps the K largest |coordinates| (:func:`diffedit_cli.editing.directions.shape_direction`)."""
    return shape_direction(F.normalize(classifier.linear.weight[index][None].float(), dim=1)[0], topk, mask)


def classifier_edit(classifier: AttributeClassifier, index: int, alpha: float):
    """The classifier direction of attribute ``index`` as a :class:`diffedit_cli.editing.directions.Edit`."""
    std = classifier.conds_std.reshape(-1).float()
    return Edit(classifier.attributes[index], attribute_direction(classifier, index) * std, std, alpha)


def edit_z_sem(z_sem: torch.Tensor, classifier: AttributeClassifier, edits: Dict[int, float],
               topk: Optional[int] = None, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Move z_sem (N, D) by ``alpha * sqrt(D) * direction`` per {attribute index: alpha}; returns (N, D).

    ``mask``: restrict the directions to some coordinates (HDAE levels), see :func:`attribute_direction`.
    """
    z = classifier.normalize(z_sem.float())
    scale = z.shape[-1] ** 0.5
    for index, alpha in edits.items():
        z = z + alpha * scale * attribute_direction(classifier, index, topk, mask).to(z.device)
    return classifier.denormalize(z)


def parse_edits(specs: Sequence[str], default_alpha: float, attributes: Sequence[str]) -> Dict[int, float]:
    """``["Smiling", "No_Beard=0.2"]`` -> {index: signed alpha}."""
    edits: Dict[int, float] = {}
    given: Dict[int, int] = {}
    for spec in specs:
        name, _, value = spec.partition("=")
        try:
            alpha = float(value) if value else default_alpha
        except ValueError:
            raise InputError(f"bad edit '{spec}': expected NAME or NAME=ALPHA with a number") from None
        check_alpha(alpha, f"attr {spec}", param="attr")
        index, sign = resolve_attribute(name, attributes)
        edits[index] = edits.get(index, 0.0) + sign * alpha
        given[index] = given.get(index, 0) + 1
        if given[index] > 1:  # repeated attributes add up: the sum must stay an edit strength too
            check_alpha(edits[index], f"attr {attributes[index]} (given {given[index]} times, summed)", param="attr")
    return edits


def level_edit_route(autoencoder, levels: Optional[Sequence[int]]):
    """How ``levels`` (0-based list or None) restricts an edit: ``(mask, block_levels)``.

    HDAE models: ``mask`` (bool (L*D,)) restricts the direction to those levels' coordinates and
    ``block_levels`` is None (decode the edited code normally). Plain Diff-AE models: ``mask`` is None and
    ``block_levels`` = ``levels``: the edited code drives only the UNet blocks of those levels
    (:func:`diffedit_cli.pipeline.decode_levels`; our extension).
    """
    if levels is None:
        return None, None
    if is_hierarchical(autoencoder):
        return level_mask(autoencoder, levels), None
    return None, list(levels)
