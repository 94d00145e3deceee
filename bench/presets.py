"""Each published preset against our defaults for the same head, on the same cache, 3 seeds:
validation mean r (mean ± sd over seeds) and seconds, with ridge as the reference.

Caches: the bundled sample (120 train / 60 valid clips) and a larger generated set in the same
layout (`--large-train` / `--large-valid` clips), both extracted with the weight-free `fbank`
backbone. The published LSTM (hidden 1027) is run on the bundled sample only: on this CPU it
takes about 8 s per epoch there and would take about 20 minutes a seed on the larger set.

python bench/presets.py [--seeds 3] [--large-train 600] [--large-valid 200]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from pathlib import Path

from common import report

from emi_features.extract import extract
from emi_features.sample_data import generate_sample
from emi_heads.config import HeadConfig, TrainConfig
from emi_heads.presets import PRESETS
from emi_heads.train import train

BUNDLED = Path(__file__).resolve().parents[1] / "data" / "sample"
# (label, head, preset or None); our defaults are the config defaults of the head
RUNS = [
    ("linear (ridge)", "linear", None),
    ("lstm, our defaults", "lstm", None),
    ("lstm-2024 preset", "lstm", "lstm-2024"),
    ("concat, our defaults", "concat", None),
    ("concat-2026 preset", "concat-frames", "concat-2026"),
]


def configs(head: str, preset: str | None, seed: int) -> tuple[HeadConfig, TrainConfig]:
    if preset is None:
        return HeadConfig(head), TrainConfig(seed=seed)
    published = PRESETS[preset]
    return HeadConfig(**published.head), TrainConfig(**{**published.train, "seed": seed})


def measure(root: Path, cache: Path, work: Path, seeds: int, skip: set[str]) -> list[dict]:
    rows = []
    for label, head, preset in RUNS:
        if label in skip:
            continue
        scores, seconds = [], []
        for seed in range(seeds):
            head_config, train_config = configs(head, preset, seed)
            started = time.perf_counter()
            result = train(
                cache,
                [root / "train_split.csv"],
                root / "valid_split.csv",
                work / f"{label}-{seed}".replace(" ", "_").replace(",", ""),
                head_config,
                train_config,
                device="cpu",
                progress=False,
                preset=preset,
            )
            seconds.append(time.perf_counter() - started)
            scores.append(result.valid_r)
            if head == "linear":
                break  # ridge has no seed
        rows.append(
            {
                "data": root.name,
                "run": label,
                "valid_r_mean": statistics.mean(scores),
                "valid_r_sd": statistics.stdev(scores) if len(scores) > 1 else 0.0,
                "seeds": len(scores),
                "seconds_per_run": statistics.mean(seconds),
            }
        )
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--large-train", type=int, default=600)
    parser.add_argument("--large-valid", type=int, default=200)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    work = Path(tempfile.mkdtemp(prefix="emi-bench-presets-"))
    large = generate_sample(
        work / "large", train=args.large_train, valid=args.large_valid, test=0, seed=11,
        long_seconds=20.0,
    )  # fmt: skip
    rows = []
    for root, skip in ((BUNDLED, set()), (large, {"lstm-2024 preset"})):
        cache = work / f"{root.name}.h5"
        extract(root, model="fbank", out=cache, progress=False, workers=2)
        rows += measure(root, cache, work / root.name, args.seeds, skip)
    report("presets", rows, {"seeds": args.seeds, "large": [args.large_train, args.large_valid]})


if __name__ == "__main__":
    main()
