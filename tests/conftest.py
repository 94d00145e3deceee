"""Shared fixtures: a tiny VAD-layout model saved to disk and a small synthetic dataset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from emi_features.backbones import VadWav2Vec2, default_feature_extractor, tiny_config
from emi_features.sample_data import generate_sample


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The VAD architecture from a tiny config, random weights, saved with save_pretrained."""
    directory = tmp_path_factory.mktemp("tiny-vad")
    torch.manual_seed(1)
    VadWav2Vec2(tiny_config()).save_pretrained(directory)
    default_feature_extractor().save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def sample_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The challenge layout: 8 train, 5 valid (one 40 s), 3 test clips, one of 0.064 s."""
    return generate_sample(
        tmp_path_factory.mktemp("sample"), train=8, valid=5, test=3, seed=3, long_seconds=40.0
    )


def write_wav(path: Path, seconds: float, rate: int = 16_000, channels: int = 1,
              seed: int = 0) -> np.ndarray:
    """A random-tone wav; returns the samples written, (N, channels) float32."""
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    t = np.arange(n) / rate
    data = np.stack(
        [0.3 * np.sin(2 * np.pi * rng.uniform(150, 600) * t) + 0.05 * rng.standard_normal(n)
         for _ in range(channels)], axis=1).astype(np.float32)
    soundfile.write(path, data, rate, subtype="FLOAT")
    return data
