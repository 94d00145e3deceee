"""Running `emi` commands as steps of a larger job (`emi demo`, `emi recipe`, `emi predict
--media`): stage two in this process (the same click command, torch loaded once), stage one as
a subprocess, so that the calling process never imports the backbone libraries. A subprocess
step ends with its caller however the caller ends (`kill -9` included)."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
from pathlib import Path

import click

IN_PROCESS = {"emi-train", "emi-predict"}  # stage two: run here, torch loaded once


class StepFailed(click.ClickException):
    """A step that exited non-zero; `returncode` is its exit status."""

    def __init__(self, message: str, returncode: int):
        super().__init__(message)
        self.returncode = returncode


def run_command(
    stage: str, args: list[str], *, show: bool = True, cwd: Path | None = None
) -> float:
    """Run `stage` (`emi-extract`, `emi-train`, ...) with `args` as a user would type it (a
    subprocess step in `cwd`); its log lines pass through. One-line ClickException when it
    fails. Returns seconds taken."""
    started = time.perf_counter()
    if show:
        click.echo(f"$ {stage} {' '.join(args)}", err=True)
    if stage in IN_PROCESS:
        _run_here(stage, args)
    else:
        command = [sys.executable, "-m", "emi_heads", stage.removeprefix("emi-"), *args]
        child = subprocess.Popen(command, cwd=cwd, preexec_fn=_end_with_parent)
        try:
            returncode = child.wait()
        except BaseException:  # Ctrl-C, SIGTERM as an interrupt: the step ends too
            child.terminate()
            child.wait()
            raise
        if returncode != 0:
            raise StepFailed(f"{stage} failed (exit {returncode}); see above", returncode)
    return time.perf_counter() - started


def _end_with_parent() -> None:
    """In the child, before it runs: SIGTERM when the parent dies (Linux `prctl`)."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):  # not Linux: Ctrl-C reaches the group
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


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
