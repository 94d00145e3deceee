"""How extraction cost grows: the full-size backbone on 1x, 2x and 4x the audio.
(Training at 1x, 2x, 4x the clips is in bench/training.py.)

python bench/scaling.py [--seconds 30] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from common import dataset_lengths, report, save_full_size_model, write_clips

from emi_features.extraction.runner import extract


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="audio at 1x")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="emi-bench-scale-"))
    model = save_full_size_model(work / "model")
    rows = []
    for factor in (1, 2, 4):
        folder = write_clips(
            work / f"x{factor}", dataset_lengths(args.seconds * factor, seed=factor)
        )
        result = extract(
            folder,
            model=str(model),
            out=work / f"x{factor}.h5",
            device=args.device,
            workers=2,
            progress=False,
        )
        rows.append(
            {
                "data": f"{factor}x",
                "audio_seconds": result.processed_seconds,
                "wall_seconds": result.wall_seconds,
                "audio_s_per_s": result.processed_seconds / result.wall_seconds,
            }
        )
    for row in rows:
        row["seconds_vs_1x"] = row["wall_seconds"] / rows[0]["wall_seconds"]
        row["audio_vs_1x"] = row["audio_seconds"] / rows[0]["audio_seconds"]
    report("scaling", rows, {"device": args.device})


if __name__ == "__main__":
    main()
