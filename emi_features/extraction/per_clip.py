"""The runner every per-clip modality shares (vision, eGeMAPS, ...): find the clips, take this
rank's share under torchrun, skip what the cache holds, encode clip by clip with a progress bar
and ETA, commit every `CLIPS_PER_PART` clips as one part (what a kill can cost), record each
skip with its reason, and let rank 0 consolidate. The writer holds the cache's lock throughout.
"""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

from emi_features.cache.attach import refuse_held
from emi_features.cache.schema import SAMPLE_RATE
from emi_features.cache.writer import CacheWriter
from emi_features.core.dataset import find_clips
from emi_features.core.devices import default_device
from emi_features.extraction.config import ExtractConfig
from emi_features.extraction.distributed import Ranks
from emi_features.extraction.modality import Modality, SkipClip

log = logging.getLogger(__name__)
CLIPS_PER_PART = 16


def run_per_clip(
    modality: Modality,
    input_path: str | Path,
    *,
    out: str | Path,
    config: ExtractConfig,
    progress: bool = True,
) -> Any:
    """Every clip of INPUT encoded by `modality` into the cache `out`; an `ExtractResult`."""
    from emi_features.extraction.runner import ExtractResult

    started = time.perf_counter()
    ranks = Ranks.from_environment(config.device or default_device())
    source = "video" if modality.source == "video" else config.source  # audio: any track
    clips = find_clips(Path(input_path), split=config.split, source=source)
    refuse_held(Path(out))  # before the model loads
    encoder = modality.open(config, ranks.device)
    writer = ranks.open_writer(
        lambda **kw: CacheWriter(
            out, encoder.attrs, overwrite=config.overwrite, retry_skipped=config.retry_skipped, **kw
        )
    )
    processed, seconds = 0, 0.0
    with contextlib.closing(writer):
        done = writer.done_ids
        ranks.barrier()  # every rank must see the same finished set before any rank writes
        todo = [clip for clip in clips if clip.id not in done]
        mine = todo[ranks.rank :: ranks.world_size]
        log.info(
            "%d clips, %d already in %s; this %s runs %d clips",
            len(clips),
            len(clips) - len(todo),
            out,
            ranks.describe(),
            len(mine),
        )
        bar = tqdm(
            total=len(mine),
            unit="clip",
            desc=modality.name,
            disable=not progress or None,
            dynamic_ncols=True,
        )
        with bar:
            for first in range(0, len(mine), CLIPS_PER_PART):
                records, skipped = _encode_part(encoder, mine[first : first + CLIPS_PER_PART], bar)
                writer.write_part(records, skipped)
                processed += len(records)
                seconds += sum(record.num_samples for record in records) / SAMPLE_RATE
        encoder.close()
        written, skipped_all = ranks.finish(writer)
        totals = (int(ranks.sum(processed)), ranks.sum(seconds), time.perf_counter() - started)
        result = ExtractResult(
            Path(out), written, skipped_all, *totals, rank=ranks.rank, medium=modality.source
        )
    ranks.close()
    return result


def _encode_part(encoder: Any, clips: list, bar: tqdm) -> tuple[list, dict[str, str]]:
    """One part's clips encoded: the records, and the skipped clips with their reasons."""
    records, skipped = [], {}
    for clip in clips:
        try:
            records.append(encoder.encode(clip))
        except SkipClip as reason:
            log.warning("skip %s: %s", clip.id, reason)
            skipped[clip.id] = str(reason)
        bar.update()
    return records, skipped


def run_modality(
    modality: Modality,
    input_path: str | Path,
    *,
    out: str | Path,
    config: ExtractConfig,
    progress: bool = True,
) -> Any:
    """Every clip of INPUT into the cache `out` (resumable): by the modality's own runner
    (`run`, as audio's batched one), else by the shared per-clip runner; an `ExtractResult`."""
    own = getattr(modality, "run", None)
    if own is not None:
        return own(input_path, out=out, config=config, progress=progress)
    return run_per_clip(modality, input_path, out=out, config=config, progress=progress)
