"""Running `emi` commands as steps of a larger job (`emi demo`, `emi recipe`): stage two in this
process (the same click command, torch loaded once), stage one as a subprocess, so that the
calling process never imports the backbone libraries."""

from __future__ import annotations

import subprocess
import sys
import time

import click

IN_PROCESS = {"emi-train", "emi-predict"}  # stage two: run here, torch loaded once


def run_command(stage: str, args: list[str], *, show: bool = True) -> float:
    """Run `stage` (`emi-extract`, `emi-train`, ...) with `args` as a user would type it; its
    log lines pass through. One-line ClickException when it fails. Returns seconds taken."""
    started = time.perf_counter()
    if show:
        click.echo(f"$ {stage} {' '.join(args)}", err=True)
    if stage in IN_PROCESS:
        _run_here(stage, args)
    else:
        command = [sys.executable, "-m", "emi_heads", stage.removeprefix("emi-")]
        completed = subprocess.run([*command, *args], check=False)
        if completed.returncode != 0:
            raise click.ClickException(f"{stage} failed (exit {completed.returncode}); see above")
    return time.perf_counter() - started


def _run_here(stage: str, args: list[str]) -> None:
    from emi_heads.cli.app import main as emi

    command = emi.get_command(click.Context(emi), stage.removeprefix("emi-"))
    argv = sys.argv
    sys.argv = [stage, *args]  # what the run records as its command
    try:
        command.main(args, prog_name=stage, standalone_mode=False)
    except click.ClickException as error:
        raise click.ClickException(f"{stage} failed: {error.format_message()}") from None
    except SystemExit as exit_:
        if exit_.code:
            raise click.ClickException(f"{stage} failed (exit {exit_.code}); see above") from None
    finally:
        sys.argv = argv
