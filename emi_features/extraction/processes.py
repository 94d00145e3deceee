"""How an extraction's processes end: decoding workers die with their parent, and SIGTERM
behaves like Ctrl-C (committed work kept, one line, resume works)."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from typing import Any


def die_with_parent(_: int) -> None:
    """DataLoader worker start-up: on Linux, ask the kernel to kill this worker when the
    extraction process dies in any way (kill -9 included), so no decoder outlives it."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL)
        if os.getppid() == 1:  # the parent died before the request took effect
            os._exit(1)


@contextlib.contextmanager
def sigterm_as_interrupt():
    """SIGTERM behaves like Ctrl-C: committed work is kept and the run says so in one line."""

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
