"""Configs read back from a run's config.json: each value checked against its field's type,
unknown and missing fields refused by name, and fields added after a run was saved given the
value that run was trained with (`BEFORE_FIELD`). A head's config by its head's own settings
class is `heads.settings.head_from_dict`. Light: no torch, and no import of the settings.
"""

from __future__ import annotations

import types
import typing
from dataclasses import MISSING, fields
from typing import Any, Literal


class ConfigError(ValueError):
    """A config that cannot be built; one line naming the field."""


# Fields added after runs were first saved: a config.json without one was trained as this value,
# not as today's default.
BEFORE_FIELD = {"standardize": False, "min_steps": 0, "select_window": 1}


def matches(value: Any, annotation: Any) -> bool:
    """A JSON value against a field's annotation (the few kinds the configs use)."""
    origin = typing.get_origin(annotation)
    if annotation is Any:
        return True
    if origin in (types.UnionType, typing.Union):
        return any(matches(value, a) for a in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    if origin is Literal:
        return value in typing.get_args(annotation)
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is str:
        return isinstance(value, str)
    if origin is tuple:
        return isinstance(value, (list, tuple)) and all(matches(v, float) for v in value)
    if origin is dict:
        return isinstance(value, dict) and all(
            isinstance(k, str) and matches(v, int) for k, v in value.items()
        )
    return True


def from_dict(cls: type, data: Any, label: str | None = None) -> Any:
    """Build a config from JSON, refusing unknown or missing keys and wrong types by name
    (`label`: what the messages call the config; its class name by default)."""
    label = label or cls.__name__
    if not isinstance(data, dict):
        raise ConfigError(f"{label}: expected an object, got {type(data).__name__}")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(f"{label}: unknown field(s) {', '.join(unknown)}")
    missing = sorted(
        name
        for name, f in known.items()
        if name not in data and f.default is MISSING and f.default_factory is MISSING
    )
    if missing:
        raise ConfigError(f"{label}: missing field(s) {', '.join(missing)}")
    hints = typing.get_type_hints(cls)
    for name, value in data.items():
        if not matches(value, hints[name]):
            raise ConfigError(f"{label}.{name}: {value!r} is not a {known[name].type}")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    before = {k: v for k, v in BEFORE_FIELD.items() if k in known}
    return cls(**{**before, **values})
