"""Cache groups loaded once into memory, in label order; batches are sliced from them.

Inputs a head can read (each only when the cache has it):
- `frames`: (F, D) float16, every clip's first `max_seconds` of frames, with `offsets`;
  `frame_vad`: (F, 3) float32 alongside (the VAD head on each frame);
- clip vectors: `mean` (N, D) the global mean vector, `vad` (N, 3) the clip VAD prediction,
  `frame_stats` (N, 2D) mean and standard deviation over the cropped frames,
  `frame_vad_stats` (N, 6) the same for frame VAD, and `features/<name>` for any extra group
  under `/features/` (a per-clip array as is, a frame group pooled to mean and std).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch.nn.utils.rnn import pad_sequence

from emi_features.cache.reader import FeatureCache
from emi_features.cache.schema import FEATURES, FRAME_VAD, FRAMES, MEAN, VAD, VAD_DIM
from emi_features.cache.streams import CLIP
from emi_heads.heads.reads import LAYERS
from emi_heads.training.config import InputSpec
from emi_heads.training.pooled_stats import (
    block_rows,
    cache_frame_stats,
    clip_blocks,
    pooled_stats,
)


def _read_clip_rows(
    dataset, source_offsets: np.ndarray, rows: list[int], max_frames: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """Rows of `rows` clips (cropped to max_frames) read straight into one array, clip by clip."""
    lengths = np.diff(source_offsets)[rows]
    if max_frames is not None:
        lengths = np.minimum(lengths, max_frames)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    out = np.empty((int(offsets[-1]), dataset.shape[1]), dtype=dataset.dtype)
    for k, row in enumerate(rows):
        if lengths[k]:
            start = int(source_offsets[row])
            dataset.read_direct(
                out, np.s_[start : start + lengths[k]], np.s_[offsets[k] : offsets[k + 1]]
            )
    return out, offsets


def _pooled_in_blocks(
    dataset, source_offsets: np.ndarray, rows: list[int], max_frames: int | None
) -> np.ndarray:
    """(len(rows), 2d) float32: each clip's cropped frames' mean and sd, read a block of clips
    at a time (`block_rows`), so that pooling a stream never holds more than a block of it."""
    lengths = np.diff(source_offsets)[rows]
    if max_frames is not None:
        lengths = np.minimum(lengths, max_frames)
    out = np.zeros((len(rows), 2 * dataset.shape[1]), dtype=np.float32)
    for first, last in clip_blocks(lengths, block_rows(dataset.shape[1])):
        frames, offsets = _read_clip_rows(dataset, source_offsets, rows[first:last], max_frames)
        out[first:last] = pooled_stats(frames, np.diff(offsets))
    return out


@dataclass
class Sequences:
    """A frame stream's cropped frames (F, D) float16 with `offsets` (N+1,): what a sequence
    head reads of `/features/NAME`. A clip the stream lacks holds one zero frame."""

    frames: torch.Tensor
    offsets: torch.Tensor

    def pad(self, index: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, D) float32 padded frames and (B,) lengths of the clips at `index`."""
        starts, stops = self.offsets[index], self.offsets[index + 1]
        spans = zip(starts.tolist(), stops.tolist(), strict=True)
        padded = pad_sequence([self.frames[a:b].float() for a, b in spans], batch_first=True)
        return padded.to(device), stops - starts

    def subset(self, rows: torch.Tensor) -> Sequences:
        spans = [(int(self.offsets[k]), int(self.offsets[k + 1])) for k in rows.tolist()]
        lengths = torch.tensor([b - a for a, b in spans], dtype=torch.int64)
        offsets = torch.cat([torch.zeros(1, dtype=torch.int64), lengths.cumsum(0)])
        return Sequences(torch.cat([self.frames[a:b] for a, b in spans]), offsets)

    def join(self, other: Sequences) -> Sequences:
        offsets = torch.cat([self.offsets, other.offsets[1:] + self.offsets[-1]])
        return Sequences(torch.cat([self.frames, other.frames]), offsets)


@dataclass
class Inputs:
    """The loaded inputs of N clips, in the order of `ids`."""

    ids: list[str]
    vectors: dict[str, torch.Tensor]
    frames: torch.Tensor | None = None
    frame_vad: torch.Tensor | None = None
    offsets: torch.Tensor | None = None
    sequences: dict[str, Sequences] = field(default_factory=dict)  # frame streams, by name
    layers: dict[str, int] = field(default_factory=dict)  # hidden layers of a layered vector
    offered: tuple[str, ...] = ()  # every stream of the cache, read or not (for messages)

    @property
    def dims(self) -> dict[str, int]:
        """Width of every input: what a head is built for."""
        dims = {name: int(v.shape[1]) for name, v in self.vectors.items()}
        if self.frames is not None:
            dims["frames"] = int(self.frames.shape[1])
        if self.frame_vad is not None:
            dims["frame_vad"] = VAD_DIM
        dims.update({f"seq/{n}": int(q.frames.shape[1]) for n, q in self.sequences.items()})
        dims.update({f"{LAYERS}/{n}": count for n, count in self.layers.items()})
        return dims

    @property
    def lengths(self) -> torch.Tensor | None:
        """(N,) frames per clip after the crop, when frames are loaded."""
        return None if self.offsets is None else self.offsets[1:] - self.offsets[:-1]

    def __len__(self) -> int:
        return len(self.ids)

    def _frame_groups(self) -> tuple[Sequences | None, Sequences | None]:
        """The main frames and frame VAD as sequences over the shared offsets."""
        if self.frames is None or self.offsets is None:
            return None, None
        frame_vad = None if self.frame_vad is None else Sequences(self.frame_vad, self.offsets)
        return Sequences(self.frames, self.offsets), frame_vad

    def _with(self, ids: list[str], vectors: dict, groups: tuple, sequences: dict) -> Inputs:
        frames, frame_vad = groups
        return Inputs(
            ids,
            vectors,
            None if frames is None else frames.frames,
            None if frame_vad is None else frame_vad.frames,
            None if frames is None else frames.offsets,
            sequences,
            self.layers,
            self.offered,
        )

    def join(self, other: Inputs) -> Inputs:
        """These clips followed by `other`'s (the same inputs loaded for other ids)."""
        groups = [
            None if mine is None or theirs is None else mine.join(theirs)
            for mine, theirs in zip(self._frame_groups(), other._frame_groups(), strict=True)
        ]
        return self._with(
            self.ids + other.ids,
            {k: torch.cat([v, other.vectors[k]]) for k, v in self.vectors.items()},
            tuple(groups),
            {n: q.join(other.sequences[n]) for n, q in self.sequences.items()},
        )

    def subset(self, rows: list[int] | np.ndarray) -> Inputs:
        """The inputs of the clips at `rows`, in that order (folds are cut from one load)."""
        index = torch.as_tensor(np.asarray(rows, dtype=np.int64))
        groups = tuple(None if g is None else g.subset(index) for g in self._frame_groups())
        return self._with(
            [self.ids[k] for k in index.tolist()],
            {name: v[index] for name, v in self.vectors.items()},
            groups,
            {n: q.subset(index) for n, q in self.sequences.items()},
        )

    def batch(self, index: torch.Tensor, device: torch.device) -> dict[str, torch.Tensor]:
        """Clip vectors (B, d) and, when loaded, padded frames (B, T, D) float32 with `lengths`
        (B,); frame VAD, when loaded, is its own (B, T, 3); each frame stream NAME is
        `seq/NAME` with `lengths/NAME`."""
        batch = {name: v[index].to(device, non_blocking=True) for name, v in self.vectors.items()}
        frames, frame_vad = self._frame_groups()
        if frames is not None:  # every clip has at least one frame
            batch["frames"], batch["lengths"] = frames.pad(index, device)
        if frame_vad is not None:
            batch["frame_vad"], _ = frame_vad.pad(index, device)
        for name, sequences in self.sequences.items():
            batch[f"seq/{name}"], batch[f"lengths/{name}"] = sequences.pad(index, device)
        return batch


def drop_streams(
    batch: dict[str, torch.Tensor], probability: float, generator: torch.Generator
) -> dict[str, torch.Tensor]:
    """Modality dropout: for each `/features` stream and clip, with `probability`, the clip's
    input is made what a clip the stream lacks reads (a zero vector; one zero frame)."""
    if probability <= 0:
        return batch
    out = dict(batch)
    for name in [n for n in batch if n.startswith(f"{FEATURES}/")]:
        drop = torch.rand(len(batch[name]), generator=generator) < probability
        if not drop.any():
            continue
        drop = drop.to(batch[name].device)
        out[name] = batch[name].masked_fill(drop[:, None], 0.0)
        sequence, lengths = f"seq/{name}", f"lengths/{name}"
        if sequence in batch:
            out[sequence] = batch[sequence].masked_fill(drop[:, None, None], 0.0)
            out[lengths] = torch.where(drop.to(batch[lengths].device), 1, batch[lengths])
    return out


def load_inputs(cache: FeatureCache, ids: list[str], spec: InputSpec) -> Inputs:
    """Read what a head needs (`spec`) for `ids` (all in the cache) into memory, one pass per
    group. The crop `spec.max_seconds` is turned into frames with the cache's own frame rate."""
    rows = [cache.index(i) for i in ids]
    max_frames = None
    if spec.seconds_of(FRAMES) is not None:
        max_frames = max(1, int(spec.seconds_of(FRAMES) * cache.frames_per_second))
    vectors: dict[str, torch.Tensor] = {}
    vectors["mean"] = torch.from_numpy(cache.read(MEAN)[rows].astype(np.float32))
    if spec.use_vad and VAD in cache:
        vectors["vad"] = torch.from_numpy(cache.read(VAD)[rows].astype(np.float32))
    vectors["frame_stats"] = torch.from_numpy(cache_frame_stats(cache, FRAMES, max_frames)[rows])
    with_frame_vad = spec.use_vad and FRAME_VAD in cache
    if with_frame_vad:
        stats = cache_frame_stats(cache, FRAME_VAD, max_frames)
        vectors["frame_vad_stats"] = torch.from_numpy(stats[rows])
    frames = frame_vad = offsets = None
    if spec.need_frames:  # only the sequence heads hold every frame in memory
        frames, offsets = _read_clip_rows(cache.dataset(FRAMES), cache.offsets, rows, max_frames)
        if with_frame_vad:
            frame_vad, _ = _read_clip_rows(
                cache.dataset(FRAME_VAD), cache.offsets, rows, max_frames
            )
    sequences: dict[str, Sequences] = {}
    layers: dict[str, int] = {}
    for name in cache.streams():  # /features/NAME: pooled with the stream's own frame rate
        if spec.streams is not None and name not in spec.streams:
            continue  # a stream the head does not read is never read
        stream = cache.stream_view(name)
        if stream.kind == CLIP:  # missing clips are zero rows
            values = stream.values[()][rows]
            if f"{FEATURES}/{name}" in spec.unit_length:  # zero rows stay zero
                values = values / np.maximum(np.linalg.norm(values, axis=1, keepdims=True), 1e-12)
            if int(stream.attrs.get("layers", 0)) > 1:  # every hidden layer's mean and sd
                layers[f"{FEATURES}/{name}"] = int(stream.attrs["layers"])
        else:  # a frame stream with its own offsets and frame rate
            rate = float(stream.attrs.get("frame_rate", cache.frames_per_second))
            seconds = spec.seconds_of(f"{FEATURES}/{name}")
            crop = None if seconds is None else max(1, int(seconds * rate))
            if stream.attrs.get("unit") == "token":  # text tokens: no seconds to crop by
                crop = None
            if spec.need_frames:  # sequence heads read the stream's frames too
                extra, extra_offsets = _read_clip_rows(stream.frames, stream.offsets, rows, crop)
                sequences[f"{FEATURES}/{name}"] = _with_a_frame_each(extra, extra_offsets)
            values = _pooled_in_blocks(stream.frames, stream.offsets, rows, crop)
        vectors[f"{FEATURES}/{name}"] = torch.from_numpy(np.asarray(values, dtype=np.float32))
    return Inputs(
        ids=list(ids),
        vectors=vectors,
        frames=None if frames is None else torch.from_numpy(frames),
        frame_vad=None if frame_vad is None else torch.from_numpy(frame_vad),
        offsets=None if offsets is None else torch.from_numpy(offsets),
        sequences=sequences,
        layers=layers,
        offered=tuple(f"{FEATURES}/{name}" for name in cache.streams()),
    )


def _with_a_frame_each(frames: np.ndarray, offsets: np.ndarray) -> Sequences:
    """Frames and offsets where a clip without frames (missing from the stream) has one zero
    frame, so that every sequence has a last state."""
    lengths = np.diff(offsets)
    if (lengths > 0).all():
        return Sequences(torch.from_numpy(frames), torch.from_numpy(offsets.astype(np.int64)))
    blocks = [
        frames[a:b] if b > a else np.zeros((1, frames.shape[1]), frames.dtype)
        for a, b in zip(offsets[:-1], offsets[1:], strict=True)
    ]
    new_offsets = np.concatenate([[0], np.cumsum(np.maximum(lengths, 1))]).astype(np.int64)
    return Sequences(torch.from_numpy(np.concatenate(blocks)), torch.from_numpy(new_offsets))


BUCKET_BATCHES = 50  # batches per bucket: clips of similar length, drawn from a wide pool


def batch_order(
    count: int,
    batch_size: int,
    generator: torch.Generator,
    lengths: torch.Tensor | None = None,
) -> list[torch.Tensor]:
    """One epoch's batches of clip indices, shuffled.

    With `lengths` (sequence heads), clips are bucketed by length so that a padded batch wastes
    little: shuffle, cut into pools of BUCKET_BATCHES batches, sort each pool by length, cut it
    into batches, then shuffle all batches. Every clip still appears once per epoch, and which
    clips share a batch changes from epoch to epoch.
    """
    order = torch.randperm(count, generator=generator)
    if lengths is None:
        return list(order.split(batch_size))
    batches: list[torch.Tensor] = []
    for pool in order.split(batch_size * BUCKET_BATCHES):
        by_length = pool[torch.argsort(lengths[pool], stable=True)]
        batches.extend(by_length.split(batch_size))
    shuffle = torch.randperm(len(batches), generator=generator).tolist()
    return [batches[k] for k in shuffle]
