"""The cache format in one place: group names, attribute keys, the VAD labels and width.

No heavy imports (no torch, no transformers): the writer, the reader and stage two all take
these names from here. See ARCHITECTURE.md for what each group holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

FORMAT = "emi-cache"
FORMAT_VERSION = 1

# Groups, each aligned to /ids (per clip) or to /offsets (per frame).
IDS = "ids"
OFFSETS = "offsets"
FRAMES = "frames"  # (F, D) float16: the backbone's hidden states, one row per frame
FRAME_VAD = "frame_vad"  # (F, VAD_DIM) float32: the VAD head on each frame
MEAN = "mean"  # (N, D) float32: mean of each clip's fp32 frames
VAD = "vad"  # (N, VAD_DIM) float32: the VAD head on /mean
NUM_SAMPLES = "num_samples"  # (N,) int64: decoded length at SAMPLE_RATE
SKIPPED_IDS = "skipped/ids"
SKIPPED_REASONS = "skipped/reasons"
FEATURES = "features"  # /features/<name>: further streams
TEXT = "text"  # /text: transcripts and their language, keyed by id (see cache.transcripts)
FRAME_GROUPS = (FRAMES, FRAME_VAD)

VAD_LABELS: tuple[str, ...] = ("arousal", "dominance", "valence")
VAD_DIM = len(VAD_LABELS)
SAMPLE_RATE = 16_000  # every backbone reads 16 kHz mono


class Attr:
    """Root attribute keys."""

    FORMAT = "format"
    FORMAT_VERSION = "format_version"
    BACKBONE = "backbone"
    FINGERPRINT = "backbone_fingerprint"
    HIDDEN_SIZE = "hidden_size"
    LAYER = "layer"
    SOURCE = "source"
    DTYPE = "dtype"
    WINDOW_SECONDS = "window_seconds"
    OVERLAP_SECONDS = "overlap_seconds"
    SAMPLE_RATE = "sample_rate"
    FRAME_HOP = "frame_hop"
    FRAME_RATE = "frame_rate"  # a video stream's samples per second (no audio grid)
    CROP = "crop"
    RUNTIME = "runtime"  # onnxruntime / openvino (absent: eager torch)
    PRECISION = "precision"  # int8 (absent: fp32 weights)
    VAD_LABELS = "vad_labels"
    PACKAGE_VERSION = "package_version"
    COMPLETE = "complete"
    PARTS = "parts"


# Attributes that may differ between runs writing the same cache; every other one must match.
VOLATILE_ATTRS = frozenset({Attr.BACKBONE, Attr.PACKAGE_VERSION, Attr.COMPLETE, Attr.PARTS})
# What older writers left out: the wav2vec2 grid at 16 kHz.
DEFAULT_FRAME_HOP = 320


def decode_strings(dataset: Any) -> list[str]:
    """A string dataset's values as str (h5py gives bytes for utf-8 datasets)."""
    return [s.decode() if isinstance(s, bytes) else str(s) for s in dataset[()]]


def computed_with(attrs: dict) -> str:
    """How a cache's frames were computed: `torch fp32` (absent attributes: eager fp32, as every
    cache before the compiled path), `onnxruntime int8`, ... Runs and caches never mix these."""
    return f"{attrs.get(Attr.RUNTIME, 'torch')} {attrs.get(Attr.PRECISION, 'fp32')}"


def frames_per_second(attrs: dict) -> float:
    """The frame rate of a cache's frame groups, from its own attributes (50.0 for a 20 ms hop;
    a video extraction's own `frame_rate`)."""
    if Attr.FRAME_RATE in attrs:
        return float(attrs[Attr.FRAME_RATE])
    rate = int(attrs.get(Attr.SAMPLE_RATE, SAMPLE_RATE))
    return rate / int(attrs.get(Attr.FRAME_HOP, DEFAULT_FRAME_HOP))


def read_attrs(handle: Any) -> dict[str, Any]:
    return {k: (v.decode() if isinstance(v, bytes) else v) for k, v in handle.attrs.items()}


def settings_mismatch(path: Path, found: dict[str, Any], wanted: dict[str, Any]) -> str | None:
    keys = sorted((set(found) | set(wanted)) - VOLATILE_ATTRS)
    differ = [k for k in keys if str(found.get(k)) != str(wanted.get(k))]
    if not differ:
        return None
    detail = "; ".join(
        f"{k}: cache has {found.get(k)!r}, this run {wanted.get(k)!r}" for k in differ
    )
    return f"{path} was written with other settings ({detail}); use --overwrite or another --out"


class CacheError(ValueError):
    """A cache that cannot be used as asked; the message is one line for the user."""


@dataclass
class ClipFeatures:
    """One extracted clip, as stage one computes it.

    frames: (T, D) float16 (float32 is converted); frame_vad: (T, VAD_DIM) or None; mean: (D,)
    float32 mean of the fp32 frames; vad: (VAD_DIM,) the VAD head on the mean, or None;
    num_samples at 16 kHz.
    """

    id: str
    frames: np.ndarray
    frame_vad: np.ndarray | None
    mean: np.ndarray
    vad: np.ndarray | None
    num_samples: int
