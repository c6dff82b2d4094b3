"""The shared base of the trainers' config dataclasses: JSON round trip, the resume rule, the range checks."""

from __future__ import annotations

from typing import ClassVar, Iterable, Optional, Tuple, TypeVar

from ..errors import DiffeditError
from ..networks.config import JsonConfig

T = TypeVar("T", bound="TrainConfig")


class TrainConfig(JsonConfig):
    """Mixin for a trainer's ``@dataclass`` config (``train_config.json``, the resumable state, the model card's
    ``training`` record).

    ``RUN_CONTROLS``: the fields a resumed run takes from the new invocation (how long and where to run, how
    often to save); every other field (the recipe) comes from the saved run, so a resume continues exactly.
    """

    RUN_CONTROLS: ClassVar[Tuple[str, ...]] = ("steps", "device", "save_every")

    def resumed(self: T, saved: dict, given: Optional[Iterable[str]] = None) -> T:
        """The saved run's config with this invocation's run controls.

        ``given``: the controls this invocation set explicitly (the command line's flags); the others keep the
        saved run's values, so ``resume`` alone continues with the run's own ``keep_every`` and the like.
        ``None``: every control from this invocation.
        """
        chosen = None if given is None else set(given)
        names = [n for n in self.RUN_CONTROLS if chosen is None or n in chosen or n not in saved]
        return type(self).from_dict({**saved, **{name: getattr(self, name) for name in names}})

    def check_positive(self, *names: str) -> None:
        """Raise a :class:`DiffeditError` naming the first of ``names`` whose value is below 1."""
        for name in names:
            if getattr(self, name) < 1:
                raise DiffeditError(f"{name} must be >= 1", param=name)
