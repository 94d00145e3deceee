"""click options generated from frozen config dataclasses (light: click only): every field an
option with its default and help, so a new field is on the command line without touching the
command. Used by `emi train` (head and training configs) and `emi extract` (each modality's
settings)."""

from __future__ import annotations

import typing
from collections.abc import Callable, Iterable
from dataclasses import MISSING, fields
from typing import Any, Literal

import click


def choices(config_class: type, name: str) -> tuple[str, ...] | None:
    """The allowed values of a field typed `Literal[...]` (its one home), else None."""
    kind = typing.get_type_hints(config_class)[name]
    return typing.get_args(kind) if typing.get_origin(kind) is Literal else None


def choice_problems(config: Any) -> list[str]:
    """A line for every `Literal` field whose value is not one of its choices."""
    problems = []
    for item in fields(config):
        allowed = choices(type(config), item.name)
        if allowed and getattr(config, item.name) not in allowed:
            problems.append(f"{item.name} must be one of {', '.join(allowed)}")
    return problems


def _float_list(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a comma-separated list of numbers") from None


def dataclass_options(
    *config_classes: type, skip: Iterable[str] = (), note: Callable[[str], str] | None = None
) -> Any:
    """click options for every field of config dataclasses (but those in `skip`; a field several
    classes share, once): the field's default and `help` metadata; `flag` metadata renames the
    option; a `Literal` is a choice, a bool a --x/--no-x switch, a tuple of floats a
    comma-separated list."""
    owners: dict[str, tuple[Any, type]] = {}
    for config_class in config_classes:
        for item in fields(config_class):
            if item.name not in skip:
                owners.setdefault(item.name, (item, config_class))

    def decorate(function: Any) -> Any:
        for item, config_class in reversed(owners.values()):
            meta, kind = item.metadata, typing.get_type_hints(config_class)[item.name]
            flag = meta.get("flag", item.name).replace("_", "-")
            default = item.default if item.default is not MISSING else item.default_factory()
            text = (meta.get("help") or "") + (note(item.name) if note else "")
            options: dict[str, Any] = {"help": text, "show_default": True}
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


def given_on_command_line(name: str) -> bool:
    """Whether the option NAME of the running command was typed (not its default)."""
    source = click.get_current_context().get_parameter_source(name)
    return source == click.core.ParameterSource.COMMANDLINE
