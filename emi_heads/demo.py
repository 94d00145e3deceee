"""`emi-demo`: the whole pipeline on the bundled synthetic sample, in a few minutes on a CPU.

extract (fbank by default) -> train linear, concat, lstm and a shuffled-label control, each
with its defaults -> predict the test split with the three-head ensemble -> check the
submission -> a table. Then the other streams in the same cache: a second audio stream, the
transcripts embedded by a text encoder, the video frames by an image encoder, and concat on
each alone and on all fused. Each stage runs as its own command (`python -m emi_features`,
`python -m emi_heads`), exactly as a user would run them, so stage two never imports the
backbone libraries. With no hub, the text and image encoders are tiny random models
(`emi_features.tiny_models`); `--text-model` and `--image-model` take real ones.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import click
import numpy as np

from emi_features.dataset import EMOTIONS

BUNDLED_SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample"
STREAM, STREAM_MODEL = "fb10", "fbank-10ms"  # the second audio stream the demo adds and fuses
TINY = "tiny-random"  # --text-model / --image-model: build a tiny random encoder offline
DEMO_HEADS = ("linear", "concat", "lstm")  # every one with its defaults
FAST = ["--min-steps", "200", "--hidden", "64"]  # --fast: a smoke run, not the defaults


def _run(stage: str, args: list[str]) -> float:
    """Run one stage as a subprocess; its log lines pass through. Returns seconds taken."""
    started = time.perf_counter()
    click.echo(f"\n$ {stage} {' '.join(args)}", err=True)
    command = [sys.executable, "-m", "emi_heads", stage.removeprefix("emi-")]
    completed = subprocess.run([*command, *args], check=False)
    if completed.returncode != 0:
        raise click.ClickException(f"{stage} failed (exit {completed.returncode}); see above")
    return time.perf_counter() - started


def _shuffled_labels(source: Path, target: Path, seed: int = 0) -> Path:
    """The same CSV with the label rows permuted across ids: what chance looks like."""
    lines = source.read_text().splitlines()
    rows = [line.split(",", 1) for line in lines[1:] if line.strip()]
    order = np.random.default_rng(seed).permutation(len(rows))
    target.write_text(
        "\n".join([lines[0], *(f"{rows[k][0]},{rows[j][1]}" for k, j in enumerate(order))]) + "\n"
    )
    return target


def _encoders(out: Path, text_model: str, image_model: str) -> tuple[str, str]:
    """The text and image encoders to use: the given ones, or tiny random ones saved in OUT."""
    from emi_features.sample_layers import WORDS
    from emi_features.tiny_models import save_tiny_image_encoder, save_tiny_text_encoder

    if text_model == TINY:
        text_model = str(save_tiny_text_encoder(out / "models" / "text", list(WORDS)))
    if image_model == TINY:
        image_model = str(save_tiny_image_encoder(out / "models" / "image"))
    return text_model, image_model


def run_demo(
    data: Path | None,
    out: Path,
    model: str,
    device: str | None,
    *,
    text_model: str = TINY,
    image_model: str = TINY,
    fast: bool = False,
) -> dict:
    """The demo; returns the summary it also writes to OUT/summary.json."""
    out.mkdir(parents=True, exist_ok=True)
    if data is None:
        data = BUNDLED_SAMPLE if (BUNDLED_SAMPLE / "train_split.csv").is_file() else out / "sample"
    if not (data / "train_split.csv").is_file():
        from emi_features.sample_data import generate_sample

        click.echo(f"no sample found: generating one in {data}", err=True)
        generate_sample(data)
    device_args = ["--device", device] if device else []
    cache = out / f"cache-{Path(model).name}.h5"
    timings = {
        "extract": _run(
            "emi-extract",
            [str(data), "--model", model, "--out", str(cache), "--quiet", *device_args],
        )
    }
    train_csv, valid_csv = data / "train_split.csv", data / "valid_split.csv"
    runs: dict[str, Path] = {}

    def train(name: str, labels: Path, head: str, extra: list[str]) -> float:
        runs[name] = out / "runs" / name
        return _run(
            "emi-train",
            [str(cache), "--train", str(labels), "--valid", str(valid_csv), "--head", head,
             "--out", str(runs[name]), "--quiet", "--overwrite", *(FAST if fast else []),
             *extra, *device_args],
        )  # fmt: skip

    for name in DEMO_HEADS:
        timings[name] = train(name, train_csv, name, [])
    shuffled = _shuffled_labels(train_csv, out / "shuffled_train.csv")
    timings["control"] = train("control", shuffled, "linear", [])
    timings.update(_add_streams(data, cache, out, text_model, image_model, device_args))
    streams = {
        f"{model} alone": ["--inputs", "frame_stats,mean"],
        f"{STREAM} alone": ["--inputs", f"features/{STREAM}"],
        "text alone": ["--inputs", "features/text"],
        "vision alone": ["--inputs", "features/vision"],
        "all fused": [],
    }
    for label, inputs in streams.items():
        timings[f"concat, {label}"] = train(f"streams/{label.replace(' ', '-')}", train_csv,
                                             "concat", inputs)  # fmt: skip
    submission = out / "submission.csv"
    test_csv = data / "test_split.csv"
    timings["predict"] = _run(
        "emi-predict",
        [
            *(str(runs[h]) for h in DEMO_HEADS),
            "--cache",
            str(cache),
            "--ids",
            str(test_csv),
            "--out",
            str(submission),
            *device_args,
        ],
    )
    _run("emi-predict", ["--check", str(submission), "--ids", str(test_csv)])
    scores = {name: json.loads((path / "metrics.json").read_text()) for name, path in runs.items()}
    stream_scores = {label: scores.pop(f"streams/{label.replace(' ', '-')}") for label in streams}
    summary = {
        "data": str(data),
        "model": model,
        "text_model": text_model,
        "image_model": image_model,
        "cache": str(cache),
        "submission": str(submission),
        "runs": {k: str(v) for k, v in runs.items()},
        "seconds": timings,
        "valid": {
            name: {"mean_r": s["valid_mean_r"], **s["valid_r"]} for name, s in scores.items()
        },
        "streams": {
            label: {"mean_r": s["valid_mean_r"], **s["valid_r"]}
            for label, s in stream_scores.items()
        },
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _add_streams(data: Path, cache: Path, out: Path, text_model: str, image_model: str,
                 device_args: list[str]) -> dict[str, float]:  # fmt: skip
    """The other streams in the same cache: a second audio backbone, the transcripts embedded,
    the video frames embedded. Returns each command's seconds."""
    from emi_features.sample_data import TRANSCRIPTS

    text_model, image_model = _encoders(out, text_model, image_model)
    common = ["--out", str(cache), "--quiet", "--overwrite", *device_args]
    return {
        f"extract {STREAM}": _run("emi-extract", [str(data), "--model", STREAM_MODEL, "--group",
                                                  STREAM, "--pool", "mean", *common]),
        "transcripts": _run("emi-transcribe", [str(data), "--transcripts",
                                               str(data / TRANSCRIPTS), *common]),
        "embed text": _run("emi-embed-text", [str(cache), "--model", text_model, "--overwrite",
                                              *device_args]),
        "extract vision": _run("emi-extract", [str(data), "--modality", "vision", "--model",
                                               image_model, "--group", "vision", "--fps", "5",
                                               *common]),
    }  # fmt: skip


def format_table(summary: dict) -> str:
    """Each head's validation mean and per-column r, the streams alone and fused, then where
    everything went."""
    short = [name[:7] for name in EMOTIONS]

    def table(title: str, rows: dict, width: int) -> list[str]:
        lines = [f"{title:<{width}}{'mean r':>8}" + "".join(f"{s:>9}" for s in short)]
        for name, scores in rows.items():
            label = "control*" if name == "control" else name
            lines.append(f"{label:<{width}}{scores['mean_r']:>8.3f}"
                         + "".join(f"{scores[e]:>9.3f}" for e in EMOTIONS))  # fmt: skip
        return lines

    lines = table("head", summary["valid"], 10)
    lines += ["* linear head trained on shuffled labels: the level of chance", ""]
    lines += table("concat on", summary.get("streams", {}), 18)
    lines += [
        f"(streams: the cache's {summary['model']} frames, pooled; /features/{STREAM}, "
        f"{STREAM_MODEL} pooled to mean and std; /features/text, the transcripts embedded by "
        f"{summary.get('text_model', TINY)}; /features/vision, the video at 5 frames/s embedded "
        f"by {summary.get('image_model', TINY)}, pooled)",
        f"cache: {summary['cache']}",
        f"runs (weights, config, log.csv, curves.png, valid_scatter.png): "
        f"{Path(summary['runs']['linear']).parent}",
        f"submission (ensemble of {', '.join(DEMO_HEADS)}, checked): {summary['submission']}",
        "seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in summary["seconds"].items()),
    ]
    return "\n".join(lines)


@click.command(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.option(
    "--data",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Dataset root in the challenge layout  [default: the bundled data/sample]",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("demo-output"),
    help="Where the cache, runs and submission go.",
)
@click.option(
    "--model",
    default="fbank",
    help="Backbone: fbank (no download), a hub id such as the VAD model, or a folder.",
)
@click.option("--device", default=None, help="cpu, cuda, cuda:N  [default: cuda if available]")
@click.option(
    "--text-model",
    default=TINY,
    help=f"Text encoder for the transcripts: {TINY} (built offline) or a hub id / folder.",
)
@click.option(
    "--image-model",
    default=TINY,
    help=f"Image encoder for the video frames: {TINY} (built offline) or a hub id / folder.",
)
@click.option("--fast", is_flag=True, help=f"A smoke run, not the defaults: {' '.join(FAST)}.")
def main(data: Path | None, out: Path, model: str, device: str | None, **options) -> None:
    """Run extract -> train (linear, concat, lstm) -> predict -> check on a sample dataset.

    The bundled sample is synthetic: four labels are functions of the voice's pitch, syllable
    rate and breathiness, Admiration of the word each clip says and Joy of the image its video
    shows. It shows the pipeline learning those end to end, not emotion.
    """
    summary = run_demo(data, out, model, device, **options)
    click.echo("\n" + format_table(summary))


if __name__ == "__main__":
    main()
