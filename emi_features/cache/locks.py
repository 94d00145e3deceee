"""Exclusive locks that name their holder, for a cache being extracted or a run being trained.

A POSIX record lock (`lockf`) on a small file beside the target (`.NAME.lock`): the kernel
releases it when the holder exits in any way, `kill -9` included, so a lock is never stale, and
unlike `flock` it is not shared with forked children (decoding workers), so it ends with its
process. The file stays and holds the last holder's pid, host and start time for the message a
second process gets. POSIX locks do not exclude their own process, so the paths held here are
also kept in `_HELD`.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from pathlib import Path

from emi_features.cache.atomic import WriteError, describe_os_error

_HELD: set[str] = set()


class LockedError(RuntimeError):
    """Another process holds the lock; the message names it."""


class ExclusiveLock:
    """Hold `.NAME.lock` beside `target` until `release` (or the process ends)."""

    def __init__(self, target: str | Path, what: str):
        self.path = Path(target).with_name(f".{Path(target).name}.lock")
        self.what = what
        self._handle = None

    def acquire(self) -> ExclusiveLock:
        key = str(self.path.resolve())
        if key in _HELD:
            raise LockedError(f"{self.what} is in use by this process already")
        try:
            handle = open(self.path, "a+")  # noqa: SIM115 - held open as long as the lock
        except OSError as error:
            raise WriteError(describe_os_error(self.path, error)) from None
        try:
            fcntl.lockf(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            holder = _describe(handle.read())
            handle.close()
            raise LockedError(
                f"{self.what} is in use by another process ({holder}); wait for it to finish, "
                f"or use another output"
            ) from None
        info = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
        try:  # a full disk fails here first: one line, and the lock is not kept
            handle.seek(0)
            handle.truncate()
            handle.write(json.dumps(info))
            handle.flush()
        except OSError as error:
            fcntl.lockf(handle.fileno(), fcntl.LOCK_UN)
            with contextlib.suppress(OSError):  # its flush fails again on the same full disk
                handle.close()
            raise WriteError(describe_os_error(self.path, error)) from None
        _HELD.add(key)
        self._handle = handle
        self._key = key
        return self

    def release(self) -> None:
        if self._handle is not None:
            fcntl.lockf(self._handle.fileno(), fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None
            _HELD.discard(self._key)

    def __enter__(self) -> ExclusiveLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _describe(text: str) -> str:
    try:
        info = json.loads(text)
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(info["since"])))
        return f"pid {info['pid']} on {info['host']}, since {since}"
    except (ValueError, KeyError, TypeError):
        return "holder unknown"


def check_unlocked(target: str | Path, what: str) -> None:
    """Before any work: raise LockedError (naming the holder) when another process holds
    `target`'s lock. Only the first rank of a torchrun job looks (its ranks share one lock)."""
    if os.environ.get("RANK", "0") != "0" or not Path(target).exists():
        return
    ExclusiveLock(target, what).acquire().release()
