"""Command-line options generated from the config dataclasses, and configs built from them.

Every field of `TrainConfig` and of every head's settings class becomes an option with its
default and help, so a new field is on the command line without touching the command. Light:
click only.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import click

from emi_features.core.dataclass_options import dataclass_options, given_on_command_line
from emi_heads.heads.settings import (
    HEADS,
    NOT_SETTINGS,
    ConfigError,
    HeadConfig,
    all_settings,
    head_class,
    setting_owners,
)

# Fields set by the command's own arguments, not by a generated option.
NOT_OPTIONS = set(NOT_SETTINGS)


def config_options(*config_classes: type) -> Any:
    """click options for every field of config dataclasses (but `NOT_OPTIONS`)."""
    return dataclass_options(*config_classes, skip=NOT_OPTIONS)


def _owners(name: str) -> str:
    """`  [heads: lstm, streams-lstm]` for a setting only some heads have."""
    owners = setting_owners(name)
    return "" if len(owners) == len(HEADS) else f"  [heads: {', '.join(owners)}]"


head_options = dataclass_options(*HEADS.values(), skip=NOT_OPTIONS, note=_owners)


def build_head_config(head: str, values: dict[str, Any], base: dict[str, Any]) -> HeadConfig:
    """The head's config from parsed options: its own settings only (one given that belongs to
    another head is refused by name), each from the command line, else `base` (a preset or a
    run), else its default."""
    try:
        config_class = head_class(head)
    except ConfigError as error:
        raise click.UsageError(str(error)) from None
    own = set(config_class.setting_names())
    foreign = [name for name in all_settings() if name not in own and name in values]
    given = [name for name in foreign if given_on_command_line(name)]
    if given:
        flag = given[0].replace("_", "-")
        owners = ", ".join(setting_owners(given[0]))
        if given[0] == "inputs":  # the heads without it read every frame
            raise click.UsageError(
                f"--inputs: the {config_class.name} head reads the frames; "
                f"inputs chooses what {owners} read"
            )
        raise click.UsageError(
            f"--{flag} is a setting of the {owners} head(s), not of {config_class.name}"
        )
    for name in foreign:  # other heads' defaults
        values.pop(name)
    return build_config(config_class, values, base, head=config_class.name, dims={})


def build_config(
    config_class: type, values: dict[str, Any], preset: dict[str, Any], **fixed: Any
) -> Any:
    """A config from parsed options: an option given on the command line wins, then the
    preset's value, then the default; `zero_is_none` fields map 0 to None."""
    own = {}
    for item in fields(config_class):
        if item.name not in values:
            continue
        value = values.pop(item.name)
        if item.name in preset and not given_on_command_line(item.name):
            own[item.name] = preset[item.name]
            continue
        if item.metadata.get("zero_is_none") and value == 0:
            value = None
        own[item.name] = value
    try:
        return config_class(**own, **fixed)
    except ConfigError as error:
        raise click.UsageError(str(error)) from None
