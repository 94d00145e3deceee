"""Stage one: decode clips, run the backbone once, stream the outputs into the feature cache.

Decoding runs in DataLoader worker processes, ahead of inference. Batches are planned by length
from the whole clip list (deterministically) and grouped into parts of at least
`part_seconds` of audio; a part is the unit the cache commits, so an interrupted run resumes
with exactly the batches it would have run.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from emi_features import __version__
from emi_features.audio.backbones import Backbone, BackboneError, load_backbone
from emi_features.audio.compiled import check_runtime, compiled_backbone
from emi_features.audio.decode import DecodeError, probe_seconds
from emi_features.cache.atomic import WriteError
from emi_features.cache.attach import refuse_held
from emi_features.cache.reader import CacheError
from emi_features.cache.schema import SAMPLE_RATE, VAD_LABELS, Attr, ClipFeatures
from emi_features.cache.writer import CacheWriter
from emi_features.core.dataset import DatasetError, find_clips
from emi_features.core.devices import DeviceError, default_device
from emi_features.core.hub import ModelLoadError
from emi_features.extraction.background import BackgroundWriter
from emi_features.extraction.config import ExtractConfig
from emi_features.extraction.decoding import DecodedPart, DecodeParts
from emi_features.extraction.distributed import Ranks
from emi_features.extraction.frames import plan_batches, plan_parts, remaining_parts, split_by_cost
from emi_features.extraction.processes import die_with_parent

log = logging.getLogger(__name__)
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# What `extract` raises for bad input or a machine problem: one line for the user, no traceback.
USER_ERRORS = (
    DatasetError, BackboneError, ModelLoadError, CacheError, DeviceError, DecodeError, WriteError,
)  # fmt: skip


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


@dataclass
class ExtractResult:
    """What an extraction did: clips written (in the whole cache), skipped ids, timings."""

    path: Path
    clips: int
    skipped: dict[str, str]
    processed_clips: int
    processed_seconds: float
    wall_seconds: float
    rank: int = 0  # under torchrun only rank 0 reports: it consolidated the cache
    medium: str = "audio"  # what processed_seconds measures: audio, or video

    def summary(self) -> str:
        rate = self.processed_seconds / max(self.wall_seconds, 1e-9)
        return (
            f"{self.path}: {self.clips} clips in the cache, {len(self.skipped)} skipped; this run "
            f"{self.processed_clips} clips, {self.processed_seconds / 3600:.2f} h of "
            f"{self.medium} in {self.wall_seconds:.1f} s ({rate:.1f} {self.medium} s/s)"
        )


def default_batch_seconds(device: torch.device) -> float:
    """Padded audio per batch: 0 (one clip per batch) on a CPU, where batching measured slower
    (bench/extraction.py), 160 s on a GPU, which needs large matrices to fill."""
    return 0.0 if device.type == "cpu" else 160.0


def cache_attrs(config: ExtractConfig, backbone: Backbone, dtype: str) -> dict[str, Any]:
    """The root attributes that describe what a cache holds and how it was made."""
    attrs: dict[str, Any] = {
        Attr.BACKBONE: config.model,
        Attr.FINGERPRINT: backbone.fingerprint,
        Attr.HIDDEN_SIZE: backbone.hidden_size,
        Attr.LAYER: "last" if config.layer is None else str(config.layer),
        Attr.SOURCE: config.source,
        Attr.DTYPE: dtype,
        Attr.WINDOW_SECONDS: float(config.window_seconds),
        Attr.OVERLAP_SECONDS: float(config.overlap_seconds),
        Attr.SAMPLE_RATE: backbone.grid.sample_rate,
        Attr.FRAME_HOP: backbone.grid.hop,
        Attr.PACKAGE_VERSION: __version__,
    }
    if backbone.has_vad:
        attrs[Attr.VAD_LABELS] = ",".join(VAD_LABELS)
    if config.runtime != "torch" or config.precision != "fp32":  # absent: eager fp32, as ever
        attrs.update({Attr.RUNTIME: config.runtime, Attr.PRECISION: config.precision})
    return attrs


@dataclass
class Planned:
    """An extraction made ready: its backbone on the device, its writer, and this rank's parts
    (lists of batches of clips) with the clips' lengths in seconds."""

    backbone: Backbone
    writer: CacheWriter
    parts: list[list[list[str]]]
    lengths: dict[str, float]
    by_id: dict[str, Any]
    options: dict[str, Any]  # encode_batch's settings


def extract(
    input_path: str | Path,
    *,
    out: str | Path,
    config: ExtractConfig | None = None,
    progress: bool = True,
    **overrides: Any,
) -> ExtractResult:
    """Extract every clip of `input_path` (see `find_clips`) into the cache `out`.

    Settings come from `config` (defaults: `ExtractConfig()`), with keyword `overrides` on top.
    Resumes an interrupted cache; refuses one written with other settings unless `overwrite`.
    Under torchrun, each rank takes a share of the batches balanced by audio length.
    """
    config = replace(config or ExtractConfig(), **overrides)
    started = time.perf_counter()
    ranks = Ranks.from_environment(config.device or default_device())
    planned = _plan(input_path, Path(out), config, ranks)
    with contextlib.closing(planned.writer):  # the lock is released however the run ends
        clips, samples = _run_parts(planned, config.workers, progress)
        clips_written, skipped = ranks.finish(planned.writer)
        result = ExtractResult(
            path=Path(out),
            clips=clips_written,
            skipped=skipped,
            processed_clips=int(ranks.sum(clips)),
            processed_seconds=ranks.sum(samples) / SAMPLE_RATE,
            wall_seconds=time.perf_counter() - started,
            rank=ranks.rank,
        )
    ranks.close()
    return result


def _plan(input_path: str | Path, out: Path, config: ExtractConfig, ranks: Ranks) -> Planned:
    """Load the backbone, open the cache (resuming it), plan the batches and parts, and take
    this rank's share of the parts not yet done."""
    device = ranks.device
    dtype = config.dtype or ("float32" if device.type == "cpu" else "bfloat16")
    batch_seconds = config.batch_seconds
    if batch_seconds is None:
        batch_seconds = default_batch_seconds(device)
    if device.type == "cpu" and dtype != "float32":
        log.warning("%s on a CPU is much slower than float32", dtype)
    refuse_held(out)  # before the backbone loads
    clips = find_clips(Path(input_path), split=config.split, source=config.source)
    check_runtime(config.runtime, config.precision, device, batched=batch_seconds > 0)
    if config.runtime != "torch" and dtype != "float32":
        raise BackboneError(f"--runtime {config.runtime} computes in float32: leave --dtype")
    backbone = load_backbone(config.model, layer=config.layer, offline=config.offline)
    backbone.to(device=device, dtype=DTYPES[dtype])
    backbone = compiled_backbone(backbone, config.runtime, config.precision)
    attrs = cache_attrs(config, backbone, dtype)
    writer = ranks.open_writer(
        lambda **kw: CacheWriter(
            out, attrs, overwrite=config.overwrite, retry_skipped=config.retry_skipped, **kw
        )  # fmt: skip
    )
    try:
        by_id, lengths, todo, mine = _my_parts(clips, writer, backbone, batch_seconds, config,
                                               ranks)  # fmt: skip
    except BaseException:
        writer.close()  # its lock is released however planning ends
        raise
    log.info("%d clips, %d already in %s; this %s runs %d parts", len(clips),
             len(clips) - sum(len(b) for part in todo for b in part), out, ranks.describe(),
             len(mine))  # fmt: skip
    options = {"device": device, "dtype": DTYPES[dtype], "batch_seconds": batch_seconds,
               "window_seconds": config.window_seconds,
               "overlap_seconds": config.overlap_seconds}  # fmt: skip
    return Planned(backbone, writer, mine, lengths, by_id, options)


def _my_parts(clips: list, writer: CacheWriter, backbone: Backbone, batch_seconds: float,
              config: ExtractConfig, ranks: Ranks) -> tuple[dict, dict, list, list]:  # fmt: skip
    """Every clip's length, the batches and parts planned from them (the same on every rank and
    every run), the parts not yet done, and this rank's share of them."""
    by_id = {clip.id: clip for clip in clips}
    lengths = dict(zip(by_id, ranks.map_threads(probe_seconds, [c.path for c in clips]),
                       strict=True))  # fmt: skip
    batches = plan_batches(lengths, batch_seconds=batch_seconds,
                           window_seconds=config.window_seconds,
                           min_seconds=backbone.grid.min_samples / SAMPLE_RATE)  # fmt: skip
    parts = plan_parts(batches, lengths, config.part_seconds)
    done = writer.done_ids
    ranks.barrier()  # every rank must see the same finished set before any rank writes
    todo = remaining_parts(parts, done)
    costs = [sum(len(b) * max(lengths[i] for i in b) for b in part) for part in todo]
    mine = [todo[k] for k in split_by_cost(costs, ranks.world_size)[ranks.rank]]
    return by_id, lengths, todo, mine


def _run_parts(planned: Planned, workers: int, progress: bool) -> tuple[int, int]:
    """Decode this rank's parts in worker processes, encode them, write each as it is done
    (on a background thread); the clips and audio samples processed."""
    by_id, lengths = planned.by_id, planned.lengths
    loader = DataLoader(
        DecodeParts([[[by_id[i] for i in b] for b in part] for part in planned.parts],
                    planned.backbone),
        batch_size=None, num_workers=workers, prefetch_factor=2 if workers else None,
        worker_init_fn=die_with_parent,
    )  # fmt: skip
    total_seconds = sum(lengths[i] for part in planned.parts for b in part for i in b)
    bar = tqdm(total=round(total_seconds, 1), unit="s", unit_scale=True, desc="audio",
               disable=not progress or None, dynamic_ncols=True)  # fmt: skip
    clips, samples = 0, 0
    background = BackgroundWriter(planned.writer)
    try:
        with bar:
            for decoded in loader:
                for clip_id, reason in decoded.skipped.items():
                    log.warning("skip %s: %s", clip_id, reason)
                records = [
                    record
                    for batch in decoded.batches
                    for record in encode_batch(planned.backbone, decoded, batch, **planned.options)
                ]
                background.write_part(records, decoded.skipped)
                clips += len(records)
                samples += sum(decoded.num_samples)
                bar.update(round(sum(lengths[i] for i in decoded.ids + list(decoded.skipped)), 1))
                bar.set_postfix(clips=clips, skipped=len(decoded.skipped), refresh=False)
    finally:
        background.close()  # an interrupted run still commits what it computed
    return clips, samples
