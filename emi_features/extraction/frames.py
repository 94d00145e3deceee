"""Frame grids, windows for long clips, and batch planning.

A backbone declares its grid: frame t covers samples [hop t, hop t + receptive_field) at
16 kHz, so a clip of N >= receptive_field samples has T = floor((N - receptive_field) / hop) + 1
frames; shorter clips are zero-padded to the receptive field (T = 1). wav2vec2-style encoders
(and the default `fbank`) use a 320-sample hop and a 400-sample field: 50 frames/s.
"""

from __future__ import annotations

from dataclasses import dataclass

from emi_features.cache.schema import SAMPLE_RATE


@dataclass(frozen=True)
class FrameGrid:
    """Where a backbone's frames lie: `hop` and `receptive_field` in samples at `sample_rate`."""

    hop: int = 320
    receptive_field: int = 400
    sample_rate: int = SAMPLE_RATE

    @property
    def min_samples(self) -> int:
        """Shorter clips are zero-padded to this length (one frame)."""
        return self.receptive_field

    @property
    def frames_per_second(self) -> float:
        return self.sample_rate / self.hop

    def frame_count(self, num_samples: int) -> int:
        """Frames the encoder yields for `num_samples` (short clips count as padded)."""
        return (max(int(num_samples), self.min_samples) - self.receptive_field) // self.hop + 1

    def plan_windows(
        self, num_samples: int, window_samples: int, overlap_samples: int
    ) -> list[Window]:
        """Split a clip into overlapping windows whose kept frames tile the whole-clip grid.

        Window starts are multiples of the hop, so every window's frames lie on the clip's grid;
        neighbouring windows overlap by `overlap_samples` and hand over at the middle of the
        overlap, so each kept frame has at least half the overlap of context on both sides. A
        clip that fits in one window gives one window keeping all its frames.
        """
        total = self.frame_count(num_samples)
        hop = self.hop
        # Both rounded down to whole hops (so every window starts on the grid), the overlap to
        # at least two hops and at most half a window (so windows advance).
        window_samples = max(hop * (window_samples // hop), 4 * hop, self.receptive_field)
        overlap_samples = min(
            max(hop * (overlap_samples // hop), 2 * hop), hop * (window_samples // hop // 2)
        )
        if num_samples <= window_samples:
            return [Window(0, num_samples, 0, total, hop)]
        stride = window_samples - overlap_samples
        spans: list[tuple[int, int]] = []
        start = 0
        while True:
            stop = min(start + window_samples, num_samples)
            spans.append((start, stop))
            if stop >= num_samples:
                break
            start += stride
        windows = []
        keep_from = 0
        for index, (start, stop) in enumerate(spans):
            if index + 1 < len(spans):
                last_own = start // hop + self.frame_count(stop - start)  # one past its frames
                next_first = spans[index + 1][0] // hop
                keep_to = (next_first + last_own) // 2
            else:
                keep_to = total
            windows.append(Window(start, stop, keep_from, keep_to, hop))
            keep_from = keep_to
        return windows


WAV2VEC2_GRID = FrameGrid(hop=320, receptive_field=400)


def frame_count(num_samples: int, grid: FrameGrid = WAV2VEC2_GRID) -> int:
    """`grid.frame_count`: frames for `num_samples` on the grid (default: 20 ms wav2vec2)."""
    return grid.frame_count(num_samples)


def plan_windows(
    num_samples: int, window_samples: int, overlap_samples: int, grid: FrameGrid = WAV2VEC2_GRID
) -> list[Window]:
    """`grid.plan_windows` (default grid: 20 ms wav2vec2)."""
    return grid.plan_windows(num_samples, window_samples, overlap_samples)


@dataclass(frozen=True)
class Window:
    """One window of a long clip: samples [start, stop); it contributes frames [keep_from,
    keep_to) of the clip's grid, which are its local frames [keep_from - start // hop, ...)."""

    start: int
    stop: int
    keep_from: int
    keep_to: int
    hop: int = WAV2VEC2_GRID.hop

    @property
    def first_frame(self) -> int:
        return self.start // self.hop


def plan_batches(
    lengths: dict[str, float],
    *,
    batch_seconds: float,
    window_seconds: float,
    min_seconds: float = WAV2VEC2_GRID.min_samples / SAMPLE_RATE,
) -> list[list[str]]:
    """Group clip ids into batches of similar length, each costing at most `batch_seconds` of
    padded audio (count x longest clip), one clip at least. Clips longer than `window_seconds`
    get a batch of their own (their windows are batched inside it); clips shorter than
    `min_seconds` count as padded to it.

    Deterministic for the same lengths, so an interrupted run re-plans the same batches.
    """
    order = sorted(lengths, key=lambda clip_id: (lengths[clip_id], clip_id))
    batches: list[list[str]] = []
    current: list[str] = []
    for clip_id in order:
        seconds = max(lengths[clip_id], min_seconds)
        if seconds > window_seconds:
            batches.append([clip_id])
            continue
        if current and (len(current) + 1) * seconds > batch_seconds:
            batches.append(current)
            current = []
        current.append(clip_id)
    if current:
        batches.append(current)
    return batches


def split_by_cost(costs: list[float], parts: int) -> list[list[int]]:
    """Assign items to `parts` shares of near-equal total cost (longest first, to the lightest
    share). Returns the item indices of each share, each in ascending order."""
    loads = [0.0] * parts
    shares: list[list[int]] = [[] for _ in range(parts)]
    for index in sorted(range(len(costs)), key=lambda i: (-costs[i], i)):
        lightest = min(range(parts), key=lambda p: (loads[p], p))
        shares[lightest].append(index)
        loads[lightest] += costs[index]
    return [sorted(share) for share in shares]


def remaining_parts(parts: list[list[list[str]]], done: set[str]) -> list[list[list[str]]]:
    """The planned parts without the clips already done. A part committed whole (a resume)
    drops out, and the others keep their batches exactly, so a resumed run equals an
    uninterrupted one; a part that mixes done and new clips (extending a cache with another
    clip set) keeps only its new clips, never computing a clip twice."""
    todo = []
    for part in parts:
        batches = [[i for i in batch if i not in done] for batch in part]
        batches = [batch for batch in batches if batch]
        if batches:
            todo.append(batches)
    return todo


def plan_parts(
    batches: list[list[str]], lengths: dict[str, float], part_seconds: float
) -> list[list[list[str]]]:
    """Consecutive batches grouped until a part holds `part_seconds` of audio."""
    parts: list[list[list[str]]] = []
    current: list[list[str]] = []
    seconds = 0.0
    for batch in batches:
        current.append(batch)
        seconds += sum(lengths[i] for i in batch)
        if seconds >= part_seconds:
            parts.append(current)
            current, seconds = [], 0.0
    if current:
        parts.append(current)
    return parts
