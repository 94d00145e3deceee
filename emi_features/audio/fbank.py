"""`fbank` (20 ms hop) and `fbank-10ms`: weight-free log-mel filterbank frames, a built-in
backbone added as its own module (see `backbones.BUILT_IN_MODULES`)."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import torch
from transformers.audio_utils import mel_filter_bank, spectrogram, window_function

from emi_features.audio.backbones import (
    Backbone,
    Encoded,
    default_feature_extractor,
    register_backbone,
)
from emi_features.cache.schema import SAMPLE_RATE
from emi_features.extraction.frames import WAV2VEC2_GRID, FrameGrid


class FbankBackbone(Backbone):
    """Weight-free log-mel filterbank frames (80 bands, 25 ms Hann window, `hop` samples)."""

    num_mel_bins = 80

    def __init__(self, name: str, grid: FrameGrid):
        super().__init__()
        self.name = name
        self.grid = grid
        self.hidden_size = self.num_mel_bins
        self.feature_extractor = default_feature_extractor()
        self.window = window_function(grid.receptive_field, "hann")
        self.fft_length = 2 ** math.ceil(math.log2(grid.receptive_field))
        self.mel_filters = mel_filter_bank(
            num_frequency_bins=self.fft_length // 2 + 1,
            num_mel_filters=self.num_mel_bins,
            min_frequency=20.0,
            max_frequency=SAMPLE_RATE / 2,
            sampling_rate=SAMPLE_RATE,
            norm="slaney",
            mel_scale="slaney",
        )
        digest = hashlib.blake2b(digest_size=16)
        digest.update(self.mel_filters.tobytes() + self.window.tobytes())
        if grid != WAV2VEC2_GRID:  # the 20 ms fingerprint stays what existing caches hold
            digest.update(repr(grid).encode())
        self.fingerprint = "fbank:" + digest.hexdigest()

    def encode(self, input_values: torch.Tensor, attention_mask: torch.Tensor) -> Encoded:
        waves = input_values.float().cpu().numpy()
        batch = [
            spectrogram(
                wave,
                self.window,
                frame_length=self.grid.receptive_field,
                hop_length=self.grid.hop,
                fft_length=self.fft_length,
                power=2.0,
                center=False,
                mel_filters=self.mel_filters,
                mel_floor=1e-10,
                log_mel="log",
            ).T
            for wave in waves
        ]
        frames = torch.from_numpy(np.stack(batch).astype(np.float32)).to(input_values.device)
        return Encoded(frames, None)


@register_backbone("fbank", "80 log-mel bands, 25 ms window, 20 ms hop (50 frames/s); no weights")
def _fbank() -> Backbone:
    return FbankBackbone("fbank", WAV2VEC2_GRID)


@register_backbone("fbank-10ms", "80 log-mel bands, 25 ms window, 10 ms hop (100 frames/s)")
def _fbank_10ms() -> Backbone:
    return FbankBackbone("fbank-10ms", FrameGrid(hop=160, receptive_field=400))
