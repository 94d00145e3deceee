"""`emi-extract INPUT --modality M --model MODEL --out CACHE.h5 --stream NAME`: any modality
(another backbone or layer, the face, eGeMAPS) as the stream `/features/NAME` of a finished cache.

The modality runs through its ordinary extraction into a side cache `CACHE.h5.streams/NAME.h5`
(so it is resumable and crash-safe exactly like the main extraction, and keeps its own grid),
then the side cache is attached to the main cache by id — frame level with its own frame rate
and clip mean, or with `pool="mean"` only each clip's mean and standard deviation — and removed.
An interrupted run resumes the side cache; the main cache is replaced only by the attachment's
atomic rename.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from emi_features.cache.attach import (
    attach_streams,
    finished_ids,
    ready_to_rewrite,
    refuse_existing,
)
from emi_features.cache.reader import open_cache
from emi_features.cache.schema import FRAMES, MEAN, Attr, frames_per_second
from emi_features.cache.streams import Stream, check_stream_name, clip_stream, frame_stream
from emi_features.core.logs import summarise_ids
from emi_features.extraction.config import ExtractConfig
from emi_features.extraction.per_clip import run_modality
from emi_features.extraction.registry import get_modality, modality_class

log = logging.getLogger(__name__)


def side_cache(cache: Path, name: str) -> Path:
    return cache.with_name(f"{cache.name}.streams") / f"{name}.h5"


def extract_stream(
    input_path: str | Path,
    *,
    out: str | Path,
    name: str,
    config: ExtractConfig,
    pool: str = "frames",
    progress: bool = True,
) -> Any:
    """Run the modality of `config` over INPUT into the stream `name` of the cache `out`."""
    cache = Path(out)
    check_stream_name(name)
    ready_to_rewrite(cache)  # before the side extraction, not after it
    ids = finished_ids(cache)
    refuse_existing(cache, [name], config.overwrite)
    side = side_cache(cache, name)
    side.parent.mkdir(exist_ok=True)
    result = run_modality(
        get_modality(config.modality), input_path, out=side, config=config, progress=progress
    )
    if result.rank != 0:
        return result
    stream = stream_from_side(side, ids, pool, config)
    attach_streams(cache, {name: stream}, overwrite=True)
    side.unlink(missing_ok=True)
    for leftover in side.parent.glob(f".{side.name}.*"):  # its lock file
        leftover.unlink(missing_ok=True)
    if not any(side.parent.iterdir()):
        side.parent.rmdir()
    log.info("%s: /features/%s attached (%s, width %d)", cache, name, stream.kind, stream.dim)
    return result


def stream_from_side(side: Path, ids: list[str], pool: str, config: ExtractConfig) -> Stream:
    """The side cache's clips as a stream aligned to the main cache's `ids`: frames with their
    own frame rate and clip means, or (`pool="mean"`, or a clip-level modality) one vector per
    clip."""
    with open_cache(side) as extra:
        where = {clip_id: row for row, clip_id in enumerate(extra.ids)}
        outside = [i for i in extra.ids if i not in set(ids)]
        if outside:
            log.warning(
                "%d clip(s) of this extraction are not in the cache, left out: %s",
                len(outside),
                summarise_ids(outside),
            )
        attrs = {
            "source": " ".join(
                [
                    "emi-extract --modality",
                    config.modality,
                    *(
                        ["--model", config.model]
                        if modality_class(config.modality).default_model
                        else []
                    ),
                ]
            ),
            "backbone": extra.attrs.get(Attr.BACKBONE),
            "fingerprint": extra.fingerprint,
            "layer": extra.attrs.get(Attr.LAYER),
            "producer": "extract",  # with the modality and its settings: what makes it again
            "modality": config.modality,  # with its settings: what `emi predict --media` re-runs
            "settings": json.dumps(asdict(config.settings)),
        }
        grid = (
            Attr.FRAME_HOP,
            Attr.SAMPLE_RATE,
            Attr.CROP,
            "layers",
            Attr.RUNTIME,
            Attr.PRECISION,
        )  # those it has
        attrs.update({key: extra.attrs[key] for key in grid if key in extra.attrs})
        offsets, data, means = extra.offsets, extra.dataset(FRAMES), extra.read(MEAN)
        rows = [where.get(i) for i in ids]
        blocks = [None if r is None else data[offsets[r] : offsets[r + 1]] for r in rows]
        row_means = [None if r is None else means[r] for r in rows]
        if extra.attrs.get("clip_level"):
            return clip_stream(row_means, extra.hidden_size, attrs)
        if pool == "mean":
            pooled = [
                None if b is None else np.concatenate([m, b.astype(np.float32).std(axis=0)])
                for b, m in zip(blocks, row_means, strict=True)
            ]
            return clip_stream(pooled, 2 * extra.hidden_size, {**attrs, "pooled": "mean,std"})
        attrs["frame_rate"] = frames_per_second(extra.attrs)
        return frame_stream(blocks, extra.hidden_size, attrs, row_means)
