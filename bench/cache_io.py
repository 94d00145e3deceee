"""Cache I/O: write and full-read throughput of the HDF5 cache against a raw numpy write and
read of the same bytes, and cache size per hour of audio.

python bench/cache_io.py [--clips 1000] [--dim 1024]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from common import dataset_lengths, report

from emi_features.cache.reader import open_cache
from emi_features.cache.schema import ClipFeatures
from emi_features.cache.writer import CacheWriter
from emi_features.extraction.frames import frame_count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=7000.0, help="audio in the cache")
    parser.add_argument("--dim", type=int, default=1024)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="emi-bench-io-"))
    lengths = dataset_lengths(args.seconds, seed=1)
    rng = np.random.default_rng(0)
    clips = []
    for k, seconds in enumerate(lengths):
        count = frame_count(int(seconds * 16_000))
        frames = rng.standard_normal((count, args.dim), dtype=np.float32)
        clips.append(
            ClipFeatures(
                f"{k:05d}",
                frames,
                frames[:, :3].copy(),
                frames.mean(axis=0),
                frames[0, :3].copy(),
                int(seconds * 16_000),
            )
        )
    frame_bytes = sum(c.frames.size for c in clips) * 2  # as stored, float16

    started = time.perf_counter()
    writer = CacheWriter(
        work / "cache.h5",
        {"backbone": "bench", "backbone_fingerprint": "x", "hidden_size": args.dim},
    )
    part: list[ClipFeatures] = []
    for clip in clips:  # parts of 120 s of audio, as emi-extract commits them
        part.append(clip)
        if sum(c.num_samples for c in part) >= 120 * 16_000:
            writer.write_part(part, {})
            part = []
    if part:
        writer.write_part(part, {})
    parts_seconds = time.perf_counter() - started
    writer.finish()
    write_seconds = time.perf_counter() - started

    started = time.perf_counter()
    with open_cache(work / "cache.h5") as cache:
        frames = cache.read("frames")
    read_seconds = time.perf_counter() - started

    started = time.perf_counter()
    np.save(work / "frames.npy", frames)
    numpy_write = time.perf_counter() - started
    started = time.perf_counter()
    raw = np.load(work / "frames.npy")
    numpy_read = time.perf_counter() - started
    assert np.array_equal(raw, frames)

    size = (work / "cache.h5").stat().st_size
    hours = sum(lengths) / 3600
    megabytes = frame_bytes / 1e6
    rows = [
        {
            "operation": "write parts + index (crash-safe)",
            "seconds": parts_seconds,
            "MB_per_s": megabytes / parts_seconds,
        },
        {
            "operation": "write incl. consolidation",
            "seconds": write_seconds,
            "MB_per_s": megabytes / write_seconds,
        },
        {
            "operation": "numpy save (baseline)",
            "seconds": numpy_write,
            "MB_per_s": megabytes / numpy_write,
        },
        {
            "operation": "read /frames whole",
            "seconds": read_seconds,
            "MB_per_s": megabytes / read_seconds,
        },
        {
            "operation": "numpy load (baseline)",
            "seconds": numpy_read,
            "MB_per_s": megabytes / numpy_read,
        },
    ]
    print(
        f"{len(clips)} clips, {hours:.2f} h of audio, {megabytes:.0f} MB of float16 frames; "
        f"cache {size / 1e6:.0f} MB = {size / 1e6 / hours:.0f} MB per hour of audio "
        f"(D={args.dim}); reads are from the page cache on both sides"
    )
    report(
        "cache_io",
        rows,
        {
            "clips": len(clips),
            "hours": hours,
            "cache_bytes": size,
            "mb_per_hour": size / 1e6 / hours,
            "dim": args.dim,
        },
    )


if __name__ == "__main__":
    main()
