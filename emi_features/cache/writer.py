"""Writing the feature cache so that no crash can lose or corrupt committed work.

While an extraction runs, every batch is written as a small part file in `CACHE.h5.parts/`
(written under a temporary name, then renamed: a part either exists whole or not at all), and
`CACHE.h5` is atomically replaced by an index whose frame and mean arrays are HDF5 virtual
datasets over the parts. So at every moment `CACHE.h5` opens with any HDF5 reader and holds
every clip committed so far. When all clips are done, the parts are consolidated into one plain
file sorted by id (again written aside and renamed) and the parts folder is removed. A re-run
reads what the parts (or a finished cache) hold and continues.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from emi_features.cache.atomic import (
    atomic_path,
    check_free_space,
    check_writable_folder,
    remove_stale_temporaries,
)
from emi_features.cache.locks import ExclusiveLock, LockedError
from emi_features.cache.reader import CacheError, read_skipped
from emi_features.cache.schema import (
    FORMAT,
    FORMAT_VERSION,
    FRAME_VAD,
    FRAMES,
    IDS,
    MEAN,
    NUM_SAMPLES,
    OFFSETS,
    SKIPPED_IDS,
    SKIPPED_REASONS,
    VAD,
    VAD_DIM,
    Attr,
    ClipFeatures,
    decode_strings,
    read_attrs,
    settings_mismatch,
)
from emi_features.cache.streams import carry_streams
from emi_features.cache.text_group import carry_transcripts

STRING = h5py.string_dtype("utf-8")
BASE_PART = "base.h5"  # a finished cache being extended, linked into its parts folder


@dataclass
class _Part:
    """What the index needs to know of one part file (all but its frames)."""

    name: str
    ids: list[str]
    lengths: np.ndarray  # (n,) frames per clip
    num_samples: np.ndarray
    vad: np.ndarray | None
    skipped: dict[str, str] = field(default_factory=dict)


def _write_skipped(handle: h5py.File, skipped: dict[str, str]) -> None:
    ordered = sorted(skipped)
    handle.create_dataset(SKIPPED_IDS, data=np.array(ordered, dtype=object), dtype=STRING)
    handle.create_dataset(
        SKIPPED_REASONS, data=np.array([skipped[i] for i in ordered], dtype=object), dtype=STRING
    )


def _write_clip_arrays(
    handle: h5py.File, ids: list[str], lengths: np.ndarray, num_samples: np.ndarray
) -> None:
    handle.create_dataset(IDS, data=np.array(ids, dtype=object), dtype=STRING)
    offsets = np.zeros(len(ids) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    handle.create_dataset(OFFSETS, data=offsets)
    handle.create_dataset(NUM_SAMPLES, data=np.asarray(num_samples, dtype=np.int64))


def _replace_atomically(target: Path, write: Any) -> None:
    """Call write(h5py.File) on a temporary file beside `target`, then rename it over `target`."""
    with atomic_path(target) as temporary, h5py.File(temporary, "w", libver="latest") as handle:
        write(handle)


class CacheWriter:
    """Appends batches of clips to a cache, crash-safe and resumable (see the module docstring).

    `attrs` are the root attributes of the cache (backbone, fingerprint, settings); a cache or
    parts written with other settings are refused unless `overwrite`. With several ranks, each
    writes its own parts (`prefix`), rank 0 keeps the index and consolidates.

    The writer that keeps the index holds an exclusive lock on the cache from construction to
    `finish` or `close`: a second extraction into the same cache is refused with one line
    naming the holder (torchrun's other ranks write under rank 0's lock). On opening it removes
    temporary files that killed writers left.
    """

    def __init__(
        self,
        path: str | Path,
        attrs: dict[str, Any],
        *,
        overwrite: bool = False,
        retry_skipped: bool = False,
        prefix: str = "p",
        keeps_index: bool = True,
    ):
        self.path = Path(path)
        self.parts_dir = self.path.with_name(self.path.name + ".parts")
        self.attrs = {**attrs, "format": FORMAT, "format_version": FORMAT_VERSION}
        self.prefix = prefix
        self.keeps_index = keeps_index
        self.retry_skipped = retry_skipped
        self._parts: dict[str, _Part] = {}
        self._finished_base: Path | None = None  # a consolidated cache being extended
        self._has_frame_vad: bool | None = None
        self._lock: ExclusiveLock | None = None
        check_writable_folder(self.path)
        if keeps_index:
            try:
                self._lock = ExclusiveLock(self.path, f"cache {self.path}").acquire()
            except LockedError as error:
                raise CacheError(str(error)) from None
            remove_stale_temporaries(self.path)
            remove_stale_temporaries(self.parts_dir / "part", pattern="*")
        try:
            if overwrite and keeps_index:
                self.path.unlink(missing_ok=True)
                shutil.rmtree(self.parts_dir, ignore_errors=True)
            self._load_existing()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Release the cache's lock (finish does too); committed parts stay."""
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    # -- state -------------------------------------------------------------------------------

    def _load_existing(self) -> None:
        if self.path.exists():
            try:
                with h5py.File(self.path, "r") as handle:
                    found = read_attrs(handle)
            except OSError as error:
                raise CacheError(
                    f"{self.path}: exists but is not HDF5 ({error}); use --overwrite"
                ) from error
            if found.get(Attr.FORMAT) != FORMAT:
                raise CacheError(f"{self.path}: exists and is not an emi cache; use --overwrite")
            problem = settings_mismatch(self.path, found, self.attrs)
            if problem:
                raise CacheError(problem)
            if found.get(Attr.COMPLETE, True):
                if self.keeps_index:  # parts left by a crash after the final rename
                    shutil.rmtree(self.parts_dir, ignore_errors=True)
                self._finished_base = self.path
                self._parts[BASE_PART] = self._read_part_meta(self.path, BASE_PART)
        self.refresh()

    def _read_part_meta(self, path: Path, name: str) -> _Part:
        with h5py.File(path, "r") as handle:
            problem = settings_mismatch(path, read_attrs(handle), self.attrs)
            if problem:
                raise CacheError(problem)
            offsets = handle[OFFSETS][()]
            if self._has_frame_vad is None and len(offsets) > 1:
                self._has_frame_vad = FRAME_VAD in handle
            return _Part(
                name=name,
                ids=decode_strings(handle[IDS]),
                lengths=np.diff(offsets),
                num_samples=handle[NUM_SAMPLES][()],
                vad=handle[VAD][()] if VAD in handle else None,
                skipped=read_skipped(handle),
            )

    def refresh(self) -> None:
        """Pick up parts written since the last look (by this or another rank)."""
        if not self.parts_dir.is_dir():
            return
        for part_path in sorted(self.parts_dir.glob("*.h5")):
            if part_path.name not in self._parts:
                self._parts[part_path.name] = self._read_part_meta(part_path, part_path.name)

    @property
    def done_ids(self) -> set[str]:
        """Ids that need no work: written, or skipped (unless retry_skipped)."""
        done = {clip_id for part in self._parts.values() for clip_id in part.ids}
        if not self.retry_skipped:
            done |= {clip_id for part in self._parts.values() for clip_id in part.skipped}
        return done

    # -- writing -----------------------------------------------------------------------------

    def write_part(self, clips: list[ClipFeatures], skipped: dict[str, str]) -> None:
        """Commit one batch: after this returns, the clips survive any crash."""
        self.parts_dir.mkdir(parents=True, exist_ok=True)
        if self._finished_base is not None and self.keeps_index:
            base = self.parts_dir / BASE_PART
            if not base.exists():  # the finished cache becomes a part; a link costs no copy
                try:
                    os.link(self._finished_base, base)
                except OSError:
                    shutil.copyfile(self._finished_base, base)
            self._finished_base = None
        # time then process: names sort in commit order and never collide, whatever is missing
        name = f"{self.prefix}{time.time_ns():020d}-{os.getpid()}.h5"
        lengths = np.array([len(c.frames) for c in clips], dtype=np.int64)
        dim = int(self.attrs[Attr.HIDDEN_SIZE])
        with_vad = bool(clips) and clips[0].frame_vad is not None
        frame_bytes = int(lengths.sum()) * (2 * dim + (4 * VAD_DIM if with_vad else 0))
        check_free_space(self.parts_dir / name, frame_bytes * 1.05 + 4 * dim * len(clips) + 65536)

        def write(handle: h5py.File) -> None:
            handle.attrs.update(self.attrs)
            _write_clip_arrays(
                handle, [c.id for c in clips], lengths, [c.num_samples for c in clips]
            )
            frames = np.concatenate([c.frames for c in clips]) if clips else np.zeros((0, dim))
            handle.create_dataset(FRAMES, data=frames.astype(np.float16))
            handle.create_dataset(
                MEAN, data=np.array([c.mean for c in clips], dtype=np.float32).reshape(-1, dim)
            )
            if with_vad:
                handle.create_dataset(
                    FRAME_VAD,
                    data=np.concatenate([c.frame_vad for c in clips]).astype(np.float32),
                )
                handle.create_dataset(VAD, data=np.array([c.vad for c in clips], dtype=np.float32))
            _write_skipped(handle, skipped)

        _replace_atomically(self.parts_dir / name, write)
        self._parts[name] = _Part(
            name,
            [c.id for c in clips],
            lengths,
            np.array([c.num_samples for c in clips]),
            np.array([c.vad for c in clips], dtype=np.float32) if with_vad else None,
            dict(skipped),
        )
        if self._has_frame_vad is None and clips:
            self._has_frame_vad = with_vad
        if self.keeps_index:
            self.refresh()
            self._write_index()

    def _ordered(self) -> tuple[list[_Part], dict[str, str]]:
        """Parts holding clips (in name order) and the skipped clips that no part holds."""
        parts = [self._parts[name] for name in sorted(self._parts)]
        written: set[str] = set()
        for part in parts:
            clash = written.intersection(part.ids)
            if clash:
                raise CacheError(f"{self.parts_dir}: clip {sorted(clash)[0]} is in two parts")
            written.update(part.ids)
        skipped: dict[str, str] = {}
        for part in parts:
            skipped.update(part.skipped)
        return [p for p in parts if p.ids], {k: v for k, v in skipped.items() if k not in written}

    def _source(self, part: _Part) -> str:
        if part.name == BASE_PART and not (self.parts_dir / BASE_PART).exists():
            return self.path.name
        return f"{self.parts_dir.name}/{part.name}"

    def _write_index(self) -> None:
        parts, skipped = self._ordered()
        dim = int(self.attrs[Attr.HIDDEN_SIZE])
        ids = [i for p in parts for i in p.ids]
        lengths = np.concatenate([p.lengths for p in parts]) if parts else np.zeros(0, np.int64)

        def virtual(handle: h5py.File, name: str, width: int, dtype: Any, per_frame: bool) -> None:
            rows = int(lengths.sum()) if per_frame else len(ids)
            if rows == 0:
                handle.create_dataset(name, shape=(0, width), dtype=dtype)
                return
            layout = h5py.VirtualLayout(shape=(rows, width), dtype=dtype)
            start = 0
            for part in parts:
                count = int(part.lengths.sum()) if per_frame else len(part.ids)
                if count:
                    source = h5py.VirtualSource(self._source(part), name, shape=(count, width))
                    layout[start : start + count] = source
                start += count
            handle.create_virtual_dataset(name, layout)

        def write(handle: h5py.File) -> None:
            handle.attrs.update(
                {**self.attrs, Attr.COMPLETE: False, Attr.PARTS: self.parts_dir.name}
            )
            _write_clip_arrays(
                handle,
                ids,
                lengths,
                np.concatenate([p.num_samples for p in parts]) if parts else [],
            )
            virtual(handle, FRAMES, dim, np.float16, per_frame=True)
            virtual(handle, MEAN, dim, np.float32, per_frame=False)
            if self._has_frame_vad:
                virtual(handle, FRAME_VAD, VAD_DIM, np.float32, per_frame=True)
                handle.create_dataset(
                    VAD, data=np.concatenate([p.vad for p in parts]).reshape(-1, VAD_DIM)
                )
            _write_skipped(handle, skipped)

        _replace_atomically(self.path, write)

    def _check_free_space(self, parts: list[_Part]) -> None:
        """The consolidated file needs about as much room as the parts: refuse before writing
        rather than fail (or crash inside HDF5) half-way."""
        sources = [
            self.path if self._source(p) == self.path.name else self.parts_dir / p.name
            for p in parts
        ]
        needed = sum(path.stat().st_size for path in sources) * 1.02 + (16 << 20)
        free = shutil.disk_usage(self.path.resolve().parent).free
        if free < needed:
            raise CacheError(
                f"cannot consolidate {self.path}: it needs about {needed / 2**30:.2f} GiB and "
                f"{free / 2**30:.2f} GiB are free; the committed clips stay in "
                f"{self.parts_dir.name} and {self.path.name} (readable); free space and re-run"
            )

    def finish(self) -> tuple[int, dict[str, str]]:
        """Consolidate all parts into one plain cache sorted by id; returns (clips, skipped).
        Releases the lock."""
        try:
            return self._consolidate()
        finally:
            self.close()

    def _consolidate(self) -> tuple[int, dict[str, str]]:
        self.refresh()
        parts, skipped = self._ordered()
        if self._finished_base is not None and len(self._parts) == 1:
            return len(parts[0].ids) if parts else 0, skipped  # nothing was added
        self._check_free_space(parts)
        dim = int(self.attrs[Attr.HIDDEN_SIZE])
        where = {clip_id: (part, row) for part in parts for row, clip_id in enumerate(part.ids)}
        ids = sorted(where)
        lengths = np.array([where[i][0].lengths[where[i][1]] for i in ids], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        target_row = {clip_id: k for k, clip_id in enumerate(ids)}

        def write(handle: h5py.File) -> None:
            handle.attrs.update({**self.attrs, Attr.COMPLETE: True})
            _write_clip_arrays(
                handle, ids, lengths, [where[i][0].num_samples[where[i][1]] for i in ids]
            )
            frames = handle.create_dataset(FRAMES, shape=(int(offsets[-1]), dim), dtype=np.float16)
            mean = handle.create_dataset(MEAN, shape=(len(ids), dim), dtype=np.float32)
            frame_vad = vad = None
            if self._has_frame_vad:
                frame_vad = handle.create_dataset(
                    FRAME_VAD, shape=(int(offsets[-1]), VAD_DIM), dtype=np.float32
                )
                vad = handle.create_dataset(VAD, shape=(len(ids), VAD_DIM), dtype=np.float32)
            for part in parts:
                source_path = (
                    self.path
                    if self._source(part) == self.path.name
                    else self.parts_dir / part.name
                )
                with h5py.File(source_path, "r") as source:
                    part_offsets = source[OFFSETS][()]
                    part_mean = source[MEAN][()]
                    part_vad = source[VAD][()] if vad is not None else None
                    for row, clip_id in enumerate(part.ids):  # clip by clip: memory stays small
                        k = target_row[clip_id]
                        rows = slice(part_offsets[row], part_offsets[row + 1])
                        frames[offsets[k] : offsets[k + 1]] = source[FRAMES][rows]
                        mean[k] = part_mean[row]
                        if frame_vad is not None:
                            frame_vad[offsets[k] : offsets[k + 1]] = source[FRAME_VAD][rows]
                            vad[k] = part_vad[row]
                    if part.name == BASE_PART:  # the finished cache being extended: its streams
                        carry_streams(source, part.ids, handle, ids)
                        carry_transcripts(source, part.ids, handle, ids)
            _write_skipped(handle, skipped)

        _replace_atomically(self.path, write)
        shutil.rmtree(self.parts_dir, ignore_errors=True)
        return len(ids), skipped
