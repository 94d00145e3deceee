"""`lstm`: the audio-only system (2nd, 6th ABAW EMI track): frames (+ frame VAD) -> 2-layer LSTM
over packed sequences; its last state (+ the global mean vector) -> Linear, tanh, Linear -> 6."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from emi_features.cache.schema import VAD_DIM
from emi_heads.heads.base import (
    Head,
    HeadOutput,
    clip_summary,
    readout,
    summary_width,
    time_mean,
    without_absent_frame_vad,
)
from emi_heads.heads.settings import LstmConfig, RecurrentConfig


def recurrent_encoder(width: int, config: RecurrentConfig) -> tuple[nn.Module, nn.LSTM]:
    """The input norm and LSTM of a recurrent head reading (B, T, width) frames: `hidden`
    wide (0: `width`, as published), `layers` deep, dropout between layers.

    Frames of different backbones differ in scale (log-mel vs. layer-normed hidden states); the
    LayerNorm (`input_norm`) keeps the LSTM's gates out of saturation for all of them."""
    norm = nn.LayerNorm(width) if config.input_norm else nn.Identity()
    lstm = nn.LSTM(
        width,
        config.hidden or width,
        num_layers=config.layers,
        batch_first=True,
        dropout=config.dropout if config.layers > 1 else 0.0,
    )
    return norm, lstm


class LstmHead(Head):
    """frames ⊕ frame VAD (B, T, D+3) -> LSTM -> last state ⊕ mean (B, H+D) -> MLP -> (B, 6).

    The state read is each clip's own last frame's: padding never enters it (`last_states`).
    The mean is the cache's /mean (D), or with `mean_input="frames"` the time-mean of the
    LSTM's own input frames over the crop (D+3), as the published system computes it."""

    config_class = LstmConfig

    @classmethod
    def resolve_config(cls, config: LstmConfig) -> LstmConfig:
        return without_absent_frame_vad(config)

    def __init__(self, config: LstmConfig):
        super().__init__(config)
        self.use_vad = config.use_vad
        self.use_mean = config.use_mean
        width = config.dims["frames"] + (VAD_DIM if self.use_vad else 0)
        self.input_norm, self.lstm = recurrent_encoder(width, config)
        hidden = self.lstm.hidden_size
        mean_width = width if config.mean_input == "frames" else summary_width(config)
        self.mlp = readout(hidden + (mean_width if self.use_mean else 0), config)

    def output_layers(self) -> list[nn.Linear]:
        return [self.mlp[-1]]

    def last_states(
        self, frames: torch.Tensor, lengths: torch.Tensor, packed: bool | None = None
    ) -> torch.Tensor:
        """The top layer's state after each clip's last frame: (B, T, d), (B,) -> (B, H)."""
        return self.read_last(self.lstm, frames, lengths, packed)

    @staticmethod
    def read_last(
        lstm: nn.LSTM, frames: torch.Tensor, lengths: torch.Tensor, packed: bool | None = None
    ) -> torch.Tensor:
        """An LSTM's top-layer state after each clip's own last frame: (B, T, d) -> (B, H).

        Packed sequences on a GPU (cuDNN). On a CPU, PyTorch's packed backward pass measured
        5.6x slower than the padded one (32 clips x 340 frames, hidden 1027), so the padded
        output is read at each clip's last frame instead: a unidirectional LSTM's output there
        is the same state, since the padding after it never reaches it.
        """
        if packed if packed is not None else frames.device.type == "cuda":
            sequences = pack_padded_sequence(
                frames, lengths.cpu(), batch_first=True, enforce_sorted=False
            )
            _, (hidden, _) = lstm(sequences)
            return hidden[-1]
        output, _ = lstm(frames)
        last = (lengths.to(frames.device) - 1).clamp(min=0)
        return output[torch.arange(len(frames), device=frames.device), last]

    def forward(self, batch: dict[str, torch.Tensor]) -> HeadOutput:
        frames = batch["frames"]
        if self.use_vad:
            frames = torch.cat([frames, batch["frame_vad"].to(frames.dtype)], dim=-1)
        state = self.last_states(self.input_norm(frames), batch["lengths"])
        if self.use_mean:
            mean = (
                time_mean(frames, batch["lengths"])
                if self.config.mean_input == "frames"
                else clip_summary(batch, self.config)
            )
            state = torch.cat([state, mean.to(state.dtype)], dim=-1)
        return HeadOutput(self.activate(self.mlp(state)))
