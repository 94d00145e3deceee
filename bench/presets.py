"""Each published preset against our defaults for the same head and against the published
training loop, on the same cache, 3 seeds: validation mean r (mean ± sd over seeds) and seconds,
with ridge as the baseline.

Caches: the bundled sample (120 train / 60 valid clips) and a larger generated set in the same
layout (`--large-train` / `--large-valid` clips), both extracted with the weight-free `fbank`
backbone. The published LSTM (hidden 1027) is run on the bundled sample only: on this CPU it
takes about 8 s per epoch there and would take about 20 minutes a seed on the larger set.

"concat-2026 published loop" is `--reference` (default: the line-cited re-implementation in
../shared/reference/seed2_head.py) fed the same cache's frames, set as the public code runs its
audio branch: the VAD module on it and its auxiliary weight 0.35.

python bench/presets.py [--seeds 3] [--large-train 600] [--large-valid 200] [--runs LABEL,...]
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from common import report

from emi_features.cache.reader import open_cache
from emi_features.extraction.runner import extract
from emi_features.sample.generate import generate_sample
from emi_heads.heads.settings import HeadConfig, head_config
from emi_heads.training.config import TrainConfig
from emi_heads.training.labels import read_labels
from emi_heads.training.presets import PRESETS
from emi_heads.training.train import train

BUNDLED = Path(__file__).resolve().parents[1] / "data" / "sample"
# (label, head, preset or None); our defaults are the config defaults of the head
RUNS = [
    ("ridge", "ridge", None),
    ("lstm, our defaults", "lstm", None),
    ("lstm-2024 preset", "lstm", "lstm-2024"),
    ("concat, our defaults", "concat", None),
    ("concat-2026 preset", "concat-frames", "concat-2026"),
    ("concat-2026 published loop", "reference", "concat-2026"),
    ("seed2_head.py with its defaults", "reference-defaults", "concat-2026"),
]
REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "seed2_head.py"


def load_reference(path: Path):
    spec = importlib.util.spec_from_file_location("published_loop", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def reference_run(root: Path, cache: Path, seed: int, reference, published: bool) -> float:
    """The published loop on the cache's frames: best valid mean r of its EMA weights. With
    `published` the audio branch is set as the public code sets it (VAD module, auxiliary
    weight 0.35); else the script's defaults for one branch named `frames` (no VAD module, the
    whole auxiliary weight)."""
    splits = {}
    with open_cache(cache) as features:
        for split in ("train", "valid"):
            labels = read_labels(root / f"{split}_split.csv")
            frames = [features.clip("frames", i).astype(np.float32) for i in labels.ids]
            splits[split] = ({"audio" if published else "frames": frames}, labels.values)
    settings = {"vad_branches": ["audio"], "aux_weights": [0.35]} if published else {}
    _, info = reference.fit_predict(
        *splits["train"],
        *splits["valid"],
        seed=seed,
        verbose=False,
        return_info=True,
        **settings,
    )
    return float(info["best_valid_r"])


def configs(head: str, preset: str | None, seed: int) -> tuple[HeadConfig, TrainConfig]:
    if preset is None:
        return head_config(head), TrainConfig(seed=seed)
    published = PRESETS[preset]
    return head_config(**published.head), TrainConfig(**{**published.train, "seed": seed})


def measure(
    root: Path, cache: Path, work: Path, seeds: int, runs: list[str], reference
) -> list[dict]:
    rows = []
    for label, head, preset in RUNS:
        if label not in runs:
            continue
        scores, seconds = [], []
        for seed in range(seeds):
            started = time.perf_counter()
            if head.startswith("reference"):
                published = head == "reference"
                scores.append(reference_run(root, cache, seed, reference, published))
                seconds.append(time.perf_counter() - started)
                continue
            head_config, train_config = configs(head, preset, seed)
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
            if head == "ridge":
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
    parser.add_argument(
        "--runs",
        default=",".join(label for label, _, _ in RUNS),
        help="comma-separated run labels (default: all)",
    )
    parser.add_argument("--reference", type=Path, default=REFERENCE)
    parser.add_argument("--no-bundled", action="store_true", help="the generated set only")
    args = parser.parse_args()
    runs = [label.strip() for label in args.runs.split(",")]
    needs_reference = any(head.startswith("reference") for label, head, _ in RUNS if label in runs)
    reference = load_reference(args.reference) if needs_reference else None
    logging.basicConfig(level=logging.WARNING)
    work = Path(tempfile.mkdtemp(prefix="emi-bench-presets-"))
    large = generate_sample(
        work / "large",
        train=args.large_train,
        valid=args.large_valid,
        test=0,
        seed=11,
        long_seconds=20.0,
    )
    rows = []
    sets = [(large, [r for r in runs if r != "lstm-2024 preset"])]
    if not args.no_bundled:
        sets.insert(0, (BUNDLED, runs))
    for root, chosen in sets:
        cache = work / f"{root.name}.h5"
        extract(root, model="fbank", out=cache, progress=False, workers=2)
        rows += measure(root, cache, work / root.name, args.seeds, chosen, reference)
    report("presets", rows, {"seeds": args.seeds, "large": [args.large_train, args.large_valid]})


if __name__ == "__main__":
    main()
