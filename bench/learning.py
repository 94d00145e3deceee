"""Do the heads learn at every scale with their defaults? Valid mean r (mean ± sd over seeds)
and seconds of every head and preset against ridge on the same cache, at several training-set
sizes, on two generated sets:

- `voice`: the sample generator (labels are a voice's pitch, syllable rate, brightness and
  breathiness: a clip's average sound carries them, so ridge on pooled frames is strong);
- `glide`: pitch and breathiness glide over the clip, and three labels are how much they rise
  or fall: the time-mean of the frames is the same either way, so only a head that reads the
  frames in order can get those three.

Clips are 16 kHz wav, extracted once with the weight-free `fbank` backbone; every size trains
on the first N clips of one pool and validates on the same held-out clips.

python bench/learning.py [--sizes 100,300,1000,3000,8000] [--seeds 3] [--kinds voice,glide]
    [--runs "lstm,concat"] [--preset-max 1000]
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import statistics
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import soundfile
import torch
from common import RESULTS, report

from emi_features.audio.decode import SAMPLE_RATE
from emi_features.core.task import EMOTIONS, ID_COLUMN
from emi_features.extraction.runner import extract
from emi_features.sample.generate import LABEL_THRESHOLD, Voice, intensities, quantise, render
from emi_heads.heads.settings import HeadConfig, head_class, head_config
from emi_heads.training.config import TrainConfig
from emi_heads.training.presets import PRESETS
from emi_heads.training.train import train

# (label, head, preset or None): our defaults are the config defaults of the head
RUNS = [
    ("ridge", "ridge", None),
    ("lstm", "lstm", None),
    ("streams-lstm", "streams-lstm", None),
    ("concat", "concat", None),
    ("concat-frames", "concat-frames", None),
    ("concat-2026 preset", "concat-frames", "concat-2026"),
    ("lstm-2024 preset", "lstm", "lstm-2024"),
]
# streams-lstm on a cache with one frame stream is the lstm; lstm-2024 (hidden 1027) takes
# seconds a step on a CPU: both are left out unless named in --runs
DEFAULT_RUNS = "ridge,lstm,concat,concat-frames,concat-2026 preset"
VALID_CLIPS = 400
ROWS = RESULTS / "learning.jsonl"  # one row per (set, size, run) as measured


def glide_labels(start: Voice, end: Voice) -> np.ndarray:
    """(6,) in [0, 1]: pitch rise, pitch fall, breathiness rise (how the sound changes), and
    syllable rate, brightness and the mean pitch (what it is on average)."""
    raw = np.array(
        [
            end.pitch - start.pitch,  # Admiration: a rising voice
            start.pitch - end.pitch,  # Amusement: a falling voice
            1.0 - (start.pitch + end.pitch) / 2,  # Determination: a low voice
            end.breathiness - start.breathiness,  # Empathic Pain: breath coming in
            start.rate,  # Excitement
            start.brightness,  # Joy
        ]
    )
    return np.clip((raw - LABEL_THRESHOLD / 4) / (1 - LABEL_THRESHOLD / 4), 0.0, 1.0)


def _write_clip(job: tuple[str, int, int, Path]) -> list[str]:
    """Render clip `index` of a `kind` set (its own seeded generator) as a wav; its CSV row."""
    kind, index, seed, folder = job
    rng = np.random.default_rng([seed, index])
    seconds = float(np.clip(rng.lognormal(np.log(2.0), 0.4), 0.5, 6.0))
    start = Voice(*rng.uniform(0, 1, size=4), seconds=seconds)
    if kind == "voice":
        end, labels = None, intensities(start)
    else:
        end = Voice(rng.uniform(0, 1), start.rate, start.brightness, rng.uniform(0, 1), seconds)
        labels = glide_labels(start, end)
    labels = quantise(labels, annotators=int(rng.integers(5, 11)))
    clip_id = f"{index:05d}"
    wave = render(start, rng, SAMPLE_RATE, end=end)
    soundfile.write(folder / "audio" / f"{clip_id}.wav", wave, SAMPLE_RATE)
    return [clip_id, *(f"{v:.4f}" for v in labels)]


def write_csv(path: Path, rows: list[list[str]]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([ID_COLUMN, *EMOTIONS])
        writer.writerows(rows)
    return path


def make_set(folder: Path, kind: str, train_clips: int, seed: int) -> tuple[Path, list, list]:
    """`train_clips` + VALID_CLIPS wav clips under folder/audio, extracted to folder/cache.h5
    (a folder that has them already is reused)."""
    (folder / "audio").mkdir(parents=True, exist_ok=True)
    total = train_clips + VALID_CLIPS
    labels = folder / f"labels-{total}.json"
    if labels.is_file():
        rows = json.loads(labels.read_text())
    else:
        with ProcessPoolExecutor(2) as pool:
            jobs = [(kind, k, seed, folder) for k in range(total)]
            rows = list(pool.map(_write_clip, jobs, chunksize=64))
        labels.write_text(json.dumps(rows))
    cache = folder / "cache.h5"
    extract(folder / "audio", model="fbank", out=cache, progress=False, workers=2)
    return cache, rows[:train_clips], rows[train_clips:]


def configs(head: str, preset: str | None, seed: int) -> tuple[HeadConfig, TrainConfig]:
    if preset is None:
        return head_config(head), TrainConfig(seed=seed)
    published = PRESETS[preset]
    return head_config(**published.head), TrainConfig(**{**published.train, "seed": seed})


def measure(
    cache: Path, train_csv: Path, valid_csv: Path, work: Path, runs: list, seeds: int
) -> Iterator[dict]:
    """A row per run as it finishes: valid r mean and sd over seeds, seconds per seed."""
    for label, head, preset in runs:
        scores, seconds = [], []
        for seed in range(1 if head == "ridge" else seeds):  # ridge has no seed
            head_config, train_config = configs(head, preset, seed)
            started = time.perf_counter()
            result = train(
                cache,
                [train_csv],
                valid_csv,
                work / f"{label}-{seed}".replace(" ", "_"),
                head_config,
                train_config,
                device="cpu",
                progress=False,
                preset=preset,
                overwrite=True,
            )
            seconds.append(time.perf_counter() - started)
            scores.append(result.valid_r)
        yield {
            "run": label,
            "valid_r": statistics.mean(scores),
            "sd": statistics.stdev(scores) if len(scores) > 1 else 0.0,
            "seeds": len(scores),
            "seconds": statistics.mean(seconds),
        }


def verdicts(rows: list[dict]) -> list[str]:
    """A line for every default head whose mean r is below ridge's minus its own seed sd."""
    ridge = {(r["data"], r["size"]): r["valid_r"] for r in rows if r["run"] == "ridge"}
    failures = []
    for row in rows:
        default = "preset" not in row["run"] and row["run"] != "ridge"
        floor = ridge.get((row["data"], row["size"]))
        if default and floor is not None and row["valid_r"] < floor - row["sd"]:
            failures.append(
                f"{row['data']} {row['size']}: {row['run']} {row['valid_r']:.3f} ± "
                f"{row['sd']:.3f} < ridge {floor:.3f}"
            )
    return failures


def markdown(rows: list[dict]) -> str:
    """The README table: one line per set and size, a column per run (r ± sd, seconds)."""
    measured = {r["run"] for r in rows}
    runs = [label for label, _, _ in RUNS if label in measured]
    lines = ["| set | clips | " + " | ".join(runs) + " |", "|---|---:|" + "---:|" * len(runs)]
    sets = list(dict.fromkeys(r["data"] for r in rows))
    keys = sorted({(r["data"], r["size"]) for r in rows}, key=lambda k: (sets.index(k[0]), k[1]))
    for key in keys:
        cells = {r["run"]: r for r in rows if (r["data"], r["size"]) == key}
        text = [
            "–"
            if c is None
            else f"{c['valid_r']:.3f}, 1 seed ({c['seconds']:.0f} s)"
            if c["seeds"] == 1 and c["run"] != "ridge"
            else f"{c['valid_r']:.3f} ± {c['sd']:.3f} ({c['seconds']:.0f} s)"
            for c in (cells.get(run) for run in runs)
        ]
        lines.append(f"| {key[0]} | {key[1]} | " + " | ".join(text) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,300,1000,3000,8000")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--kinds", default="voice,glide")
    parser.add_argument("--runs", default=DEFAULT_RUNS)
    parser.add_argument(
        "--one-seed-above",
        type=int,
        default=None,
        help="heads that read every frame run one seed at sizes above this (their sd is then "
        "0: a CPU budget, shown in the table's seeds)",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--preset-max",
        type=int,
        default=1000,
        help="largest size the presets run at (the published LSTM, hidden 1027, takes minutes "
        "an epoch on a CPU at 3,000 clips)",
    )
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument(
        "--table",
        action="store_true",
        help="print the table and verdict of the rows measured so far and stop",
    )
    args = parser.parse_args()
    if args.table:
        rows = saved_rows()
        print(markdown(rows))
        failures = verdicts(rows)
        print("every default head >= ridge - its seed sd" if not failures else "\n".join(failures))
        return
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    sizes = [int(s) for s in args.sizes.split(",")]
    wanted = [r for r in RUNS if r[0] in args.runs.split(",")]
    work = args.work or Path(tempfile.mkdtemp(prefix="emi-bench-learning-"))
    done = {(r["data"], r["size"], r["run"]) for r in saved_rows()}
    for kind in args.kinds.split(","):
        folder = work / kind
        cache, train_rows, valid_rows = make_set(folder, kind, max(sizes), seed=3)
        valid_csv = write_csv(folder / "valid.csv", valid_rows)
        for size in sizes:
            train_csv = write_csv(folder / f"train-{size}.csv", train_rows[:size])
            runs = [
                r
                for r in wanted
                if (r[2] is None or size <= args.preset_max) and (kind, size, r[0]) not in done
            ]
            for run in runs:
                seeds = args.seeds
                if head_class(run[1]).needs_frames and size > (args.one_seed_above or size):
                    seeds = 1
                for row in measure(cache, train_csv, valid_csv, folder / str(size), [run], seeds):
                    row = {"data": kind, "size": size, **row}
                    with ROWS.open("a") as handle:  # kept as measured: a rerun goes on
                        handle.write(json.dumps(row) + "\n")
                    print(json.dumps(row), flush=True)
    rows = saved_rows()
    report("learning", rows, {"seeds": args.seeds, "valid_clips": VALID_CLIPS})
    print(markdown(rows))
    failures = verdicts(rows)
    print("every default head >= ridge - its seed sd" if not failures else "\n".join(failures))


def saved_rows() -> list[dict]:
    """Every (set, size, run) measured so far, the latest row of each, in the order first
    measured (bench/results/learning.jsonl)."""
    if not ROWS.is_file():
        return []
    rows = [json.loads(line) for line in ROWS.read_text().splitlines() if line.strip()]
    latest = {(r["data"], r["size"], r["run"]): r for r in rows}  # a run measured again: its last
    return list(latest.values())


if __name__ == "__main__":
    main()
