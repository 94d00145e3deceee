"""`streams-lstm`: one LSTM per frame-level stream, clip streams joined as they are, fused late
(the 8th ABAW EMI winner's model)."""

from __future__ import annotations

from dataclasses import replace

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
from emi_heads.heads.reads import (
    joined_clip_streams,
    module_key,
    parse_stream_widths,
    sequence_streams,
)
from emi_heads.heads.settings import StreamsLstmConfig


class StreamLstmHead(Head):
    """`streams-lstm`: one LSTM per frame-level stream — the cache's frames (⊕ frame VAD) and
    every frame stream under /features — each read at its clips' own last frame; the last
    states, then the clip streams `inputs` names (as they are), then the global mean vector
    are concatenated -> MLP -> 6 (one encoder per modality, fused late). Each stream keeps its
    own frame rate; `stream_hidden` sets an LSTM's width per stream.

    The 8th ABAW EMI winner's model (github.com/Skyy93/CVPR2025_abaw @e05e8c3, abaw/model.py
    lines 41-46, 63-82): LSTM(1027, 1027, 2) on the audio frames ⊕ VAD, LSTM(1280, 768, 2) on
    the face frames, the text encoder's first token joined as it is, Linear(2563, 1027) -> tanh
    -> Linear(6) — `inputs=frames,features/face,features/text`, `stream_hidden=
    features/face=768`, `hidden=0`, `mlp_hidden=1027`, no mean.

    With `mean_input="frames"` each stream's time-mean joins its own last state,
    [mean, last] per stream, in the order the 2024 code concatenates them
    (github.com/Skyy93/CVPR2024_abaw @2c4e3c1, abaw/model.py line 66); `hidden` 0 gives each
    LSTM its input's width (line 35: LSTM(1027, 1027))."""

    config_class = StreamsLstmConfig

    @classmethod
    def resolve_config(cls, config: StreamsLstmConfig) -> StreamsLstmConfig:
        return without_absent_frame_vad(config)

    def __init__(self, config: StreamsLstmConfig):
        super().__init__(config)
        self.streams = sequence_streams(config)
        self.joined = joined_clip_streams(config)
        frames_width = config.dims["frames"] + (VAD_DIM if config.use_vad else 0)
        widths = {n: frames_width if n == "frames" else config.dims[n] for n in self.streams}
        hidden = parse_stream_widths(config.stream_hidden)
        self.encoders = nn.ModuleDict(
            {
                module_key(name): _encoder(
                    widths[name], config, hidden.get(name.removeprefix("seq/"), config.hidden)
                )
                for name in self.streams
            }
        )
        self.per_stream_mean = config.use_mean and config.mean_input == "frames"
        fused = sum(
            self.encoders[module_key(n)]["lstm"].hidden_size
            + (widths[n] if self.per_stream_mean else 0)
            for n in self.streams
        ) + sum(config.dims[n] for n in self.joined)
        fused += summary_width(config) if config.use_mean and not self.per_stream_mean else 0
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
        states += [batch[name].to(states[0].dtype) for name in self.joined]
        if self.config.use_mean and not self.per_stream_mean:
            states.append(clip_summary(batch, self.config).to(states[0].dtype))
        return HeadOutput(self.activate(self.mlp(torch.cat(states, dim=-1))))


def _encoder(width: int, config: StreamsLstmConfig, hidden: int) -> nn.ModuleDict:
    """One stream's input norm and LSTM (`recurrent_encoder`; `hidden` 0: as wide as its
    input), as `norm` and `lstm`."""
    norm, lstm = recurrent_encoder(width, replace(config, hidden=hidden))
    return nn.ModuleDict({"norm": norm, "lstm": lstm})
