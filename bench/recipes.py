"""Every recipe on the bundled sample (generated: each modality carries some of the labels),
with the weight-free `fbank` audio backbone and the tiny random text and image encoders: valid
mean r (mean ± sd over seeds) and seconds per training run, against our defaults (concat) and
ridge on the same cache.

Each recipe runs whole once (`emi recipe`, stage one and seed 0), then its training again per
seed (`--set seed=K`: the stage-one steps are skipped by the ledger). The published scores are
on the challenge's real data with the real encoders; these are not comparable to them (see the
README).

python bench/recipes.py [--seeds 3] [--budget published|sample|both] [--recipes NAME,...]
(--budget sample: 300 training epochs, a budget that suits 120 clips — the published step
counts are for thousands of clips; published: each recipe's own epochs; both: each row twice)
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import report

from emi_heads.pipelines.recipes.book import RECIPES

BUNDLED = Path(__file__).resolve().parents[1] / "data" / "sample"
TINY = [
    "audio_model=fbank",
    "text_model=tiny-random",
    "image_model=tiny-random",
    "crop=none",
    f"transcripts={BUNDLED / 'transcripts.csv'}",
]


def emi(*args: str) -> float:
    """Run `emi ARGS` quietly; its seconds."""
    tic = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "emi_heads", *args],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.perf_counter() - tic


def valid_r(run: Path) -> float:
    return json.loads((run / "metrics.json").read_text())["valid_mean_r"]


def summary(label: str, scores: list[float], seconds: list[float], published: str = "") -> dict:
    return {
        "run": label,
        "valid r mean": statistics.mean(scores),
        "sd": statistics.stdev(scores) if len(scores) > 1 else 0.0,
        "s per run": statistics.mean(seconds),
        "published": published,
    }


SAMPLE_EPOCHS = 300  # the sample's budget: 120 clips make few steps per epoch


def bench_recipe(name: str, folder: Path, seeds: int, budget: str, baselines: bool) -> list[dict]:
    recipe, out = RECIPES[name], folder / f"{name}-{budget}"
    sets = list(TINY)
    if budget == "sample":
        sets.append(f"epochs={SAMPLE_EPOCHS}")
    sets = [s for s in sets if s.split("=")[0] in recipe.settings]
    options = [part for s in sets for part in ("--set", s)]
    scores, seconds = [], []
    for seed in range(seeds):
        emi("recipe", name, str(BUNDLED), "--out", str(out), *options, "--set", f"seed={seed}")
        scores.append(valid_r(out / "run"))
        seconds.append(json.loads((out / "run" / "metrics.json").read_text())["seconds"])
    label = f"{name} ({'as published' if budget == 'published' else f'{SAMPLE_EPOCHS} epochs'})"
    rows = [summary(label, scores, seconds, recipe.published)]
    if not baselines:
        return rows
    splits = [
        "--train",
        str(BUNDLED / "train_split.csv"),
        "--valid",
        str(BUNDLED / "valid_split.csv"),
    ]
    for head in ("concat", "ridge"):
        scores, seconds = [], []
        for seed in range(seeds if head != "ridge" else 1):
            run = folder / f"{name}-{head}-{seed}"
            emi(
                "train",
                str(out / "cache.h5"),
                *splits,
                "--head",
                head,
                "--seed",
                str(seed),
                "--out",
                str(run),
                "--quiet",
            )
            scores.append(valid_r(run))
            seconds.append(json.loads((run / "metrics.json").read_text())["seconds"])
        rows.append(summary(f"  {head} (ours), same cache", scores, seconds))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--budget", choices=("published", "sample", "both"), default="both")
    parser.add_argument("--recipes", default=",".join(n for n in RECIPES if n != "audio-2024"))
    args = parser.parse_args()
    budgets = ["published", "sample"] if args.budget == "both" else [args.budget]
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name in args.recipes.split(","):
            for k, budget in enumerate(budgets):
                rows += bench_recipe(name, Path(folder), args.seeds, budget, baselines=k == 0)
    report("recipes", rows, {"seeds": args.seeds, "budget": args.budget})


if __name__ == "__main__":
    main()
