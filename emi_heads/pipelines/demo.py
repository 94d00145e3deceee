"""`emi demo`: the whole pipeline on the bundled synthetic sample, in a few minutes on a CPU.

extract (fbank by default) -> train ridge, concat, lstm and a shuffled-label control, each
with its defaults -> predict the test split with the three-head ensemble -> check the
submission -> a table. Then the other streams in the same cache: a second audio stream, the
transcripts embedded by a text encoder, the video frames by an image encoder, and concat on
each alone and on all fused. Each stage runs as its own command (`python -m emi_features`,
`python -m emi_heads`), exactly as a user would run them, so stage two never imports the
backbone libraries. With no hub, the text and image encoders are tiny random models
(`emi_features.sample.tiny_models`); `--text-model` and `--image-model` take real ones.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import click
import numpy as np

from emi_features.core.task import EMOTIONS
from emi_heads.pipelines.steps import run_command

# the repository's data/sample (a checkout, or an editable install of one); an installed
# package has no data/, and the demo then generates the same sample
BUNDLED_SAMPLE = Path(__file__).resolve().parents[2] / "data" / "sample"
STREAM, STREAM_MODEL = "fb10", "fbank-10ms"  # the second audio stream the demo adds and fuses
TINY = "tiny-random"  # the tiny random text and image encoders every command builds offline
DEMO_HEADS = ("ridge", "concat", "lstm")  # every one with its defaults
# The demo's budget, so that the main job ends in about two minutes on a 2-core CPU: fewer
# optimizer steps than the heads' defaults, and a narrower LSTM on each clip's first 6 s
# (--full runs every head's defaults; --fast is the suite's smoke run). By head; "*": the rest.
BUDGETS = {
    "demo": {
        "*": ["--min-steps", "300"],
        "lstm": ["--min-steps", "300", "--hidden", "128", "--max-seconds", "6"],
    },
    "full": {"*": []},
    "fast": {
        "*": ["--min-steps", "100", "--epochs", "15"],
        "lstm": ["--min-steps", "100", "--epochs", "15", "--hidden", "32"],
    },
}


def budget_options(budget: str, head: str) -> list[str]:
    """The options a budget adds to `emi train --head HEAD`."""
    return BUDGETS[budget].get(head, BUDGETS[budget]["*"])


# Each stage's share of the demo's time as measured on a 2-core CPU (for the ETA).
EXPECTED_SECONDS = {
    "extract": 12,
    "train": 6,
    "train lstm": 25,
    "extract fb10": 8,
    "transcripts": 2,
    "embed text": 6,
    "extract vision": 10,
    "predict": 3,
}


class Stages:
    """`[3/16] train lstm ...` before each stage, `done in 12 s, about 40 s left` after it: the
    time left is the stages' expected seconds, scaled by how fast this machine has been so far."""

    def __init__(self, planned: list[str]):
        self.planned, self.done, self.started = planned, 0, time.perf_counter()
        self.expected_done = 0.0

    @staticmethod
    def expected(stage: str) -> float:
        return EXPECTED_SECONDS.get(stage, EXPECTED_SECONDS["train"])

    def run(self, stage: str, what: str, command: str, args: list[str]) -> float:
        self.done += 1
        click.echo(f"\n[{self.done}/{len(self.planned)}] {what}", err=True)
        seconds = run_command(command, args)
        self.expected_done += self.expected(stage)
        pace = (time.perf_counter() - self.started) / self.expected_done
        left = pace * sum(self.expected(s) for s in self.planned[self.done :])
        click.echo(f"    done in {seconds:.0f} s; about {left:.0f} s left", err=True)
        return seconds


def _shuffled_labels(source: Path, target: Path, seed: int = 0) -> Path:
    """The same CSV with the label rows permuted across ids: what chance looks like."""
    lines = source.read_text().splitlines()
    rows = [line.split(",", 1) for line in lines[1:] if line.strip()]
    order = np.random.default_rng(seed).permutation(len(rows))
    target.write_text(
        "\n".join([lines[0], *(f"{rows[k][0]},{rows[j][1]}" for k, j in enumerate(order))]) + "\n"
    )
    return target


STREAMS = {  # concat on each stream alone and on all fused: label -> --inputs
    "alone": ["--inputs", "frame_stats,mean"],
    f"{STREAM} alone": ["--inputs", f"features/{STREAM}"],
    "text alone": ["--inputs", "features/text"],
    "vision alone": ["--inputs", "features/vision"],
    "all fused": [],
}


def run_demo(
    data: Path | None,
    out: Path,
    model: str,
    device: str | None,
    *,
    text_model: str = TINY,
    image_model: str = TINY,
    budget: str = "demo",
    flags: tuple[str, ...] = (),
) -> dict:
    """The demo; returns the summary it also writes to OUT/summary.json. `budget`: `demo` (about
    two minutes on a 2-core CPU), `full` (every head's defaults) or `fast` (a smoke run);
    `flags` (--quiet, --verbose) go to every training."""
    out.mkdir(parents=True, exist_ok=True)
    data = _sample(data, out)
    device_args = ["--device", device] if device else []
    cache = out / f"cache-{Path(model).name}.h5"
    streams = {(f"{model} alone" if k == "alone" else k): v for k, v in STREAMS.items()}
    stages = Stages(_planned_stages(len(streams)))
    extract = [str(data), "--model", model, "--out", str(cache), "--quiet", *device_args]
    timings = {
        "extract": stages.run(
            "extract", f"extract {model} features of every clip", "emi-extract", extract
        )
    }
    train = DemoTraining(stages, cache, data, out, budget, flags, device_args)
    for name in DEMO_HEADS:
        timings[name] = train(name, data / "train_split.csv", name, [])
    shuffled = _shuffled_labels(data / "train_split.csv", out / "shuffled_train.csv")
    timings["control"] = train("control", shuffled, "ridge", [])
    timings.update(_add_streams(stages, data, cache, text_model, image_model, device_args))
    for label, inputs in streams.items():
        timings[f"concat, {label}"] = train(
            f"streams/{label.replace(' ', '-')}", data / "train_split.csv", "concat", inputs
        )
    submission, timings["predict"] = _predict_and_check(train)
    summary = _summary(data, model, text_model, image_model, cache, submission, train.runs, timings)
    scores = summary.pop("scores")
    summary["valid"] = {k: v for k, v in scores.items() if not k.startswith("streams/")}
    summary["streams"] = {k: scores[f"streams/{k.replace(' ', '-')}"] for k in streams}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _planned_stages(stream_runs: int) -> list[str]:
    """The demo's stages in order (their kinds: what the ETA expects of each)."""
    return [
        "extract",
        *["train", "train", "train lstm", "train"],  # ridge, concat, lstm, the control
        *["extract fb10", "transcripts", "embed text", "extract vision"],
        *(["train"] * stream_runs),
        *["predict", "predict"],  # the submission, its check
    ]


@dataclass
class DemoTraining:
    """How the demo trains a head: `emi train` on its cache, validated on the sample's valid
    split, on the demo's budget, into OUT/runs/NAME (`runs` keeps where each went)."""

    stages: Stages
    cache: Path
    data: Path
    out: Path
    budget: str
    flags: tuple[str, ...]
    device_args: list[str]
    runs: dict[str, Path] = field(default_factory=dict)

    def __call__(self, name: str, labels: Path, head: str, inputs: list[str]) -> float:
        self.runs[name] = self.out / "runs" / name
        args = [
            str(self.cache),
            *["--train", str(labels), "--valid", str(self.data / "valid_split.csv")],
            *["--head", head, "--out", str(self.runs[name]), "--overwrite"],
            *budget_options(self.budget, head),
            *inputs,
            *self.flags,
            *self.device_args,
        ]
        stage = "train lstm" if head == "lstm" else "train"
        return self.stages.run(stage, f"train {head} on {name}", "emi-train", args)


def _predict_and_check(train: DemoTraining) -> tuple[Path, float]:
    """The test split predicted by the three heads' ensemble, then checked; its seconds."""
    submission = train.out / "submission.csv"
    ids = ["--ids", str(train.data / "test_split.csv")]
    runs = [str(train.runs[h]) for h in DEMO_HEADS]
    seconds = train.stages.run(
        "predict",
        "predict the test split with the three heads' ensemble",
        "emi-predict",
        [*runs, "--cache", str(train.cache), *ids, "--out", str(submission), *train.device_args],
    )
    train.stages.run(
        "predict", "check the submission", "emi-predict", ["--check", str(submission), *ids]
    )
    return submission, seconds


def _sample(data: Path | None, out: Path) -> Path:
    """The dataset to run on: the one given, the bundled sample, or one generated in OUT; the
    first line says which."""
    if data is None and (BUNDLED_SAMPLE / "train_split.csv").is_file():
        click.echo(f"sample: the bundled {BUNDLED_SAMPLE} (made by emi make-sample)", err=True)
        return BUNDLED_SAMPLE
    if data is None:
        data = out / "sample"
        click.echo(
            f"sample: none bundled with this installation (a package has no data/): "
            f"generating the same sample in {data}",
            err=True,
        )
    elif (data / "train_split.csv").is_file():
        click.echo(f"sample: {data}", err=True)
        return data
    else:
        click.echo(f"sample: none in {data}: generating one there", err=True)
    from emi_features.sample.generate import generate_sample

    generate_sample(data, progress=True)
    return data


def _summary(data, model, text_model, image_model, cache, submission, runs, timings) -> dict:
    """What the demo did, with every run's valid mean and per-column r (`scores`)."""
    scores = {}
    for name, path in runs.items():
        metrics = json.loads((path / "metrics.json").read_text())
        scores[name] = {"mean_r": metrics["valid_mean_r"], **metrics["valid_r"]}
    return {
        "data": str(data),
        "model": model,
        "text_model": text_model,
        "image_model": image_model,
        "cache": str(cache),
        "submission": str(submission),
        "runs": {k: str(v) for k, v in runs.items()},
        "seconds": timings,
        "scores": scores,
    }


def _add_streams(
    stages: Stages,
    data: Path,
    cache: Path,
    text_model: str,
    image_model: str,
    device_args: list[str],
) -> dict[str, float]:
    """The other streams in the same cache: a second audio backbone, the transcripts embedded,
    the video frames embedded. Returns each command's seconds."""
    from emi_features.sample.generate import TRANSCRIPTS

    common = ["--out", str(cache), "--quiet", "--overwrite", *device_args]
    return {
        f"extract {STREAM}": stages.run(
            "extract fb10",
            f"add a second audio stream ({STREAM_MODEL}, pooled)",
            "emi-extract",
            [str(data), "--model", STREAM_MODEL, "--stream", STREAM, "--pool", "mean", *common],
        ),
        "transcripts": stages.run(
            "transcripts",
            "import the transcripts",
            "emi-transcribe",
            [str(data), "--transcripts", str(data / TRANSCRIPTS), *common],
        ),
        "embed text": stages.run(
            "embed text",
            f"embed the transcripts ({text_model})",
            "emi-embed-text",
            [str(cache), "--model", text_model, "--overwrite", "--quiet", *device_args],
        ),
        "extract vision": stages.run(
            "extract vision",
            f"embed the video at 5 frames/s ({image_model})",
            "emi-extract",
            [
                str(data),
                "--modality",
                "vision",
                "--model",
                image_model,
                "--stream",
                "vision",
                "--fps",
                "5",
                *common,
            ],
        ),
    }


def format_table(summary: dict) -> str:
    """Each head's validation mean and per-column r, the streams alone and fused, then where
    everything went."""
    short = [name[:7] for name in EMOTIONS]

    def table(title: str, rows: dict, width: int) -> list[str]:
        lines = [f"{title:<{width}}{'mean r':>8}" + "".join(f"{s:>9}" for s in short)]
        for name, scores in rows.items():
            label = "control*" if name == "control" else name
            lines.append(
                f"{label:<{width}}{scores['mean_r']:>8.3f}"
                + "".join(f"{scores[e]:>9.3f}" for e in EMOTIONS)
            )
        return lines

    lines = table("head", summary["valid"], 10)
    lines += ["* ridge head trained on shuffled labels: the level of chance", ""]
    lines += table("concat on", summary.get("streams", {}), 18)
    lines += [
        f"(streams: the cache's {summary['model']} frames, pooled; /features/{STREAM}, "
        f"{STREAM_MODEL} pooled to mean and std; /features/text, the transcripts embedded by "
        f"{summary.get('text_model', TINY)}; /features/vision, the video at 5 frames/s embedded "
        f"by {summary.get('image_model', TINY)}, pooled)",
        f"cache: {summary['cache']}",
        f"runs (weights, config, log.csv, curves.png, valid_scatter.png): "
        f"{Path(summary['runs']['ridge']).parent}",
        f"submission (ensemble of {', '.join(DEMO_HEADS)}, checked): {summary['submission']}",
        "seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in summary["seconds"].items()),
    ]
    return "\n".join(lines)
