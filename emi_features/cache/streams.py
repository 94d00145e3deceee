"""Feature streams beside the main backbone: `/features/<name>/`, keyed by id.

A stream is aligned to `/ids`: row i belongs to clip `ids[i]`, and `present` (N,) bool says
which clips the stream has (a clip it lacks is recorded as missing, never shifted). Two kinds:

- clip: `values` (N, D) float32, one vector per clip;
- frame: `frames` (F, D) float16 with its own `offsets` (N+1,) and `frame_rate` (frames per
  second), plus `mean` (N, D) float32, each clip's mean frame.

Attributes: `kind`, `dim`, `fingerprint` (what identifies the features: a digest of the source
or the backbone), `source`, and `frame_rate` for frame streams. Streams survive consolidation
and the extension of a cache with another split (`carry_streams`). Light: h5py and numpy.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

import h5py
import numpy as np

from emi_features.cache.schema import FEATURES, CacheError

CLIP, FRAME = "clip", "frame"


@dataclass
class Stream:
    """A stream held in memory, rows in the order of `ids` (missing rows are zeros)."""

    kind: str
    present: np.ndarray  # (N,) bool
    values: np.ndarray | None = None  # clip: (N, D) float32
    frames: np.ndarray | None = None  # frame: (F, D) float16
    offsets: np.ndarray | None = None  # frame: (N + 1,) int64
    mean: np.ndarray | None = None  # frame: (N, D) float32
    attrs: dict[str, Any] | None = None

    @property
    def dim(self) -> int:
        return int((self.values if self.kind == CLIP else self.mean).shape[1])


def clip_stream(rows: list[np.ndarray | None], dim: int, attrs: dict[str, Any]) -> Stream:
    """A clip stream from one (D,) vector per row of the cache (None: the clip is missing)."""
    present = np.array([row is not None for row in rows], dtype=bool)
    values = np.zeros((len(rows), dim), dtype=np.float32)
    for k, row in enumerate(rows):
        if row is not None:
            values[k] = row
    return Stream(CLIP, present, values=values, attrs={**attrs, "kind": CLIP, "dim": int(dim)})


def frame_stream(
    blocks: list[np.ndarray | None],
    dim: int,
    attrs: dict[str, Any],
    means: list[np.ndarray | None] | None = None,
) -> Stream:
    """A frame stream from one (T, D) block per row of the cache (None: the clip is missing):
    frames (F, D) float16, offsets (N+1,), and each clip's mean frame (given, or computed)."""
    present = np.array([block is not None for block in blocks], dtype=bool)
    lengths = np.array([0 if b is None else len(b) for b in blocks], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    frames = np.zeros((int(offsets[-1]), dim), dtype=np.float16)
    mean = np.zeros((len(blocks), dim), dtype=np.float32)
    for k, block in enumerate(blocks):
        if block is not None:
            frames[offsets[k] : offsets[k + 1]] = block
            given = None if means is None else means[k]
            mean[k] = np.asarray(block, np.float32).mean(axis=0) if given is None else given
    attrs = {**attrs, "kind": FRAME, "dim": int(dim)}
    return Stream(FRAME, present, frames=frames, offsets=offsets, mean=mean, attrs=attrs)


def stream_from_arrays(
    ids: list[str], arrays: dict[str, np.ndarray], kind: str, attrs: dict[str, Any]
) -> Stream:
    """A stream for `ids` from per-id arrays ((D,) per clip or (T, D) per frame); ids the
    arrays lack are missing. The fingerprint digests the ids and values."""
    dim = next(iter(arrays.values())).shape[-1]
    digest = hashlib.blake2b(digest_size=16)
    for clip_id in sorted(arrays):
        digest.update(clip_id.encode())
        digest.update(np.ascontiguousarray(arrays[clip_id], dtype=np.float32).data)
    attrs = {**attrs, "fingerprint": "blake2b:" + digest.hexdigest()}
    rows = [arrays.get(clip_id) for clip_id in ids]
    return (clip_stream if kind == CLIP else frame_stream)(rows, dim, attrs)


def write_stream(handle: h5py.File, name: str, stream: Stream) -> None:
    group = handle.require_group(FEATURES).create_group(name)
    group.attrs.update(stream.attrs or {})
    group.create_dataset("present", data=stream.present)
    if stream.kind == CLIP:
        group.create_dataset("values", data=stream.values)
    else:
        group.create_dataset("frames", data=stream.frames)
        group.create_dataset("offsets", data=stream.offsets)
        group.create_dataset("mean", data=stream.mean)


STREAM_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def check_stream_name(name: str) -> None:
    """One line unless `name` can be a stream's name, which `--inputs features/NAME` selects:
    letters, digits, '-', '_' and '.', starting with a letter or digit."""
    if not STREAM_NAME.match(name or ""):
        raise CacheError(
            f"{name!r} is not a stream name: letters, digits, '-', '_' and '.', starting with a "
            f"letter or digit (--inputs features/NAME must select it)"
        )


@dataclass
class StreamView:
    """A stream as stored, not read: its kind and attributes, and what reads its rows — the
    clip values (N, D), or the frames (F, D) with their offsets (N+1,) — as h5py datasets."""

    kind: str
    attrs: dict[str, Any]
    values: Any = None
    frames: Any = None
    offsets: np.ndarray | None = None
    mean: Any = None  # frame streams: (N, D), each clip's mean frame (absent in old caches)
    present: Any = None  # (N,) bool dataset; None: every clip (an older plain array)


def view_stream(handle: h5py.File, name: str) -> StreamView:
    """The stream /features/NAME as a `StreamView`; an older plain per-clip array counts as a
    clip stream."""
    item = handle[FEATURES][name]
    if isinstance(item, h5py.Dataset):
        return StreamView(CLIP, {"kind": CLIP}, values=item)
    attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in item.attrs.items()}
    present = item.get("present")
    if attrs.get("kind", FRAME if "frames" in item else CLIP) == CLIP:
        return StreamView(CLIP, attrs, values=item["values"], present=present)
    return StreamView(
        FRAME,
        attrs,
        frames=item["frames"],
        present=present,
        mean=item.get("mean"),
        offsets=item["offsets"][()].astype(np.int64),
    )


def read_stream(handle: h5py.File, name: str, count: int) -> Stream:
    """A stream as stored, read whole (see `view_stream`); a clip without a `present` mask (an
    older cache) counts as present."""
    view = view_stream(handle, name)
    present = np.ones(count, dtype=bool) if view.present is None else view.present[()]
    if view.kind == CLIP:
        values = np.asarray(view.values[()], dtype=np.float32)
        return Stream(CLIP, present, values=values, attrs=view.attrs)
    mean = None if view.mean is None else view.mean[()]
    return Stream(
        FRAME, present, frames=view.frames[()], offsets=view.offsets, mean=mean, attrs=view.attrs
    )


def stream_problems(handle: h5py.File, name: str, count: int) -> list[str]:
    """What is wrong with the stream /features/NAME of a cache of `count` clips (empty when
    nothing): the one check every reader runs when a cache is opened, so that a received cache
    fails there, in one line, and never later in training."""
    item = handle[FEATURES][name]
    where = f"/{FEATURES}/{name}"
    if isinstance(item, h5py.Dataset):  # an older plain per-clip array
        ok = item.ndim == 2 and item.shape[0] == count and item.shape[1] > 0
        return [] if ok else [f"{where} has shape {item.shape}, expected ({count}, D)"]
    kind = item.attrs.get("kind", FRAME if "frames" in item else CLIP)
    kind = kind.decode() if isinstance(kind, bytes) else kind
    problems = []
    present = item.get("present")
    if present is None or present.shape != (count,):
        problems.append(f"{where}/present has {_rows(present)} rows, expected {count}")
    if kind == CLIP:
        values = item.get("values")
        if values is None or values.ndim != 2 or values.shape[0] != count or not values.shape[1]:
            problems.append(f"{where}: kind clip needs values of shape ({count}, D)")
        return problems
    if kind != FRAME:
        return [*problems, f"{where}: kind {kind!r} is neither clip nor frame"]
    rate = item.attrs.get("frame_rate", 1.0)
    if not (isinstance(rate, (int, float, np.number)) and np.isfinite(rate) and rate > 0):
        problems.append(f"{where}: frame_rate {rate!r} must be a positive number")
    offsets, frames = item.get("offsets"), item.get("frames")
    if offsets is None or frames is None or frames.ndim != 2 or not frames.shape[1]:
        return [*problems, f"{where}: kind frame needs frames (F, D) and offsets (N+1)"]
    bounds = offsets[()].astype(np.int64)
    if bounds.shape != (count + 1,):
        problems.append(f"{where}/offsets has {len(bounds)} rows, expected {count + 1}")
    elif bounds[0] != 0 or (np.diff(bounds) < 0).any() or bounds[-1] != frames.shape[0]:
        problems.append(
            f"{where}/offsets must start at 0, never decrease and end at the "
            f"{frames.shape[0]} frames"
        )
    return problems


def _rows(dataset) -> int:
    return 0 if dataset is None or not dataset.shape else int(dataset.shape[0])


def stream_names(handle: h5py.File) -> list[str]:
    return sorted(handle[FEATURES]) if FEATURES in handle else []


def reorder(stream: Stream, old_ids: list[str], new_ids: list[str]) -> Stream:
    """The stream for `new_ids`: rows of ids it had move with them, new ids are missing."""
    where = {clip_id: row for row, clip_id in enumerate(old_ids)}
    rows = [where.get(clip_id) for clip_id in new_ids]
    present = np.array([r is not None and bool(stream.present[r]) for r in rows], dtype=bool)
    if stream.kind == CLIP:
        values = np.zeros((len(new_ids), stream.dim), dtype=np.float32)
        for k, row in enumerate(rows):
            if row is not None:
                values[k] = stream.values[row]
        return Stream(CLIP, present, values=values, attrs=stream.attrs)
    spans = [(0, 0) if r is None else (stream.offsets[r], stream.offsets[r + 1]) for r in rows]
    lengths = np.array([b - a for a, b in spans], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    frames = np.concatenate(
        [stream.frames[a:b] for a, b in spans] or [np.zeros((0, stream.dim), np.float16)]
    )
    mean = np.zeros((len(new_ids), stream.dim), dtype=np.float32)
    for k, row in enumerate(rows):
        if row is not None and stream.mean is not None:
            mean[k] = stream.mean[row]
    return Stream(FRAME, present, frames=frames, offsets=offsets, mean=mean, attrs=stream.attrs)


def carry_streams(source: h5py.File, old_ids: list[str], target: h5py.File, new_ids: list[str]):
    """Copy every stream of `source` into `target`, realigned from `old_ids` to `new_ids`."""
    for name in stream_names(source):
        write_stream(
            target, name, reorder(read_stream(source, name, len(old_ids)), old_ids, new_ids)
        )
