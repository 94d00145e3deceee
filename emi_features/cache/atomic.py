"""The one way every emi file is written: aside under a temporary name, then renamed.

A reader therefore sees the old file or the new one, never half of one, whatever kills the
writer. Temporary names start with `.NAME.` and end in `.tmp`, so a later run can find and
remove the ones a killed process left (`remove_stale_temporaries`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
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
    code = error.errno
    if code is None:  # h5py folds the C library's errno into its message
        found = re.search(r"errno = (\d+)", str(error))
        code = int(found.group(1)) if found else None
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    reason = reasons.get(code, error.strerror or text)
    return f"cannot write {path}: {reason}"


def check_free_space(target: Path, needed_bytes: float) -> None:
    """A one-line WriteError (ENOSPC) when `target`'s folder has less room than needed, so that
    a write fails before it starts rather than half-way inside a library."""
    import shutil

    free = shutil.disk_usage(Path(target).resolve().parent).free
    if free < needed_bytes:
        raise WriteError(
            f"cannot write {target}: no space left on device (needs about "
            f"{needed_bytes / 2**20:.1f} MiB, {free / 2**20:.1f} MiB free)"
        )


@contextlib.contextmanager
def library_cleanup_errors_silenced() -> Iterator[None]:
    """While a failed write unwinds, HDF5 objects freed by garbage collection report their own
    failed flushes as 'Exception ignored' tracebacks; the write's one-line error says it all."""
    import sys

    previous = sys.unraisablehook
    sys.unraisablehook = lambda unraisable: None
    try:
        yield
    finally:
        import gc

        gc.collect()  # free the failed objects while the hook is still quiet
        sys.unraisablehook = previous


def check_writable_folder(target: Path) -> None:
    """A one-line WriteError unless `target`'s folder exists and can be written."""
    folder = Path(target).resolve().parent
    if not folder.is_dir():
        raise WriteError(f"cannot write {target}: its folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise WriteError(f"cannot write {target}: its folder {folder} is not writable")


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
        with library_cleanup_errors_silenced():
            raise WriteError(describe_os_error(target, error)) from None
    finally:
        with contextlib.suppress(OSError):
            temporary.unlink(missing_ok=True)


def remove_stale_temporaries(target: Path, pattern: str | None = None) -> list[Path]:
    """Remove temporary files of `target` (or of every file matching `pattern` in its folder)
    that processes which no longer run left behind; a live writer's are kept."""
    removed = []
    name = pattern or Path(target).name
    for path in Path(target).parent.glob(f".{name}.*.tmp"):
        pid = path.name.rsplit(".", 2)[-2]
        if pid.isdigit() and int(pid) != os.getpid() and not process_alive(int(pid)):
            with contextlib.suppress(OSError):
                path.unlink()
                removed.append(path)
    return removed


def process_alive(pid: int) -> bool:
    """True while a process of that id runs on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
