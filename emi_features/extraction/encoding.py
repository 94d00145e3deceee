"""A batch of decoded clips through the backbone: padded into one tensor, a clip longer than the
window run in overlapping windows, each clip's frames, frame VAD and means summarised into the
records the cache writes (`ClipFeatures`). Used by the audio runner (`runner`)."""

from __future__ import annotations

import logging

import numpy as np
import torch

from emi_features.audio.backbones import Backbone
from emi_features.cache.schema import SAMPLE_RATE, ClipFeatures
from emi_features.extraction.decoding import DecodedPart

log = logging.getLogger(__name__)


def _pad(waves: list[np.ndarray], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    longest = max(w.size for w in waves)
    values = np.zeros((len(waves), longest), dtype=np.float32)
    mask = np.zeros((len(waves), longest), dtype=np.int64)
    for row, wave in enumerate(waves):
        values[row, : wave.size] = wave
        mask[row, : wave.size] = 1
    return torch.from_numpy(values).to(device), torch.from_numpy(mask).to(device)


@torch.inference_mode()
def encode_clips(
    backbone: Backbone, waves: list[np.ndarray], *, device: torch.device, dtype: torch.dtype
) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
    """One padded batch through the backbone: per clip (frames (T, D), frame_vad (T, 3)) fp32,
    T on the backbone's grid."""
    values, mask = _pad(waves, device)
    # all clips of equal length: no padding, and the unmasked attention path is the faster one
    unpadded = all(w.size == waves[0].size for w in waves)
    encoded = backbone.encode(values.to(dtype), None if unpadded else mask)
    out = []
    for row, wave in enumerate(waves):
        count = backbone.grid.frame_count(wave.size)
        vad = encoded.frame_vad[row, :count].float() if encoded.frame_vad is not None else None
        out.append((encoded.frames[row, :count].float(), vad))
    return out


def encode_long_clip(
    backbone: Backbone,
    wave: np.ndarray,
    *,
    device: torch.device,
    dtype: torch.dtype,
    window_seconds: float,
    overlap_seconds: float,
    batch_seconds: float,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A clip longer than the window: overlapping windows, stitched onto the whole-clip grid.

    Memory is bounded by the window and batch, not the clip (frames are kept on the CPU).
    """
    windows = backbone.grid.plan_windows(
        wave.size, int(window_seconds * SAMPLE_RATE), int(overlap_seconds * SAMPLE_RATE)
    )
    per_batch = max(1, int(batch_seconds // window_seconds))
    frames, frame_vad = [], []
    for first in range(0, len(windows), per_batch):
        chunk = windows[first : first + per_batch]
        encoded = encode_clips(
            backbone, [wave[w.start : w.stop] for w in chunk], device=device, dtype=dtype
        )
        for window, (window_frames, window_vad) in zip(chunk, encoded, strict=True):
            keep = slice(window.keep_from - window.first_frame, window.keep_to - window.first_frame)
            frames.append(window_frames[keep].cpu())
            if window_vad is not None:
                frame_vad.append(window_vad[keep].cpu())
    return torch.cat(frames), (torch.cat(frame_vad) if frame_vad else None)


@torch.inference_mode()
def summarise(
    ids: list[str],
    encoded: list[tuple[torch.Tensor, torch.Tensor | None]],
    num_samples: list[int],
    backbone: Backbone,
) -> list[ClipFeatures]:
    """Per-clip records for a batch: fp32 means and the VAD head on them computed where the
    frames are, frames converted to float16 there too, then one transfer per group."""
    means = torch.stack([frames.float().mean(dim=0) for frames, _ in encoded])
    vads = (
        backbone.vad(means.to(next(backbone.parameters(), means).device)).float().cpu().numpy()
        if backbone.has_vad
        else None
    )
    lengths = [len(frames) for frames, _ in encoded]
    cuts = np.cumsum(lengths)[:-1]
    frames = np.split(torch.cat([f.to(torch.float16) for f, _ in encoded]).cpu().numpy(), cuts)
    frame_vad = [None] * len(encoded)
    if encoded[0][1] is not None:
        frame_vad = np.split(torch.cat([v.float() for _, v in encoded]).cpu().numpy(), cuts)
    means = means.cpu().numpy()
    return [
        ClipFeatures(
            id=clip_id,
            frames=frames[k],
            frame_vad=frame_vad[k],
            mean=means[k],
            vad=None if vads is None else vads[k],
            num_samples=num_samples[k],
        )
        for k, clip_id in enumerate(ids)
    ]


def encode_batch(
    backbone: Backbone,
    decoded: DecodedPart,
    batch: list[int],
    *,
    device: torch.device,
    dtype: torch.dtype,
    window_seconds: float,
    overlap_seconds: float,
    batch_seconds: float,
) -> list[ClipFeatures]:
    """One planned batch of a decoded part: short clips padded together, a long clip alone in
    windows. Returns the clips' records in batch order."""
    long = [k for k in batch if decoded.waves[k].size > window_seconds * SAMPLE_RATE]
    short = [k for k in batch if k not in long]
    records = []
    if short:
        encoded = encode_clips(
            backbone, [decoded.waves[k] for k in short], device=device, dtype=dtype
        )
        records += summarise(
            [decoded.ids[k] for k in short],
            encoded,
            [decoded.num_samples[k] for k in short],
            backbone,
        )
    for k in long:
        encoded = encode_long_clip(
            backbone,
            decoded.waves[k],
            device=device,
            dtype=dtype,
            window_seconds=window_seconds,
            overlap_seconds=overlap_seconds,
            batch_seconds=batch_seconds,
        )
        records += summarise([decoded.ids[k]], [encoded], [decoded.num_samples[k]], backbone)
    for record in records:
        if record.num_samples < backbone.grid.min_samples:
            log.info(
                "%s: %d samples, zero-padded to %d",
                record.id,
                record.num_samples,
                backbone.grid.min_samples,
            )
    return records
