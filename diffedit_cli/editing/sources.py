"""Named edits: classifier attributes and ``FILE:NAME`` entries of direction files, resolved for one model.

``DirectionSources(model).edit("dirs.safetensors:Smile=0.3", 0.2)`` -> an :class:`~.directions.Edit`;
``.raw(name)`` -> the raw direction (D,) of an attribute or file entry (for orthogonal projection).
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Sequence

import torch

from ..errors import InputError
from ..io.models import DiffAEModel
from . import directions as dirs
from .attributes import check_alpha, classifier_edit, resolve_attribute


class DirectionSources:
    """The direction files an edit names, loaded once and checked against the model."""

    def __init__(self, model: DiffAEModel):
        self.model = model
        self._files = {}

    def file(self, path: str) -> dirs.DirectionSet:
        if path not in self._files:
            found = dirs.load_directions(Path(path))
            dirs.check_directions_model(found, self.model, path)
            self._files[path] = found
        return self._files[path]

    def edit(self, spec: str, default_alpha: float) -> dirs.Edit:
        """``FILE:NAME`` or ``FILE:NAME=ALPHA`` -> an edit."""
        path, sep, rest = spec.rpartition(":")  # from the right: the file's path may hold ':' or '='
        name, _, value = rest.partition("=")     # names hold neither (checked when a file is read)
        if not sep or not path or not name:
            raise InputError(f"direction '{spec}': expected FILE:NAME or FILE:NAME=ALPHA", param="direction")
        try:
            alpha = float(value) if value else default_alpha
        except ValueError:
            raise InputError(f"direction '{spec}': ALPHA must be a number", param="direction") from None
        check_alpha(alpha, f"direction {spec}", param="direction")
        found = self.file(path)
        index = found.index(name, f"'{path}'")
        return dirs.Edit(f"{path}:{found.names[index]}", found.raw(index), found.std, alpha)

    def raw(self, name: str) -> torch.Tensor:
        """A direction named for ``orthogonal_to``: a classifier attribute, or ``FILE:NAME``."""
        if ":" in name:
            path, _, key = name.rpartition(":")
            found = self.file(path)
            return found.raw(found.index(key, f"'{path}'"))
        classifier = self.model.component("classifier")
        index, _ = resolve_attribute(name, classifier.attributes)
        return classifier_edit(classifier, index, 1.0).raw.cpu()


def parse_orthogonal(specs: Sequence[str]) -> List[str]:
    """``["Male,Eyeglasses", "dirs.safetensors:pc01"]`` -> names (comma lists split)."""
    return [part.strip() for spec in specs for part in spec.split(",") if part.strip()]
