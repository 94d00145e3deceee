"""Decoding in DataLoader workers: each item is one planned part of the extraction, its clips
decoded, normalised as the backbone's feature extractor does, and padded to its grid's minimum."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from torch.utils.data import Dataset

from emi_features.audio.backbones import Backbone
from emi_features.audio.decode import DecodeError, load_audio
from emi_features.cache.schema import SAMPLE_RATE
from emi_features.core.dataset import Clip


@dataclass
class DecodedPart:
    """What a worker hands over: normalised clips (each (N,) float32), the planned batches as
    indices into them (skipped clips left out), and the skipped ids with reasons."""

    ids: list[str] = field(default_factory=list)
    waves: list[np.ndarray] = field(default_factory=list)
    num_samples: list[int] = field(default_factory=list)
    batches: list[list[int]] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)


class DecodeParts(Dataset):
    """Item k = part k (a list of batches) decoded and normalised as the backbone's feature
    extractor does."""

    def __init__(self, parts: list[list[list[Clip]]], backbone: Backbone):
        self.parts = parts
        self.extractor = backbone.feature_extractor
        self.min_samples = backbone.grid.min_samples

    def __len__(self) -> int:
        return len(self.parts)

    def __getitem__(self, index: int) -> DecodedPart:
        decoded = DecodedPart()
        for batch in self.parts[index]:
            members = []
            for clip in batch:
                try:
                    samples = load_audio(clip.path)
                except DecodeError as error:
                    decoded.skipped[clip.id] = str(error)
                    continue
                wave = self.extractor(samples, sampling_rate=SAMPLE_RATE, return_tensors="np")
                wave = wave["input_values"][0].astype(np.float32)
                if wave.size < self.min_samples:  # normalised over the clip, then zero-padded
                    wave = np.pad(wave, (0, self.min_samples - wave.size))
                members.append(len(decoded.ids))
                decoded.ids.append(clip.id)
                decoded.waves.append(wave)
                decoded.num_samples.append(int(samples.size))
            if members:
                decoded.batches.append(members)
        return decoded
