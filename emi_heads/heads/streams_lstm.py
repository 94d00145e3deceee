"""`streams-lstm`: one LSTM per frame-level stream, fused late (the 8th ABAW EMI winner's shape)."""

from __future__ import annotations

import torch
from torch import nn

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
from emi_heads.heads.lstm import LstmHead, recurrent_encoder
from emi_heads.heads.reads import module_key, sequence_streams
from emi_heads.heads.settings import StreamsLstmConfig


class StreamLstmHead(Head):
    """`streams-lstm`: one LSTM per frame-level stream — the cache's frames (⊕ frame VAD) and
    every frame stream under /features — each read at its clips' own last frame, the last
    states concatenated with the global mean vector -> MLP -> 6 (one recurrent encoder per
    modality, fused late, as the 8th ABAW EMI winner). Each stream keeps its own frame rate.

    With `mean_input="frames"` each stream's time-mean joins its own last state,
    [mean, last] per stream, in the order the published code concatenates them
    (github.com/Skyy93/CVPR2024_abaw, branch blackimgs, abaw/model.py line 65); `hidden` 0
    gives each LSTM its input's width (lines 35-36: LSTM(1027, 1027), LSTM(775, 775))."""

    config_class = StreamsLstmConfig

    @classmethod
    def resolve_config(cls, config: StreamsLstmConfig) -> StreamsLstmConfig:
        return without_absent_frame_vad(config)

    def __init__(self, config: StreamsLstmConfig):
        super().__init__(config)
        self.streams = sequence_streams(config)
        frames_width = config.dims["frames"] + (VAD_DIM if config.use_vad else 0)
        widths = {n: frames_width if n == "frames" else config.dims[n] for n in self.streams}
        self.encoders = nn.ModuleDict(
            {module_key(name): _encoder(widths[name], config) for name in self.streams}
        )
        self.per_stream_mean = config.use_mean and config.mean_input == "frames"
        fused = sum(
            self.encoders[module_key(n)]["lstm"].hidden_size
            + (widths[n] if self.per_stream_mean else 0)
            for n in self.streams
        ) + (summary_width(config) if config.use_mean and not self.per_stream_mean else 0)
        self.mlp = readout(fused, config)

    def output_layers(self) -> list[nn.Linear]:
        return [self.mlp[-1]]

    def forward(self, batch: dict[str, torch.Tensor]) -> HeadOutput:
        states = []
        for name in self.streams:
            if name == "frames":
                frames, lengths = batch["frames"], batch["lengths"]
                if self.config.use_vad:
                    frames = torch.cat([frames, batch["frame_vad"].to(frames.dtype)], dim=-1)
            else:
                stream = name.removeprefix("seq/")
                frames, lengths = batch[name], batch[f"lengths/{stream}"]
            encoder = self.encoders[module_key(name)]
            if self.per_stream_mean:
                states.append(time_mean(frames, lengths))
            states.append(LstmHead.read_last(encoder["lstm"], encoder["norm"](frames), lengths))
        if self.config.use_mean and not self.per_stream_mean:
            states.append(clip_summary(batch, self.config).to(states[0].dtype))
        return HeadOutput(self.activate(self.mlp(torch.cat(states, dim=-1))))


def _encoder(width: int, config: StreamsLstmConfig) -> nn.ModuleDict:
    """One stream's input norm and LSTM (`recurrent_encoder`), as `norm` and `lstm`."""
    norm, lstm = recurrent_encoder(width, config)
    return nn.ModuleDict({"norm": norm, "lstm": lstm})
