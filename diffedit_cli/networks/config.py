"""The shared base of the network config dataclasses: ``config.json`` <-> dataclass."""

from __future__ import annotations

from dataclasses import asdict, fields
from typing import Any, Type, TypeVar

T = TypeVar("T", bound="JsonConfig")


def _jsonable(value: Any) -> Any:
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    return value


class JsonConfig:
    """Mixin for ``@dataclass`` configs: ``to_dict`` gives JSON-ready values (tuples as lists), ``from_dict``
    ignores keys the class does not know (so configs written by newer versions still load). Conversions back
    (lists to tuples) belong in the dataclass's ``__post_init__``."""

    def to_dict(self) -> dict:
        return {k: _jsonable(v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls: Type[T], data: dict) -> T:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})
