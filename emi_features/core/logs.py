"""One line per message on stderr (`emi: WARNING: skip 00042: empty file 00042.mp3`), set up
without importing any heavy library: stage two's commands start before torch loads."""

from __future__ import annotations

import logging
import os
import sys

NOISY_LOGGERS = ("transformers", "huggingface_hub", "urllib3", "httpx", "h5py", "matplotlib")


def setup_logging(verbose: bool = False) -> None:
    """Configure the root logger once for a command; quiet the libraries' own chatter."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="emi: %(levelname)s: %(message)s",
        stream=sys.stderr,
    )
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    for noisy in NOISY_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.ERROR)


def summarise_ids(ids: list[str] | tuple[str, ...], shown: int = 20) -> str:
    """`00001, 00002, ... and 480 more`: a long id list as one short line."""
    ids = list(ids)
    text = ", ".join(ids[:shown])
    return text + (f" and {len(ids) - shown} more" if len(ids) > shown else "")
