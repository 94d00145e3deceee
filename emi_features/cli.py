"""`emi-extract`: the command line of stage one (also `python -m emi_features`, for torchrun)."""

from __future__ import annotations

import logging
import os
import sys

import click

from emi_features.backbones import BUILT_IN, VAD_MODEL_ID


def setup_logging(verbose: bool) -> None:
    """One line per message on stderr: `emi: warning: skip 00042: empty file 00042.mp3`."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="emi: %(levelname)s: %(message)s",
        stream=sys.stderr,
    )
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    import transformers

    transformers.utils.logging.disable_progress_bar()
    for noisy in ("transformers", "huggingface_hub", "urllib3", "httpx", "h5py", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.ERROR)


@click.command(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.argument("input_path", metavar="INPUT", type=click.Path(exists=True))
@click.option(
    "--model",
    default=VAD_MODEL_ID,
    help=f"Hub id, local Hugging Face folder, or built-in: {', '.join(BUILT_IN)}.",
)
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="The cache to write.")
@click.option("--split", default=None, help="Only the ids of INPUT/NAME_split.csv.")
@click.option(
    "--source",
    type=click.Choice(["auto", "audio", "video"]),
    default="auto",
    help="Decode from raw/ videos, audio/ files, or the video when there is one.",
)
@click.option("--device", default=None, help="cpu, cuda or cuda:N  [default: cuda if available]")
@click.option(
    "--dtype",
    type=click.Choice(["float32", "bfloat16", "float16"]),
    default=None,
    help="Backbone precision  [default: float32 on CPU, bfloat16 on GPU]",
)
@click.option(
    "--layer",
    type=int,
    default=None,
    help="hidden_states[N] to store (0 = CNN features)  [default: last_hidden_state]",
)
@click.option(
    "--batch-seconds",
    type=float,
    default=None,
    help="Padded audio seconds per batch; 0: one clip each  [default: 0 on CPU, 160 on GPU]",
)
@click.option(
    "--window-seconds",
    type=float,
    default=30.0,
    help="Longer clips run in overlapping windows of this length.",
)
@click.option("--overlap-seconds", type=float, default=4.0, help="Overlap between windows.")
@click.option(
    "--part-seconds",
    type=float,
    default=120.0,
    help="Audio per committed part of the cache: what a crash can lose at most.",
)
@click.option("--workers", type=int, default=2, help="Decoding processes.")
@click.option("--overwrite", is_flag=True, help="Replace an existing cache instead of resuming.")
@click.option("--retry-skipped", is_flag=True, help="Try clips an earlier run skipped again.")
@click.option("--offline", is_flag=True, help="Never touch the network (as HF_HUB_OFFLINE=1).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--verbose", is_flag=True, help="Debug logging.")
def main(input_path: str, out: str, verbose: bool, quiet: bool, **options: object) -> None:
    """Extract backbone features of every clip in INPUT into one HDF5 cache.

    INPUT is a dataset root in the challenge layout (raw/, audio/, *_split.csv) or any folder of
    audio or video files. Re-running resumes; a cache written with other settings is refused.

    \b
    emi-extract data/sample --model fbank --out cache.h5
    emi-extract /data/vidmimic2 --split train --out vad.h5   # the VAD model, on a GPU
    """
    setup_logging(verbose)
    from emi_features.audio import DecodeError
    from emi_features.backbones import BackboneError
    from emi_features.dataset import DatasetError
    from emi_features.distributed import DeviceError
    from emi_features.extract import extract
    from emi_features.reader import CacheError

    try:
        result = extract(input_path, out=out, progress=not quiet, **options)
    except (DatasetError, BackboneError, CacheError, DeviceError, DecodeError) as error:
        raise click.ClickException(str(error)) from None
    except KeyboardInterrupt:
        raise click.ClickException(
            "interrupted: committed clips are kept; re-run to resume"
        ) from None
    if result.rank != 0:
        return
    if result.processed_clips or result.clips:
        click.echo(result.summary(), err=True)
    if result.clips == 0:
        raise click.ClickException(f"no clip could be processed ({len(result.skipped)} skipped)")
