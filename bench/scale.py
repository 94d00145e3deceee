"""Stage two at the real dataset's size, scaled down and extrapolated: a synthetic cache with
Hume-Vidmimic2's clip lengths (15,000 clips, about 30 hours: lengths log-normal around 7.2 s)
and every recipe's streams at their real widths — the VAD model's frames (1024, 50/s, float16)
with frame VAD, a second backbone's (WavLM, 1024, 50/s), the face (ViT-H, 1280, 5/s), the
text's sentence vector (768) and token states (ChatGLM3, 4096, about 20 per clip) — at two
scales (N and N/2 clips); each head trains one epoch in a fresh process, and its peak resident
memory and seconds are extrapolated linearly to 15,000 clips (the figures say so).

python bench/scale.py [--clips 300]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from common import report

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from conftest import write_labels  # noqa: E402

FULL_CLIPS = 15_000
MEAN_SECONDS = 7.2  # 30 h over 15,000 clips
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
ONE_EPOCH = ["--epochs", "1", "--min-steps", "0"]
RECIPE_HEADS = ("hallmen-2025", "casia-2026", "mimicmetrics-2026")  # their heads, one epoch
HEADS = {
    "ridge (frame stats, mean)": ["--head", "ridge", "--inputs", "frame_stats,mean"],
    "concat (default inputs: every stream pooled)": ["--head", "concat", *ONE_EPOCH],
}


def recipe_options(name: str) -> list[str]:
    """The recipe's own `emi train` options (after its data and run folder), one epoch of each
    stage: the bench's cache names its streams as the recipes do."""
    from emi_heads.pipelines.recipes.book import RECIPES
    from emi_heads.pipelines.recipes.run import plan

    settings = {"unimodal_epochs": "1"}
    planned = plan(RECIPES[name], "DATA", Path("OUT"), settings, trust_remote_code=True)
    argv = next(item.argv for item in planned if item.step.name == "train")
    return [*argv[argv.index("--seed") :], *ONE_EPOCH]


def write_cache(path: Path, clips: int, seed: int = 0) -> None:
    """The synthetic cache at real widths (see the module); labels beside it."""
    from emi_features.cache.attach import attach_streams
    from emi_features.cache.schema import ClipFeatures
    from emi_features.cache.streams import clip_stream, frame_stream
    from emi_features.cache.writer import CacheWriter

    rng = np.random.default_rng(seed)
    seconds = np.clip(rng.lognormal(np.log(MEAN_SECONDS) - 0.18, 0.6, clips), 1.0, 60.0)
    ids = [f"{i:05d}" for i in range(clips)]
    attrs = {"backbone": "synthetic", "backbone_fingerprint": "scale", "hidden_size": 1024}
    writer = CacheWriter(path, attrs, overwrite=True)
    for first in range(0, clips, 50):
        part = []
        for k in range(first, min(first + 50, clips)):
            frames = rng.standard_normal((int(seconds[k] * 50), 1024)).astype(np.float16)
            vad = rng.uniform(0, 1, (len(frames), 3)).astype(np.float32)
            mean = frames.astype(np.float32).mean(axis=0)
            part.append(ClipFeatures(ids[k], frames, vad, mean, vad.mean(0), len(frames) * 320))
        writer.write_part(part, {})
    writer.finish()

    def blocks(rate: float | None, width: int) -> list[np.ndarray]:
        counts = [20] * clips if rate is None else [max(1, int(s * rate)) for s in seconds]
        return [rng.standard_normal((n, width)).astype(np.float16) for n in counts]

    meta = {"source": "bench", "producer": "imported"}
    streams = {
        "wavlm": frame_stream(blocks(50.0, 1024), 1024, {**meta, "frame_rate": 50.0}),
        "face": frame_stream(blocks(5.0, 1280), 1280, {**meta, "frame_rate": 5.0}),
        "text-tokens": frame_stream(blocks(None, 4096), 4096, {**meta, "unit": "token"}),
        "text": clip_stream(list(rng.standard_normal((clips, 768)).astype(np.float32)), 768, meta),
    }
    attach_streams(path, streams, overwrite=True)
    labels = np.round(rng.uniform(0, 1, (clips, 6)) * 8) / 8
    cut = clips * 4 // 5
    write_labels(path.with_name("train.csv"), ids[:cut], labels[:cut])
    write_labels(path.with_name("valid.csv"), ids[cut:], labels[cut:])


def measure(cache: Path, options: list[str], out: Path) -> dict:
    command = [
        str(cache),
        "--train",
        str(cache.with_name("train.csv")),
        "--valid",
        str(cache.with_name("valid.csv")),
        *options,
        "--out",
        str(out),
        "--overwrite",
        "--quiet",
    ]
    done = subprocess.run(
        [sys.executable, "-c", CHILD, *command], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        return {"rss_mb": float("nan"), "seconds": float("nan"), "error": done.stderr[-300:]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=300)
    parser.add_argument(
        "--heads",
        default="",
        help="Comma-separated words a head's row must contain to run (default: every head).",
    )
    parser.add_argument("--write", nargs=2, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.write is not None:  # in a process of its own: its peak is not the runs' peak
        write_cache(Path(args.write[0]), int(args.write[1]))
        return
    work = Path(tempfile.mkdtemp(prefix="emi-bench-scale-"))
    sizes = {"half": args.clips // 2, "full": args.clips}
    caches = {}
    for name, clips in sizes.items():
        caches[name] = work / name / "cache.h5"
        caches[name].parent.mkdir()
        subprocess.run(
            [sys.executable, __file__, "--write", str(caches[name]), str(clips)], check=True
        )
    rows = []
    chosen = [w.strip() for w in args.heads.split(",") if w.strip()]
    heads = {**HEADS, **{f"{name} head": recipe_options(name) for name in RECIPE_HEADS}}
    for head, options in heads.items():
        if chosen and not any(word in head for word in chosen):
            continue
        small = measure(caches["half"], options, work / "run")
        large = measure(caches["full"], options, work / "run")
        per_clip = {
            k: (large[k] - small[k]) / (sizes["full"] - sizes["half"])
            for k in small
            if k != "error"
        }
        extrapolated = {k: large[k] + per_clip[k] * (FULL_CLIPS - sizes["full"]) for k in per_clip}
        rows.append(
            {
                "head": head,
                f"MB at {sizes['full']}": large["rss_mb"],
                f"s at {sizes['full']}": large["seconds"],
                "MB at 15,000 (extrapolated)": extrapolated["rss_mb"],
                "s at 15,000 (extrapolated)": extrapolated["seconds"],
                **({"error": large["error"]} if "error" in large else {}),
            }
        )
    cache_gb = caches["full"].stat().st_size / 2**30
    report(
        "scale",
        rows,
        {
            "clips": sizes,
            "cache_gb": cache_gb,
            "full_cache_gb_extrapolated": cache_gb * FULL_CLIPS / args.clips,
        },
    )


if __name__ == "__main__":
    main()
