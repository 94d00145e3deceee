"""A head's config read back from a run's config.json: its own settings class by its name (an
old name such as `linear` too), every value checked against its field (`config_json`). Light:
no torch.
"""

from __future__ import annotations

import typing
from dataclasses import fields
from typing import Any

from emi_heads.heads.settings import HeadConfig, all_settings, head_class
from emi_heads.training.config_json import ConfigError, from_dict, matches


def head_from_dict(data: Any) -> HeadConfig:
    """A head's config from a run's config.json: its own settings class by its name (an old
    name such as `linear` too). Settings of other heads (all of them, in a run saved when one
    flat config held every head's settings) are checked for their type and left out."""
    if not isinstance(data, dict):
        raise ConfigError(f"HeadConfig: expected an object, got {type(data).__name__}")
    if not isinstance(data.get("head"), str):
        raise ConfigError("HeadConfig: missing field(s) head")
    config_class = head_class(data["head"])
    own = {f.name for f in fields(config_class)}
    owners = all_settings()
    for name in sorted((set(data) - own) & set(owners)):
        if not matches(data[name], typing.get_type_hints(owners[name])[name]):
            declared = owners[name].__dataclass_fields__[name].type
            raise ConfigError(f"HeadConfig.{name}: {data[name]!r} is not a {declared}")
    kept = {k: v for k, v in data.items() if k in own or k not in owners}
    return from_dict(config_class, {**kept, "head": config_class.name}, "HeadConfig")
