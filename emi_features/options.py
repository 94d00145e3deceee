"""Command-line options every emi command shares (light: click only)."""

from __future__ import annotations

import click

COMMAND_SETTINGS = {"help_option_names": ["-h", "--help"], "show_default": True}

device_option = click.option(
    "--device", default=None, help="cpu, cuda or cuda:N  [default: cuda if available]"
)


def logging_options(function):
    """`--quiet` (no progress bars) and `--verbose` (debug logging)."""
    function = click.option("--verbose", is_flag=True, help="Debug logging.")(function)
    return click.option("--quiet", is_flag=True, help="No progress bars.")(function)
