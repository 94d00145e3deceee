"""`emi-extract` (= `emi extract`, `python -m emi_features`): the command line of stage one.

Parses options into an `ExtractConfig` and calls `extract`. Nothing heavy is imported before the
options are valid, so `--help` and argument errors answer at once.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import click

from emi_features.core.dataclass_options import choices, dataclass_options, given_on_command_line
from emi_features.core.logs import setup_logging
from emi_features.core.options import (
    COMMAND_SETTINGS,
    device_option,
    logging_options,
    stream_option,
    trust_option,
)
from emi_features.extraction.config import (
    DTYPE_NAMES,
    EXTRACT_DEFAULTS,
    EXTRACT_FIELDS,
    ExtractConfig,
)
from emi_features.extraction.registry import MODALITIES, modality_class

D = EXTRACT_DEFAULTS


def modality_settings_options(function: Any) -> Any:
    """The options of every registered modality's own settings (`--fps`, `--level`, ...)."""
    for name in reversed(MODALITIES):
        function = dataclass_options(modality_class(name).settings)(function)
    return function


def extract_config(options: dict[str, Any], stream: str | None) -> ExtractConfig:
    """The `ExtractConfig` of the parsed options: the chosen modality's settings from their
    options (another modality's option given is refused), its default model unless --model."""
    given = {name for name in options if given_on_command_line(name)}
    modality = modality_class(options["modality"])
    own = {item.name for item in fields(modality.settings)}
    for name in MODALITIES:
        for item in fields(modality_class(name).settings):
            if item.name in given and item.name not in own:
                flag = item.name.replace("_", "-")
                raise click.UsageError(f"--{flag} is a setting of --modality {name}")
    settings = {name: options.pop(name) for name in list(options) if name in own}
    for name in list(options):
        if name not in EXTRACT_FIELDS:
            options.pop(name)  # another modality's default
    if modality.stream_only and stream is None:
        raise click.UsageError(f"--modality {modality.name} writes a stream: give --stream NAME")
    if "model" in given and not modality.default_model:
        raise click.UsageError(f"--model: --modality {modality.name} reads no model")
    compiled = [f"--{n}" for n in ("runtime", "precision") if n in given]
    if compiled and modality.name != "audio":
        raise click.UsageError(
            f"{', '.join(compiled)}: the compiled path runs the audio "
            f"backbones; --modality {modality.name} runs eagerly"
        )
    if "model" not in given and modality.default_model:
        options["model"] = modality.default_model
    try:
        return ExtractConfig(**options, settings=modality.settings(**settings))
    except ValueError as error:
        raise click.UsageError(str(error)) from None


def _list_models(context: click.Context, _: click.Parameter, value: bool) -> None:
    if not value or context.resilient_parsing:
        return
    from emi_features.audio.backbones import BACKBONES

    for name, entry in BACKBONES.items():
        click.echo(f"{name:<24}{entry.description}")
    click.echo(f"{'HUB-ID or FOLDER':<24}any wav2vec2, HuBERT, WavLM or data2vec-audio encoder")
    context.exit()


@click.command(context_settings=COMMAND_SETTINGS)
@click.argument("input_path", metavar="INPUT", type=click.Path(exists=True))
@click.option(
    "--model",
    default=D.model,
    help="Hub id, local Hugging Face folder, or a built-in name (see --list-models).",
)
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="The cache to write.")
@click.option("--split", default=D.split, help="Only the ids of INPUT/NAME_split.csv.")
@click.option(
    "--source",
    type=click.Choice(choices(ExtractConfig, "source")),
    default=D.source,
    help="Decode from raw/ videos, audio/ files, or the video when there is one.",
)
@device_option
@click.option(
    "--dtype",
    type=click.Choice(DTYPE_NAMES),
    default=D.dtype,
    help="Backbone precision  [default: float32 on CPU, bfloat16 on GPU]",
)
@click.option(
    "--runtime",
    type=click.Choice(choices(ExtractConfig, "runtime")),
    default=D.runtime,
    help="CPU engine for a Hugging Face backbone: eager torch, or its graph exported once and "
    "run by ONNX Runtime or OpenVINO (the onnxruntime / openvino extras).",
)
@click.option(
    "--precision",
    type=click.Choice(choices(ExtractConfig, "precision")),
    default=D.precision,
    help="int8: dynamic int8 weights in the transformer layers (CPU; torch or onnxruntime). "
    "Faster, not exact: its cost on the real weights is unmeasured.",
)
@click.option(
    "--layer",
    type=int,
    default=D.layer,
    help="hidden_states[N] to store (0 = CNN features)  [default: last_hidden_state]",
)
@click.option(
    "--batch-seconds",
    type=click.FloatRange(min=0),
    default=D.batch_seconds,
    help="Padded audio seconds per batch; 0: one clip each  [default: 0 on CPU, 160 on GPU]",
)
@click.option(
    "--window-seconds",
    type=click.FloatRange(min=0, min_open=True),
    default=D.window_seconds,
    help="Longer clips run in overlapping windows of this length.",
)
@click.option(
    "--overlap-seconds",
    type=click.FloatRange(min=0),
    default=D.overlap_seconds,
    help="Overlap between windows.",
)
@click.option(
    "--part-seconds",
    type=click.FloatRange(min=0, min_open=True),
    default=D.part_seconds,
    help="Audio per committed part of the cache: what a crash can lose at most.",
)
@click.option(
    "--workers", type=click.IntRange(min=0), default=D.workers, help="Decoding processes."
)
@click.option("--overwrite", is_flag=True, help="Replace an existing cache instead of resuming.")
@click.option("--retry-skipped", is_flag=True, help="Try clips an earlier run skipped again.")
@click.option("--offline", is_flag=True, help="Never touch the network (as HF_HUB_OFFLINE=1).")
@trust_option
@stream_option(
    old="--group",
    help="Add this backbone's output to the finished cache --out as the stream /features/NAME.",
)
@click.option(
    "--pool",
    type=click.Choice(["frames", "mean", "stats"]),
    default="frames",
    help="With --stream: keep the frames (own frame rate) and clip mean, or only each clip's "
    "mean and std (small; for sweeping layers); stats: with --layers all.",
)
@click.option(
    "--layers",
    type=click.Choice(["all"]),
    default=None,
    help="With --stream and --pool stats: every hidden layer's clip mean and sd (a small clip "
    "stream; `emi train --head concat --layer-weights` learns a weight per layer).",
)
@click.option(
    "--modality",
    type=click.Choice(list(MODALITIES)),
    default=D.modality,
    help="What to encode (with --stream for all but audio): "
    + "; ".join(f"{name}: {modality_class(name).description}" for name in MODALITIES),
)
@modality_settings_options
@click.option(
    "--list-models",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_list_models,
    help="List the built-in backbones and exit.",
)
@logging_options
def main(
    input_path: str,
    out: str,
    stream: str | None,
    pool: str,
    layers: str | None,
    verbose: bool,
    quiet: bool,
    **options: object,
) -> None:
    """Extract backbone features of every clip in INPUT into one HDF5 cache.

    INPUT is a dataset root in the challenge layout (raw/, audio/, *_split.csv) or any folder of
    audio or video files. Re-running resumes; a cache written with other settings is refused.

    \b
    emi-extract data/sample --model fbank --out cache.h5
    emi-extract /data/vidmimic2 --split train --out vad.h5   # the VAD model, on a GPU
    emi-extract /data/vidmimic2 --model microsoft/wavlm-large --layer 6 --stream wavlm-l6 \\
        --out vad.h5                                            # a second stream in vad.h5
    emi-extract /data/vidmimic2 --modality vision --model openai/clip-vit-base-patch32 \\
        --stream vision --fps 5 --out vad.h5                    # face frames, 5 per second
    emi-extract /data/vidmimic2 --modality egemaps --stream egemaps --out vad.h5
    """
    setup_logging(verbose)
    if (layers is None) != (pool != "stats"):
        raise click.UsageError("--layers all and --pool stats go together (with --stream)")
    if layers is not None:  # the spelling of the issue, and of SUPERB: a modality of its own
        options["modality"] = "layers"
    config = extract_config(options, stream)
    if getattr(config.settings, "level", None) == "functionals" and pool != "frames":
        raise click.UsageError("--pool: the functionals are one vector per clip already")
    from emi_features.extraction.per_clip import run_modality
    from emi_features.extraction.processes import sigterm_as_interrupt
    from emi_features.extraction.registry import get_modality
    from emi_features.extraction.runner import USER_ERRORS

    try:
        with sigterm_as_interrupt():
            if stream is not None:
                from emi_features.extraction.side_stream import extract_stream

                result = extract_stream(
                    input_path, out=out, name=stream, config=config, pool=pool, progress=not quiet
                )
            else:
                modality = get_modality(config.modality)
                result = run_modality(
                    modality, input_path, out=out, config=config, progress=not quiet
                )
    except USER_ERRORS as error:
        raise click.ClickException(str(error)) from None
    except KeyboardInterrupt:
        raise click.ClickException(
            "interrupted: committed clips are kept; re-run to resume"
        ) from None
    _report(result)


def _report(result) -> None:
    """The summary line (rank 0 only); an error when no clip could be processed."""
    if result.rank != 0:
        return
    if result.processed_clips or result.clips:
        click.echo(result.summary(), err=True)
    if result.clips == 0:
        raise click.ClickException(f"no clip could be processed ({len(result.skipped)} skipped)")


@click.command(context_settings=COMMAND_SETTINGS)
@click.argument("cache", type=click.Path(exists=True, dir_okay=False))
@stream_option(old="--name", required=True, help="The stream's name: /features/NAME.")
@click.option(
    "--from",
    "source",
    required=True,
    type=click.Path(exists=True),
    help="A folder of {id}.npy, an .npz keyed by id, or a CSV with Filename and numbers.",
)
@click.option(
    "--frame-rate",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Frames per second of per-frame (T, D) features.",
)
@click.option("--allow-pickle", is_flag=True, help="Read pickled data (runs code it holds).")
@click.option("--overwrite", is_flag=True, help="Replace a stream of that name.")
@logging_options
def add_features_command(
    cache: str, stream: str, source: str, verbose: bool, quiet: bool, **options
) -> None:
    """Import features you already have into CACHE as a stream keyed by id.

    Ids unknown to the cache are refused; clips the source lacks are recorded as missing.

    \b
    emi-add-features vad.h5 --stream face --from face_feats/ --frame-rate 5
    emi-add-features vad.h5 --stream text --from text_embeddings.npz
    """
    setup_logging(verbose)
    from emi_features.cache.imported import add_features
    from emi_features.extraction.runner import USER_ERRORS

    try:
        summary = add_features(cache, stream, source, **options)
    except USER_ERRORS as error:
        raise click.ClickException(str(error)) from None
    click.echo(
        f"{cache}: /features/{stream}: {summary['kind']} features of width {summary['dim']} for "
        f"{summary['present']} clips, {summary['missing']} missing",
        err=True,
    )
