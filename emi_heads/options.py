"""Command-line options generated from the config dataclasses, and configs built from them.

Every field of `HeadConfig` and `TrainConfig` becomes an option with its default and help, so a
new field is on the command line without touching the command. Light: click only.
"""

from __future__ import annotations

import typing
from dataclasses import MISSING, fields
from typing import Any

import click

from emi_heads.config import ConfigError, choices

# Fields set by the command's own arguments, not by a generated option.
NOT_OPTIONS = {"head", "dims"}


def _float_list(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a comma-separated list of numbers") from None


def config_options(config_class: type) -> Any:
    """click options for every field of a config dataclass (but `NOT_OPTIONS`)."""
    hints = typing.get_type_hints(config_class)

    def decorate(function: Any) -> Any:
        for item in reversed(fields(config_class)):
            if item.name in NOT_OPTIONS:
                continue
            meta, kind = item.metadata, hints[item.name]
            flag = meta.get("flag", item.name).replace("_", "-")
            default = item.default if item.default is not MISSING else item.default_factory()
            options: dict[str, Any] = {"help": meta.get("help"), "show_default": True}
            if kind is bool:
                names = [f"--{flag}/--no-{flag}", item.name]
                options["default"] = default
            elif choices(config_class, item.name):
                names = [f"--{flag}", item.name]
                options.update(type=click.Choice(choices(config_class, item.name)), default=default)
            elif typing.get_origin(kind) is tuple:
                names = [f"--{flag}", item.name]
                options.update(
                    type=str,
                    default=",".join(f"{v:g}" for v in default),
                    callback=lambda _c, _p, v: _float_list(v),
                )
            else:
                base = next(a for a in typing.get_args(kind) or (kind,) if a is not type(None))
                names = [f"--{flag}", item.name]
                options.update(type=base, default=0 if default is None else default)
            function = click.option(*names, **options)(function)
        return function

    return decorate


def build_config(
    config_class: type, values: dict[str, Any], preset: dict[str, Any], **fixed: Any
) -> Any:
    """A config from parsed options: an option given on the command line wins, then the
    preset's value, then the default; `zero_is_none` fields map 0 to None."""
    context = click.get_current_context()
    own = {}
    for item in fields(config_class):
        if item.name not in values:
            continue
        value = values.pop(item.name)
        given = context.get_parameter_source(item.name) == click.core.ParameterSource.COMMANDLINE
        if item.name in preset and not given:
            own[item.name] = preset[item.name]
            continue
        if item.metadata.get("zero_is_none") and value == 0:
            value = None
        own[item.name] = value
    try:
        return config_class(**own, **fixed)
    except ConfigError as error:
        raise click.UsageError(str(error)) from None
