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
from emi_features.cache.schema import SAMPLE_RATE, VAD_LABELS, Attr
from emi_features.cache.writer import CacheWriter
from emi_features.core.dataset import DatasetError, find_clips
from emi_features.core.devices import DeviceError, default_device
from emi_features.core.hub import ModelLoadError
from emi_features.extraction.background import BackgroundWriter
from emi_features.extraction.config import ExtractConfig
from emi_features.extraction.decoding import DecodeParts
from emi_features.extraction.distributed import Ranks
from emi_features.extraction.encoding import encode_batch
from emi_features.extraction.frames import plan_batches, plan_parts, remaining_parts, split_by_cost
from emi_features.extraction.processes import die_with_parent

log = logging.getLogger(__name__)
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# What `extract` raises for bad input or a machine problem: one line for the user, no traceback.
USER_ERRORS = (
    DatasetError,
    BackboneError,
    ModelLoadError,
    CacheError,
    DeviceError,
    DecodeError,
    WriteError,
)


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
        )
    )
    try:
        by_id, lengths, todo, mine = _my_parts(
            clips, writer, backbone, batch_seconds, config, ranks
        )
    except BaseException:
        writer.close()  # its lock is released however planning ends
        raise
    log.info(
        "%d clips, %d already in %s; this %s runs %d parts",
        len(clips),
        len(clips) - sum(len(b) for part in todo for b in part),
        out,
        ranks.describe(),
        len(mine),
    )
    options = {
        "device": device,
        "dtype": DTYPES[dtype],
        "batch_seconds": batch_seconds,
        "window_seconds": config.window_seconds,
        "overlap_seconds": config.overlap_seconds,
    }
    return Planned(backbone, writer, mine, lengths, by_id, options)


def _my_parts(
    clips: list,
    writer: CacheWriter,
    backbone: Backbone,
    batch_seconds: float,
    config: ExtractConfig,
    ranks: Ranks,
) -> tuple[dict, dict, list, list]:
    """Every clip's length, the batches and parts planned from them (the same on every rank and
    every run), the parts not yet done, and this rank's share of them."""
    by_id = {clip.id: clip for clip in clips}
    lengths = dict(
        zip(by_id, ranks.map_threads(probe_seconds, [c.path for c in clips]), strict=True)
    )
    batches = plan_batches(
        lengths,
        batch_seconds=batch_seconds,
        window_seconds=config.window_seconds,
        min_seconds=backbone.grid.min_samples / SAMPLE_RATE,
    )
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
        DecodeParts(
            [[[by_id[i] for i in b] for b in part] for part in planned.parts], planned.backbone
        ),
        batch_size=None,
        num_workers=workers,
        prefetch_factor=2 if workers else None,
        worker_init_fn=die_with_parent,
    )
    total_seconds = sum(lengths[i] for part in planned.parts for b in part for i in b)
    bar = tqdm(
        total=round(total_seconds, 1),
        unit="s",
        unit_scale=True,
        desc="audio",
        disable=not progress or None,
        dynamic_ncols=True,
    )
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
