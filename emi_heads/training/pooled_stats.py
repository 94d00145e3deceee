"""Per-clip mean and standard deviation of frames, computed once per cache and crop.

Reading every frame of a large cache costs far more than training the clip-level heads, so the
statistics of a whole cache are kept in a sidecar file beside it
(`CACHE.h5.frame-stats-<group>-<crop>.npy`), tied to the cache's fingerprint, size and
modification time; later runs on the same cache skip the frames entirely. A cache folder that
cannot be written only costs the recomputation.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np
import torch

from emi_features.cache.atomic import atomic_path
from emi_features.cache.reader import FeatureCache

log = logging.getLogger(__name__)
BLOCK_BYTES = 64 << 20  # float32 bytes of frames per block: memory bounded by the width too


def block_rows(width: int) -> int:
    """Frames per block of a `width`-wide group: BLOCK_BYTES of float32 (at least one row);
    pooling a block holds about four such copies (the rows, centred, squared, the read)."""
    return max(1, BLOCK_BYTES // (4 * max(1, width)))


def pooled_stats(frames: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Consecutive clips' frames (F, d) with `lengths` (n,) summing to F -> (n, 2d) float32:
    each clip's mean, then its standard deviation (two passes, float32)."""
    rows = torch.from_numpy(np.ascontiguousarray(frames)).float()
    counts = torch.from_numpy(np.asarray(lengths, dtype=np.int64))
    segment = torch.repeat_interleave(torch.arange(len(counts)), counts)
    size = (len(counts), rows.shape[1])
    mean = torch.zeros(size).index_add_(0, segment, rows) / counts[:, None].clamp(min=1)
    centred = rows - mean[segment]
    variance = torch.zeros(size).index_add_(0, segment, centred * centred)
    std = (variance / counts[:, None].clamp(min=1)).sqrt()
    return torch.cat([mean, std], dim=1).numpy()


def clip_blocks(lengths: np.ndarray, limit: int) -> list[tuple[int, int]]:
    """Consecutive clips grouped into blocks [first, last) of at most `limit` frames (a longer
    clip is a block of its own): how every pooling reads a group, a block at a time."""
    blocks, first = [], 0
    ends = np.cumsum(lengths)
    while first < len(lengths):
        start = ends[first - 1] if first else 0
        last = max(first + 1, int(np.searchsorted(ends, start + limit, side="right")))
        blocks.append((first, last))
        first = last
    return blocks


def _compute(dataset, offsets: np.ndarray, max_frames: int | None) -> np.ndarray:
    """Stats of every clip, reading the group in contiguous blocks of whole clips."""
    count = len(offsets) - 1
    out = np.zeros((count, 2 * dataset.shape[1]), dtype=np.float32)
    for first, last in clip_blocks(np.diff(offsets), block_rows(dataset.shape[1])):
        block = dataset[offsets[first] : offsets[last]]
        lengths = np.diff(offsets[first : last + 1])
        if max_frames is not None:  # keep each clip's first max_frames rows
            within = np.arange(len(block)) - np.repeat(
                offsets[first:last] - offsets[first], lengths
            )
            block = block[within < max_frames]
            lengths = np.minimum(lengths, max_frames)
        out[first:last] = pooled_stats(block, lengths)
    return out


def cache_frame_stats(cache: FeatureCache, group: str, max_frames: int | None) -> np.ndarray:
    """(N, 2d) float32 in cache order: mean and std of each clip's first `max_frames` rows of
    a frame group (`frames` or `frame_vad`), from the sidecar when it is current."""
    stat = cache.path.stat()
    key = f"{cache.fingerprint}|{stat.st_size}|{stat.st_mtime_ns}|{len(cache)}"
    tag = hashlib.blake2b(key.encode(), digest_size=6).hexdigest()
    crop = "all" if max_frames is None else str(max_frames)
    sidecar = cache.path.with_name(f"{cache.path.name}.frame-stats-{group}-{crop}-{tag}.npy")
    if sidecar.is_file():
        stats = np.load(sidecar)
        if stats.shape[0] == len(cache):
            return stats
    log.info("pooling %s of %d clips (once per cache: kept in %s)", group, len(cache), sidecar.name)
    stats = _compute(cache.dataset(group), cache.offsets, max_frames)
    try:
        with atomic_path(sidecar) as temporary, temporary.open("wb") as handle:
            np.save(handle, stats)
        for stale in Path(cache.path.parent).glob(
            f"{cache.path.name}.frame-stats-{group}-{crop}-*"
        ):
            if stale != sidecar:
                stale.unlink(missing_ok=True)
    except OSError as error:  # a read-only folder (a WriteError): computed again next time
        log.debug("frame stats not kept beside the cache: %s", error)
    return stats
