"""`emi`: one command with every tool as a subcommand (`emi extract|train|predict|...`).

Subcommands are imported only when run, so `emi --help` and `emi train --help` start without
torch or transformers. The `emi-*` scripts stay as aliases of the same commands.
"""

from __future__ import annotations

import importlib

import click

from emi_features import __version__
from emi_features.core.options import COMMAND_SETTINGS

SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "extract": (
        "emi_features.cli.extract:main",
        "Extract backbone features of every clip into a cache.",
    ),
    "add-features": (
        "emi_features.cli.extract:add_features_command",
        "Import features you have into a cache as a stream keyed by id.",
    ),
    "transcribe": (
        "emi_features.cli.text:transcribe_command",
        "Transcribe every clip (Whisper) into the cache's /text, or import transcripts.",
    ),
    "embed-text": (
        "emi_features.cli.text:embed_text_command",
        "Embed the transcripts with a text encoder into the stream /features/text.",
    ),
    "train": ("emi_heads.cli.train:train_command", "Train one head on a cache's features."),
    "predict": (
        "emi_heads.cli.use:predict_command",
        "Ensemble runs into a submission (--check one), or predict recordings (--media).",
    ),
    "runs": (
        "emi_heads.cli.use:runs_command",
        "Compare runs: settings that differ, scores, seeds.",
    ),
    "export": (
        "emi_heads.cli.use:export_command",
        "Write runs as a self-contained model folder (model card, no machine paths).",
    ),
    "recipe": (
        "emi_heads.cli.recipe:recipe_command",
        "A published system whole, from the media to a checked submission.",
    ),
    "demo": ("emi_heads.cli.demo:main", "The whole pipeline on the bundled sample."),
    "make-sample": (
        "emi_features.sample.generate:main",
        "Write a synthetic challenge-layout dataset.",
    ),
}


class LazyGroup(click.Group):
    """A group whose subcommands are `module:attribute` paths, imported on use."""

    def list_commands(self, context: click.Context) -> list[str]:
        return list(SUBCOMMANDS)

    def get_command(self, context: click.Context, name: str) -> click.Command | None:
        if name not in SUBCOMMANDS:
            return None
        module, attribute = SUBCOMMANDS[name][0].split(":")
        return getattr(importlib.import_module(module), attribute)

    def format_commands(self, context: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, help_) for name, (_, help_) in SUBCOMMANDS.items()])


@click.group(cls=LazyGroup, context_settings=COMMAND_SETTINGS)
@click.version_option(__version__, prog_name="emi")
def main() -> None:
    """EMI: Emotional Mimicry Intensity from audio, in two stages with one cache between them.

    \b
    emi extract data/sample --model fbank --out cache.h5
    emi train cache.h5 --train data/sample/train_split.csv --valid data/sample/valid_split.csv \\
        --head concat --out runs/concat
    emi predict runs/concat --cache cache.h5 --ids data/sample/test_split.csv --out sub.csv
    """
