"""The 20 ms frame grid, long-clip windows and batch planning."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from emi_features.audio.backbones import load_backbone
from emi_features.extraction.frames import frame_count, plan_batches, plan_windows, split_by_cost


@pytest.mark.parametrize("num_samples", [400, 719, 720, 721, 16_000, 16_001, 33_333])
def test_frame_count_matches_the_conv_stack(num_samples):
    backbone = load_backbone("tiny-random-untrained")
    with torch.inference_mode():
        frames = backbone.encode(torch.randn(1, num_samples), torch.ones(1, num_samples)).frames
    assert frames.shape[1] == frame_count(num_samples) == (num_samples - 400) // 320 + 1


def test_short_clips_count_as_padded_to_400():
    assert frame_count(1) == frame_count(399) == frame_count(400) == 1


@pytest.mark.parametrize("seed", range(20))
def test_windows_tile_the_whole_clip_grid(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 2_000_000))
    windows = plan_windows(n, int(rng.integers(2_000, 500_000)), int(rng.integers(0, 100_000)))
    assert windows[0].keep_from == 0 and windows[-1].keep_to == frame_count(n)
    for before, after in zip(windows[:-1], windows[1:], strict=True):
        assert before.keep_to == after.keep_from
        assert after.start % 320 == 0
    for window in windows:
        assert window.first_frame <= window.keep_from < window.keep_to
        assert window.keep_to <= window.first_frame + frame_count(window.stop - window.start)


def test_batches_are_by_length_within_budget_and_deterministic():
    rng = np.random.default_rng(0)
    lengths = {f"{i:05d}": float(rng.uniform(0.1, 12)) for i in range(300)}
    lengths["long"] = 100.0
    batches = plan_batches(lengths, batch_seconds=60, window_seconds=30)
    assert batches == plan_batches(
        dict(reversed(lengths.items())), batch_seconds=60, window_seconds=30
    )
    assert sorted(i for b in batches for i in b) == sorted(lengths)
    assert ["long"] in batches
    for batch in batches:
        if batch != ["long"]:
            assert len(batch) * max(lengths[i] for i in batch) <= 60


def test_split_by_cost_balances_total_length():
    costs = [10.0, 9, 8, 1, 1, 1, 1, 1]
    shares = split_by_cost(costs, 2)
    loads = [sum(costs[i] for i in share) for share in shares]
    assert sorted(i for s in shares for i in s) == list(range(8))
    assert abs(loads[0] - loads[1]) <= 2
