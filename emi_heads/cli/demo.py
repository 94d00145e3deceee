"""`emi demo`'s options (the pipeline itself: `emi_heads.pipelines.demo`)."""

from __future__ import annotations

from pathlib import Path

import click

from emi_features.core.options import logging_options
from emi_heads.pipelines.demo import TINY, format_table, run_demo


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
@click.option(
    "--full",
    "budget",
    flag_value="full",
    help="Train every head with its defaults (several minutes on a CPU).",
)
@click.option(
    "--fast",
    "budget",
    flag_value="fast",
    help="A smoke run (the test suite's): fewer steps and epochs than --budget demo.",
)
@click.option(
    "--budget",
    "budget",
    type=click.Choice(["demo", "full", "fast"]),
    default="demo",
    help="demo: 300 optimizer steps, the LSTM 128 wide on each clip's first 6 s (about two "
    "minutes on a 2-core CPU); full: every head's defaults; fast: a smoke run.",
)
@logging_options
def main(
    data: Path | None,
    out: Path,
    model: str,
    device: str | None,
    quiet: bool,
    verbose: bool,
    **options,
) -> None:
    """Run extract -> train (ridge, concat, lstm) -> predict -> check on a sample dataset.

    The bundled sample is synthetic: four labels are functions of the voice's pitch, syllable
    rate and breathiness, Admiration of the word each clip says and Joy of the image its video
    shows. It shows the pipeline learning those end to end, not emotion.
    """
    flags = (*(["--quiet"] if quiet else []), *(["--verbose"] if verbose else []))
    summary = run_demo(data, out, model, device, flags=flags, **options)
    click.echo("\n" + format_table(summary))


if __name__ == "__main__":
    main()
