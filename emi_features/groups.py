"""`emi-extract INPUT --model MODEL --out CACHE.h5 --stream NAME`: another backbone (or layer) as
the stream `/features/NAME` of an existing cache.

The backbone runs through the ordinary extraction into a side cache `CACHE.h5.streams/NAME.h5`
(so it is resumable and crash-safe exactly like the main extraction, and keeps its own grid),
then the side cache is attached to the main cache by id — frame level with its own frame rate
and clip mean, or with `pool="mean"` only each clip's mean and standard deviation — and removed.
An interrupted run resumes the side cache; the main cache is replaced only by the attachment's
atomic rename.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from emi_features.config import ExtractConfig
from emi_features.import_features import ready_to_rewrite, rewrite_with_stream
from emi_features.locks import ExclusiveLock, LockedError
from emi_features.logs import summarise_ids
from emi_features.reader import CacheError, open_cache
from emi_features.schema import FRAMES, MEAN, Attr, frames_per_second
from emi_features.streams import CLIP, FRAME, Stream, check_stream_name

log = logging.getLogger(__name__)


def side_cache(cache: Path, group: str) -> Path:
    return cache.with_name(f"{cache.name}.streams") / f"{group}.h5"


def extract_group(
    input_path: str | Path,
    *,
    out: str | Path,
    group: str,
    config: ExtractConfig,
    pool: str = "frames",
    progress: bool = True,
) -> Any:
    """Extract `config.model` over INPUT into the stream `group` of the cache `out`."""
    from emi_features.extract import extract

    cache = Path(out)
    check_stream_name(group)
    ready_to_rewrite(cache)  # before the side extraction, not after it
    with open_cache(cache) as main:
        if not main.complete:
            raise CacheError(f"{cache}: its extraction is not finished; finish it first")
        ids = list(main.ids)
        if group in main.streams() and not config.overwrite:
            raise CacheError(f"{cache} has a stream {group!r} already; --overwrite replaces it")
    side = side_cache(cache, group)
    side.parent.mkdir(exist_ok=True)
    if config.modality == "vision":
        from emi_features.vision import extract_vision

        result = extract_vision(input_path, out=side, config=config, progress=progress)
    else:
        result = extract(input_path, out=side, config=config, progress=progress)
    if result.rank != 0:
        return result
    stream = _stream_from_side(side, ids, pool, config)
    try:
        lock = ExclusiveLock(cache, f"cache {cache}").acquire()
    except LockedError as error:
        raise CacheError(str(error)) from None
    try:
        rewrite_with_stream(cache, group, stream, overwrite=True)
    finally:
        lock.release()
    side.unlink(missing_ok=True)
    for leftover in side.parent.glob(f".{side.name}.*"):  # its lock file
        leftover.unlink(missing_ok=True)
    if not any(side.parent.iterdir()):
        side.parent.rmdir()
    log.info("%s: /features/%s attached (%s, width %d)", cache, group, stream.kind, stream.dim)
    return result


def _stream_from_side(side: Path, ids: list[str], pool: str, config: ExtractConfig) -> Stream:
    """The side cache's clips as a stream aligned to the main cache's `ids`."""
    with open_cache(side) as extra:
        where = {clip_id: row for row, clip_id in enumerate(extra.ids)}
        outside = [i for i in extra.ids if i not in set(ids)]
        if outside:
            log.warning("%d clip(s) of this extraction are not in the cache, left out: %s",
                        len(outside), summarise_ids(outside))  # fmt: skip
        present = np.array([i in where for i in ids], dtype=bool)
        attrs = {
            "source": f"emi-extract --modality {config.modality} --model {config.model}",
            "backbone": extra.attrs.get(Attr.BACKBONE),
            "fingerprint": extra.fingerprint,
            "layer": extra.attrs.get(Attr.LAYER),
        }
        grid = (Attr.FRAME_HOP, Attr.SAMPLE_RATE, Attr.CROP)  # those the side cache has
        attrs.update({key: extra.attrs[key] for key in grid if key in extra.attrs})
        dim = extra.hidden_size
        offsets = extra.offsets
        frames_data: h5py.Dataset = extra.dataset(FRAMES)
        means = extra.read(MEAN)
        rows = [where.get(i) for i in ids]
        if pool == "mean":
            values = np.zeros((len(ids), 2 * dim), dtype=np.float32)
            for k, row in enumerate(rows):
                if row is not None:
                    block = frames_data[offsets[row] : offsets[row + 1]].astype(np.float32)
                    values[k] = np.concatenate([means[row], block.std(axis=0)])
            attrs.update(kind=CLIP, dim=2 * dim, pooled="mean,std")
            return Stream(CLIP, present, values=values, attrs=attrs)
        lengths = np.array([0 if r is None else offsets[r + 1] - offsets[r] for r in rows])
        new_offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        frames = np.zeros((int(new_offsets[-1]), dim), dtype=np.float16)
        mean = np.zeros((len(ids), dim), dtype=np.float32)
        for k, row in enumerate(rows):
            if row is not None:
                frames[new_offsets[k] : new_offsets[k + 1]] = frames_data[
                    offsets[row] : offsets[row + 1]
                ]
                mean[k] = means[row]
        attrs.update(kind=FRAME, dim=dim, frame_rate=frames_per_second(extra.attrs))
        return Stream(FRAME, present, frames=frames, offsets=new_offsets, mean=mean, attrs=attrs)
