"""Every recipe on the bundled sample (generated: each modality carries some of the labels),
with the weight-free `fbank` audio backbone and the tiny random text and image encoders: valid
mean r (mean ± sd over seeds) and seconds per training run, against our defaults (concat) and
ridge on the same cache.

Each recipe runs whole once (`emi recipe`, stage one and seed 0), then its training again per
seed (`--set seed=K`: the stage-one steps are skipped by the ledger). The published scores are
on the challenge's real data with the real encoders; these are not comparable to them (see the
README).

python bench/recipes.py [--seeds 3] [--epochs N] [--recipes hallmen-2025,...]
(--epochs: every recipe's epochs and unimodal epochs; default: each recipe's own, as published)
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

from emi_heads.recipes.book import RECIPES

BUNDLED = Path(__file__).resolve().parents[1] / "data" / "sample"
TINY = ["audio_model=fbank", "text_model=tiny-random", "image_model=tiny-random", "crop=none",
        f"transcripts={BUNDLED / 'transcripts.csv'}"]  # fmt: skip


def emi(*args: str) -> float:
    """Run `emi ARGS` quietly; its seconds."""
    tic = time.perf_counter()
    subprocess.run([sys.executable, "-m", "emi_heads", *args], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    return time.perf_counter() - tic


def valid_r(run: Path) -> float:
    return json.loads((run / "metrics.json").read_text())["valid_mean_r"]


def summary(label: str, scores: list[float], seconds: list[float], published: str = "") -> dict:
    return {"run": label, "valid r mean": statistics.mean(scores),
            "sd": statistics.stdev(scores) if len(scores) > 1 else 0.0,
            "s per run": statistics.mean(seconds), "published": published}  # fmt: skip


def bench_recipe(name: str, folder: Path, seeds: int, epochs: int | None) -> list[dict]:
    recipe, out = RECIPES[name], folder / name
    sets = list(TINY)
    if epochs is not None:
        sets += [f"epochs={epochs}", f"unimodal_epochs={epochs}"]
    sets = [s for s in sets if s.split("=")[0] in recipe.settings]
    options = [part for s in sets for part in ("--set", s)]
    scores, seconds = [], []
    for seed in range(seeds):
        emi("recipe", name, str(BUNDLED), "--out", str(out), *options, "--set", f"seed={seed}")
        scores.append(valid_r(out / "run"))
        seconds.append(json.loads((out / "run" / "metrics.json").read_text())["seconds"])
    rows = [summary(name, scores, seconds, recipe.published)]
    splits = ["--train", str(BUNDLED / "train_split.csv"), "--valid",
              str(BUNDLED / "valid_split.csv")]  # fmt: skip
    for head in ("concat", "ridge"):
        scores, seconds = [], []
        for seed in range(seeds if head != "ridge" else 1):
            run = folder / f"{name}-{head}-{seed}"
            emi("train", str(out / "cache.h5"), *splits, "--head", head, "--seed", str(seed),
                "--out", str(run), "--quiet")  # fmt: skip
            scores.append(valid_r(run))
            seconds.append(json.loads((run / "metrics.json").read_text())["seconds"])
        rows.append(summary(f"  {head} (ours), same cache", scores, seconds))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--recipes", default=",".join(RECIPES))
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name in args.recipes.split(","):
            rows += bench_recipe(name, Path(folder), args.seeds, args.epochs)
    report("recipes", rows, {"seeds": args.seeds, "epochs": args.epochs})


if __name__ == "__main__":
    main()
