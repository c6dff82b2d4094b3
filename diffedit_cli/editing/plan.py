"""One edit, resolved once for a model: what ``diffedit edit`` does to every code of a run.

:func:`plan_edit` turns attribute names, direction-file entries, an alpha or an alpha sweep, ``topk``,
levels and ``orthogonal`` names into an :class:`EditPlan`; its ``move(z)`` maps semantic codes (N, D) to
edited codes (N, D) on the same device, and ``route`` says which levels of an HDAE code the decoder takes from the
edited code (:func:`diffedit_cli.editing.attributes.level_edit_route`). Files and photos share it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable, Dict, List, Optional, Sequence

import torch

from ..errors import InputError
from ..networks.hierarchy import check_levels
from ..io.models import DiffAEModel
from .attributes import attribute_direction, check_alpha, classifier_edit, edit_z_sem, level_edit_route, parse_edits


@dataclass
class EditPlan:
    """``move(z, strength=None)``: z (N, D) -> edited z (N, D) on z's device; ``strength`` replaces the (single) edit's
    alpha, keeping its sign (sweeps). ``alphas``: the sweep, or None; ``labels``: {edit name: alpha}."""

    move: Callable[..., torch.Tensor]
    route: object
    labels: Dict[str, float]
    alphas: Optional[List[float]]
    topk: Optional[int]
    levels: Optional[List[int]]
    orthogonal: List[str] = field(default_factory=list)  # what every direction was made orthogonal to

    @property
    def columns(self) -> int:
        """Decodes per input: 1, or one per sweep alpha."""
        return 1 if self.alphas is None else len(self.alphas)

    def codes(self, z: torch.Tensor) -> torch.Tensor:
        """Every decode's edited code, (columns * N, D): alpha-major for a sweep."""
        if self.alphas is None:
            return self.move(z)
        return torch.cat([self.move(z, a) for a in self.alphas])


def plan_edit(model: DiffAEModel, attrs: Sequence[str] = (), alpha: float = 0.3, topk: Optional[int] = None,
              alphas: Optional[Sequence[float]] = None, levels: Optional[Sequence[int]] = None,
              directions: Sequence[str] = (), orthogonal: Sequence[str] = ()) -> EditPlan:
    """Resolve and check an edit (errors name the parameter).

    ``attrs``: ``NAME`` or ``NAME=ALPHA`` (classifier attributes; No_X negates X); ``directions``:
    ``FILE:NAME[=ALPHA]`` (:mod:`.directions` files); ``orthogonal``: names (attributes or ``FILE:NAME``, comma
    lists allowed) every direction is made orthogonal to first; ``alphas``: a sweep (>= 2 strengths) of the
    single edit; ``levels``: 0-based (0 = finest) levels the edit may change.
    """
    if not attrs and not directions:
        raise InputError("give at least one attribute (NAME or NAME=ALPHA) or direction (FILE:NAME)")
    classifier = model.component("classifier") if attrs or orthogonal else None
    edits = parse_edits(attrs, alpha, classifier.attributes) if attrs else {}
    if alphas is not None:
        alphas = [check_alpha(float(a), "alphas") for a in alphas]
        if len(alphas) < 2:
            raise InputError("an alpha sweep needs at least 2 alphas")
    level_list = check_levels(levels, model.autoencoder)
    mask, route = level_edit_route(model.autoencoder, level_list)
    labels = {classifier.attributes[i]: a for i, a in edits.items()} if edits else {}
    if directions or orthogonal:
        from .directions import apply_edits  # only edits that name direction files need these modules
        from .sources import DirectionSources, parse_orthogonal

        sources = DirectionSources(model)
        edit_list = [classifier_edit(classifier, i, a) for i, a in edits.items()]
        edit_list += [sources.edit(spec, alpha) for spec in directions]
        against = [sources.raw(name) for name in parse_orthogonal(orthogonal)]
        labels = {e.label: e.alpha for e in edit_list}

        def move(z: torch.Tensor, strength: Optional[float] = None) -> torch.Tensor:
            chosen = edit_list if strength is None else \
                [replace(edit_list[0], alpha=(1.0 if edit_list[0].alpha >= 0 else -1.0) * strength)]
            return apply_edits(z.cpu(), chosen, against, topk, mask).to(z.device)
        move(torch.zeros(1, model.autoencoder.config.style_channels))  # checks topk and the projections up front
    else:
        device = next(classifier.parameters()).device

        def move(z: torch.Tensor, strength: Optional[float] = None) -> torch.Tensor:
            chosen = edits
            if strength is not None:
                (index, sign), = edits.items()
                chosen = {index: (1.0 if sign >= 0 else -1.0) * strength}
            return edit_z_sem(z.to(device), classifier, chosen, topk, mask).to(z.device)
        if topk is not None:
            attribute_direction(classifier, next(iter(edits)), topk, mask)  # checks the range up front
    if alphas is not None and len(labels) != 1:
        raise InputError("an alpha sweep takes exactly one attribute or direction")
    return EditPlan(move, route, labels, alphas, topk, level_list, list(orthogonal))
