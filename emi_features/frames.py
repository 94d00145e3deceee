"""The 20 ms frame grid of wav2vec2-style encoders, windows for long clips, and batch planning.

A frame t covers samples [320 t, 320 t + 400) at 16 kHz, so a clip of N >= 400 samples has
T = floor((N - 400) / 320) + 1 frames. Shorter clips are zero-padded to 400 samples (T = 1).
"""

from __future__ import annotations

from dataclasses import dataclass

FRAME_HOP = 320
RECEPTIVE_FIELD = 400
MIN_SAMPLES = RECEPTIVE_FIELD


def frame_count(num_samples: int) -> int:
    """Frames the encoder yields for `num_samples` (clips under 400 samples count as padded)."""
    return (max(int(num_samples), MIN_SAMPLES) - RECEPTIVE_FIELD) // FRAME_HOP + 1


@dataclass(frozen=True)
class Window:
    """One window of a long clip: samples [start, stop); it contributes frames [keep_from, keep_to)
    of the clip's grid, which are its local frames [keep_from - start // 320, ...)."""

    start: int
    stop: int
    keep_from: int
    keep_to: int

    @property
    def first_frame(self) -> int:
        return self.start // FRAME_HOP


def plan_windows(num_samples: int, window_samples: int, overlap_samples: int) -> list[Window]:
    """Split a clip into overlapping windows whose kept frames tile the whole-clip frame grid.

    Window starts are multiples of the hop, so every window's frames lie on the clip's grid;
    neighbouring windows overlap by `overlap_samples` and hand over at the middle of the overlap,
    so each kept frame has at least half the overlap of context on both sides. A clip that fits
    in one window gives one window keeping all its frames.
    """
    total = frame_count(num_samples)
    hop = FRAME_HOP
    # Both rounded down to whole hops (so every window starts on the grid), the overlap to at
    # least two hops and at most half a window (so windows advance).
    window_samples = max(hop * (window_samples // hop), 4 * hop)
    overlap_samples = min(
        max(hop * (overlap_samples // hop), 2 * hop), hop * (window_samples // hop // 2)
    )
    if num_samples <= window_samples:
        return [Window(0, num_samples, 0, total)]
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
            last_own = start // hop + frame_count(stop - start)  # one past this window's frames
            next_first = spans[index + 1][0] // hop
            keep_to = (next_first + last_own) // 2
        else:
            keep_to = total
        windows.append(Window(start, stop, keep_from, keep_to))
        keep_from = keep_to
    return windows


def plan_batches(
    lengths: dict[str, float], *, batch_seconds: float, window_seconds: float
) -> list[list[str]]:
    """Group clip ids into batches of similar length, each costing at most `batch_seconds` of
    padded audio (count x longest clip), one clip at least. Clips longer than `window_seconds`
    get a batch of their own (their windows are batched inside it).

    Deterministic for the same lengths, so an interrupted run re-plans the same batches.
    """
    order = sorted(lengths, key=lambda clip_id: (lengths[clip_id], clip_id))
    batches: list[list[str]] = []
    current: list[str] = []
    for clip_id in order:
        seconds = max(lengths[clip_id], RECEPTIVE_FIELD / 16_000)
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
