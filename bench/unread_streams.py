"""What a stream that no head asks for costs stage two: ridge on the clip means and an LSTM on
the backbone's frames, trained from a synthetic cache with and without one extra frame stream
(2048 wide, 50 frames/s, 10 s a clip: 780 MB in float16), each run in a fresh process (peak
resident memory, seconds). Stage two reads only the streams a head's settings name, so the two
caches should cost the same.

python bench/unread_streams.py [--clips 400]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from common import report

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from conftest import write_labels, write_synthetic_cache  # noqa: E402

CHILD = r"""
import json, resource, sys, time
from click.testing import CliRunner
from emi_heads.cli.train import train_command
started = time.perf_counter()
result = CliRunner().invoke(train_command, sys.argv[1:])
assert result.exit_code == 0, result.output
print(json.dumps({"rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "seconds": time.perf_counter() - started}))
"""


def caches(work: Path, clips: int) -> None:
    """`plain.h5`, `extra.h5` (the same with an unread 2048-wide frame stream) and the train and
    valid labels in `work`."""
    from emi_features.cache.attach import attach_streams
    from emi_features.cache.streams import frame_stream

    rng = np.random.default_rng(0)
    ids = [f"{i:05d}" for i in range(clips)]
    latents = rng.uniform(0, 1, (clips, 6))
    plain = write_synthetic_cache(work / "plain.h5", ids, latents, dim=256)
    extra = Path(shutil.copy(plain, work / "extra.h5"))
    blocks = [rng.standard_normal((500, 2048)).astype(np.float16) for _ in ids]
    means = [block.astype(np.float32).mean(axis=0) for block in blocks]
    stream = frame_stream(
        blocks, 2048, {"source": "bench", "fingerprint": "unread", "frame_rate": 50.0}, means
    )
    attach_streams(extra, {"unread": stream}, overwrite=True)
    cut = clips * 3 // 4
    write_labels(work / "train.csv", ids[:cut], latents[:cut])
    write_labels(work / "valid.csv", ids[cut:], latents[cut:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=400)
    parser.add_argument("--write", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.write is not None:  # in a process of its own: its peak is not the runs' peak
        caches(args.write, args.clips)
        return
    work = Path(tempfile.mkdtemp(prefix="emi-bench-unread-"))
    subprocess.run(
        [sys.executable, __file__, "--write", str(work), "--clips", str(args.clips)], check=True
    )
    plain, extra = work / "plain.h5", work / "extra.h5"
    train, valid = work / "train.csv", work / "valid.csv"
    heads = {
        "ridge on clip means": ["--head", "ridge", "--inputs", "frame_stats,mean"],
        "lstm on the frames, 1 epoch": ["--head", "lstm", "--epochs", "1", "--min-steps", "0"],
    }
    rows = []
    for name, options in heads.items():
        for label, cache in (("without", plain), ("with the unread stream", extra)):
            command = [
                str(cache),
                "--train",
                str(train),
                "--valid",
                str(valid),
                *options,
                "--out",
                str(work / "run"),
                "--overwrite",
                "--quiet",
            ]
            done = subprocess.run(
                [sys.executable, "-c", CHILD, *command], capture_output=True, text=True, check=True
            )
            rows.append(
                {"head": name, "cache": label, **json.loads(done.stdout.strip().splitlines()[-1])}
            )
    report("unread_streams", rows, {"clips": args.clips, "stream_mb": extra.stat().st_size / 2**20})


if __name__ == "__main__":
    main()
