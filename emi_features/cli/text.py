"""`emi transcribe` and `emi embed-text`: the words of each clip as a stream of the cache.

Options are parsed before anything heavy loads; each command calls one library function.
"""

from __future__ import annotations

from dataclasses import fields

import click

from emi_features.core.dataclass_options import dataclass_options
from emi_features.core.logs import setup_logging
from emi_features.core.models import ASR_MODEL_ID, TEXT_MODEL_ID
from emi_features.core.options import (
    COMMAND_SETTINGS,
    device_option,
    logging_options,
    stream_option,
    trust_option,
)
from emi_features.text.settings import TextSettings


@click.command(context_settings=COMMAND_SETTINGS)
@click.argument("input_path", metavar="INPUT", type=click.Path(exists=True))
@click.option(
    "--out",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="The finished cache whose clips to transcribe (its /text).",
)
@click.option("--model", default=ASR_MODEL_ID, help="A Whisper model: hub id or local folder.")
@click.option(
    "--transcripts",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Import a CSV (Filename, text[, language]) instead of transcribing.",
)
@click.option("--language", default=None, help="Force a language (e.g. en); default: detect.")
@click.option("--batch-size", type=click.IntRange(min=1), default=8, help="Clips per batch.")
@click.option(
    "--max-new-tokens",
    type=click.IntRange(min=1),
    default=None,
    help="Cap on generated tokens per 30 s window  [default: the model's]",
)
@click.option("--split", default=None, help="Only the ids of INPUT/NAME_split.csv.")
@device_option
@click.option("--overwrite", is_flag=True, help="Replace existing transcripts / restart.")
@click.option("--offline", is_flag=True, help="Never touch the network.")
@trust_option
@logging_options
def transcribe_command(input_path: str, out: str, verbose: bool, quiet: bool, **options) -> None:
    """Transcribe every clip of the cache OUT (audio found under INPUT) into its /text.

    Resumable: a killed run keeps every finished batch and goes on from there.

    \b
    emi transcribe /data/vidmimic2 --out vad.h5                  # Whisper large-v3, on a GPU
    emi transcribe data/sample --out cache.h5 --transcripts data/sample/transcripts.csv
    """
    setup_logging(verbose)
    from emi_features.extraction.processes import sigterm_as_interrupt
    from emi_features.extraction.runner import USER_ERRORS
    from emi_features.text.transcribe import transcribe

    try:
        with sigterm_as_interrupt():
            result = transcribe(input_path, out=out, progress=not quiet, **options)
    except USER_ERRORS as error:
        raise click.ClickException(str(error)) from None
    except KeyboardInterrupt:
        raise click.ClickException(
            "interrupted: finished batches are kept; re-run to resume"
        ) from None
    click.echo(
        f"{result.path}: {result.transcribed} clips transcribed ({result.empty} empty), "
        f"{len(result.skipped)} skipped, in {result.seconds:.1f} s",
        err=True,
    )


@click.command(context_settings=COMMAND_SETTINGS)
@click.argument("cache", type=click.Path(exists=True, dir_okay=False))
@click.option("--model", default=TEXT_MODEL_ID, help="A text encoder: hub id or local folder.")
@stream_option(old="--name", default="text", help="The stream: /features/NAME.")
@click.option("--tokens", is_flag=True, help="Also the per-token states as NAME-tokens.")
@click.option(
    "--max-tokens",
    type=click.IntRange(min=1),
    default=None,
    help="Truncate each transcript to N tokens  [default: the encoder's own limit]",
)
@dataclass_options(TextSettings)
@click.option("--batch-size", type=click.IntRange(min=1), default=32, help="Texts per batch.")
@device_option
@click.option("--overwrite", is_flag=True, help="Replace streams of that name.")
@click.option("--offline", is_flag=True, help="Never touch the network.")
@trust_option
@logging_options
def embed_text_command(cache: str, stream: str, verbose: bool, quiet: bool, **options) -> None:
    """Embed the transcripts of CACHE into the stream /features/NAME.

    \b
    emi embed-text vad.h5                                    # a multilingual sentence encoder
    emi embed-text vad.h5 --model FacebookAI/xlm-roberta-large --stream xlmr --tokens
    emi embed-text vad.h5 --model thenlper/gte-large --stream gte --pooling cls
    """
    setup_logging(verbose)
    from emi_features.extraction.runner import USER_ERRORS
    from emi_features.text.embed import embed_text

    try:
        settings = TextSettings(**{f.name: options.pop(f.name) for f in fields(TextSettings)})
    except ValueError as error:
        raise click.UsageError(str(error)) from None
    try:
        summary = embed_text(cache, name=stream, settings=settings, **options)
    except USER_ERRORS as error:
        raise click.ClickException(str(error)) from None
    click.echo(
        f"{cache}: /features/{stream}: width {summary['dim']} for "
        f"{summary['present']} clips, {summary['missing']} missing "
        f"({summary['empty']} with an empty transcript)",
        err=True,
    )
