"""The one way anything joins a finished cache: a stream (`attach_streams`) or its transcripts.

The cache is copied beside itself with the new content, and the copy renamed over it, under the
cache's lock: a crash leaves the old cache whole, and another process that holds the cache is
refused in one line. `ready_to_rewrite` runs the same checks before any work (an extraction, a
model load) so that a cache that cannot take the result is refused first, not last.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import h5py

from emi_features.cache.atomic import atomic_path, check_free_space, remove_stale_temporaries
from emi_features.cache.locks import ExclusiveLock, LockedError, check_unlocked
from emi_features.cache.reader import open_cache
from emi_features.cache.schema import FEATURES, CacheError
from emi_features.cache.streams import Stream, stream_names, write_stream


def check_writable(cache_path: Path) -> int:
    """The cache's permission bits; a cache nobody may write (chmod 444) is refused before any
    work, even for root, who could."""
    try:
        mode = cache_path.stat().st_mode & 0o7777
    except OSError as error:
        raise CacheError(f"{cache_path}: cannot be read ({error.strerror})") from None
    if not mode & 0o222:
        raise CacheError(f"{cache_path}: read-only (mode {mode:o}); make it writable to change it")
    return mode


def refuse_held(cache_path: Path) -> None:
    """One line when another process holds the cache: asked before any work (a model load),
    not when the work is done."""
    try:
        check_unlocked(cache_path, f"cache {cache_path}")
    except LockedError as error:
        raise CacheError(str(error)) from None


def ready_to_rewrite(cache_path: Path, extra: int = 0) -> None:
    """Before any work on a cache that will be rewritten with a new stream or /text: it is
    writable, no other process holds it, and its folder has room for the copy."""
    check_writable(cache_path)
    refuse_held(cache_path)
    check_free_space(cache_path, cache_path.stat().st_size * 1.02 + extra + (16 << 20))


@contextmanager
def cache_lock(cache_path: Path) -> Iterator[None]:
    """The cache's exclusive lock for the block; one line when another process holds it."""
    try:
        lock = ExclusiveLock(cache_path, f"cache {cache_path}").acquire()
    except LockedError as error:
        raise CacheError(str(error)) from None
    try:
        yield
    finally:
        lock.release()


def finished_ids(cache_path: Path) -> list[str]:
    """The ids of a cache whose extraction is finished (what a stream is aligned to)."""
    with open_cache(cache_path) as cache:
        if not cache.complete:
            raise CacheError(f"{cache_path}: its extraction is not finished; finish it first")
        return list(cache.ids)


def refuse_existing(cache_path: Path, names: list[str], overwrite: bool) -> None:
    """One line when a stream of one of these names is there already (and not `overwrite`)."""
    with open_cache(cache_path) as cache:
        taken = [name for name in names if name in cache.streams()]
    if taken and not overwrite:
        raise CacheError(f"{cache_path} has a stream {taken[0]!r} already; --overwrite replaces it")


def attach_streams(cache_path: Path, streams: dict[str, Stream], *, overwrite: bool) -> None:
    """Add (or with `overwrite`, replace) the streams `/features/NAME`, under the cache's lock.
    Each stream's rows must follow the cache's `/ids` (see `finished_ids`)."""
    with cache_lock(cache_path):
        refuse_existing(cache_path, list(streams), overwrite)
        for name, stream in streams.items():
            extra = sum(
                a.nbytes for a in (stream.values, stream.frames, stream.mean) if a is not None
            )
            rewrite_cache(
                cache_path,
                lambda target, n=name, s=stream: write_stream(target, n, s),
                stream=name,
                extra=extra,
            )


def rewrite_cache(
    cache_path: Path,
    write: Callable[[h5py.File], None],
    *,
    stream: str | None = None,
    group: str | None = None,
    extra: int = 0,
) -> None:
    """The cache copied aside without the stream `stream` or the top-level `group`, then
    `write(copy)` adds what replaces them, and the copy is renamed over the cache (call it under
    the cache's lock). A crash leaves the old cache whole; the rewritten cache keeps the old
    one's file mode, and a read-only cache is refused."""
    mode = check_writable(cache_path)
    remove_stale_temporaries(cache_path)  # a killed rewrite's copy
    check_free_space(cache_path, cache_path.stat().st_size * 1.02 + extra + (16 << 20))
    with (
        h5py.File(cache_path, "r") as source_file,
        atomic_path(cache_path) as temporary,
        h5py.File(temporary, "w") as target,
    ):
        target.attrs.update(dict(source_file.attrs))
        for key in source_file:
            if key not in (FEATURES, group):
                source_file.copy(source_file[key], target, name=key)
        for other in stream_names(source_file):
            if other != stream:
                source_file.copy(
                    source_file[FEATURES][other], target.require_group(FEATURES), name=other
                )
        write(target)
    os.chmod(cache_path, mode)
    for stale in cache_path.parent.glob(f"{cache_path.name}.frame-stats-*"):
        stale.unlink(missing_ok=True)  # the cache changed: its sidecars are stale anyway
