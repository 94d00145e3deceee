"""Command-line options every emi command shares (light: click only)."""

from __future__ import annotations

import functools

import click

COMMAND_SETTINGS = {"help_option_names": ["-h", "--help"], "show_default": True}

device_option = click.option(
    "--device", default=None, help="cpu, cuda or cuda:N  [default: cuda if available]"
)


def _trust(_context: click.Context, _parameter: click.Parameter, value: bool) -> bool:
    from emi_features.core.hub import trust_remote_code

    trust_remote_code(value)  # every command sets it: off unless given
    return value


trust_option = click.option(
    "--trust-remote-code",
    is_flag=True,
    expose_value=False,
    callback=_trust,
    help="Run a model folder's own Python code (models transformers cannot build itself, "
    "such as ChatGLM3); never asked for at a prompt. Read that code first.",
)


def logging_options(function):
    """`--quiet` (no progress bars) and `--verbose` (debug logging)."""
    function = click.option("--verbose", is_flag=True, help="Debug logging.")(function)
    return click.option("--quiet", is_flag=True, help="No progress bars.")(function)


def stream_option(*, old: str, help: str, default: str | None = None, required: bool = False):
    """`--stream NAME`, the one word for a cache's /features/NAME on every command. The name the
    command had before (`old`: --group, --name) still works, hidden, and says so."""

    def decorate(function):
        @functools.wraps(function)
        def merged(*args, stream: str | None, old_stream: str | None, **kwargs):
            if old_stream is not None:
                if stream is not None and stream != old_stream:
                    raise click.UsageError(f"give --stream once ({old} is its old name)")
                click.echo(f"emi: note: {old} is now --stream", err=True)
                stream = old_stream
            stream = default if stream is None else stream
            if stream is None and required:
                raise click.UsageError("give --stream NAME")
            return function(*args, stream=stream, **kwargs)

        merged = click.option(old, "old_stream", default=None, hidden=True)(merged)
        shown = f"  [default: {default}]" if default else ("  [required]" if required else "")
        return click.option("--stream", "stream", default=None, help=help + shown)(merged)

    return decorate
