"""The one way every emi file is written: aside under a temporary name, then renamed.

A reader therefore sees the old file or the new one, never half of one, whatever kills the
writer. Temporary names start with `.NAME.` and end in `.tmp`, so a later run can find and
remove the ones a killed process left (`remove_stale_temporaries`).
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from pathlib import Path

FILE_MODE = 0o644  # every file emi writes: readable by the group and others, as plain files are


class WriteError(OSError):
    """A file that could not be written; the message is one line naming the path and cause."""


def describe_os_error(path: Path, error: OSError) -> str:
    """`cannot write runs/x/config.json: no space left on device` style text."""
    reasons = {
        errno.ENOSPC: "no space left on device",
        errno.EDQUOT: "disk quota exceeded",
        errno.EACCES: "permission denied",
        errno.EPERM: "permission denied",
        errno.EROFS: "read-only file system",
        errno.ENOENT: "its folder does not exist",
    }
    reason = reasons.get(error.errno, error.strerror or str(error))
    return f"cannot write {path}: {reason}"


def temporary_name(target: Path) -> Path:
    return target.with_name(f".{target.name}.{os.getpid()}.tmp")


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `target`; after the block, rename it over `target`.

    On any error the temporary file is removed and `target` is untouched; an OSError becomes a
    WriteError with one line naming `target` and the cause.
    """
    target = Path(target)
    temporary = temporary_name(target)
    try:
        yield temporary
        os.chmod(temporary, FILE_MODE)
        os.replace(temporary, target)
    except WriteError:
        raise
    except OSError as error:
        raise WriteError(describe_os_error(target, error)) from error
    finally:
        with contextlib.suppress(OSError):
            temporary.unlink(missing_ok=True)


def remove_stale_temporaries(target: Path) -> list[Path]:
    """Remove temporary files of `target` left by processes that no longer run."""
    removed = []
    for path in Path(target).parent.glob(f".{Path(target).name}.*.tmp"):
        pid = path.name[len(Path(target).name) + 2 : -4]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            with contextlib.suppress(OSError):
                path.unlink()
                removed.append(path)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
