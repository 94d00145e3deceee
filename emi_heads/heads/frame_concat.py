"""`concat-frames`: the concatenation fusion of the 10th ABAW EMI track, as published.

Each frame-level stream is adaptive-average-pooled to `pool_steps` steps, projected frame by
frame (LayerNorm -> Linear(D, branch_dim) -> GELU -> Dropout) and averaged over time, then
LayerNorm -> Linear(branch_dim, branch_dim) gives the stream's vector z. On the acoustic stream
(`frames`) a 3-d VAD latent v is read from the time-mean of the projected frames (LayerNorm ->
Linear(h, h/2) -> GELU -> Dropout -> Linear(h/2, 3) -> sigmoid), broadcast to every frame and
re-projected with them (LayerNorm -> Linear(h+3, h) -> GELU -> Dropout) before the pooling. The
streams' vectors are concatenated into the shared head (LayerNorm -> Linear -> GELU -> Dropout
-> Linear(6)), and each stream has an auxiliary head of the same shape on its own z.
"""

from __future__ import annotations

import torch
from torch import nn

from emi_features.cache.schema import VAD_DIM
from emi_heads.heads.base import (
    OUTPUTS,
    AttentionPool,
    Head,
    HeadOutput,
    latent_without_cached_vad,
    time_mean,
)
from emi_heads.heads.reads import parse_stream_weights
from emi_heads.heads.settings import FrameConcatConfig
from emi_heads.training.losses import mse


def adaptive_average(frames: torch.Tensor, lengths: torch.Tensor, steps: int) -> torch.Tensor:
    """Each clip's own frames average-pooled to `steps` steps, exactly as
    `adaptive_avg_pool1d` on that clip alone: (B, T, d), (B,) -> (B, steps, d).

    Step j averages frames [floor(j L / steps), ceil((j + 1) L / steps)) of a clip of L frames
    (short clips repeat frames). Computed for the whole batch from one cumulative sum."""
    lengths = lengths.to(frames.device).clamp(min=1)
    j = torch.arange(steps, device=frames.device)
    starts = torch.div(j[None, :] * lengths[:, None], steps, rounding_mode="floor")
    ends = -torch.div(-(j[None, :] + 1) * lengths[:, None], steps, rounding_mode="floor")
    cumulative = torch.cat(
        [
            frames.new_zeros(frames.shape[0], 1, frames.shape[2], dtype=torch.float64),
            frames.double().cumsum(dim=1),
        ],
        dim=1,
    )
    index = lambda positions: positions[..., None].expand(-1, -1, frames.shape[2])  # noqa: E731
    total = cumulative.gather(1, index(ends)) - cumulative.gather(1, index(starts))
    return (total / (ends - starts)[..., None]).to(frames.dtype)


def _regressor(width: int, hidden: int, dropout: float) -> nn.Sequential:
    """LayerNorm -> Linear(width, hidden) -> GELU -> Dropout -> Linear(hidden, 6)."""
    return nn.Sequential(
        nn.LayerNorm(width),
        nn.Linear(width, hidden),
        nn.GELU(),
        nn.Dropout(dropout),
        nn.Linear(hidden, OUTPUTS),
    )


def stream_shares(streams: list[str], spec: str) -> dict[str, float]:
    """Each stream's share of the auxiliary weight: the weights `spec` names, and what is left
    of 1 split evenly over the streams it does not name."""
    named = parse_stream_weights(spec)
    unknown = sorted(set(named) - set(streams))
    if unknown:
        raise ValueError(
            f"stream_aux_weights names {', '.join(unknown)}, which the head does not read "
            f"(it reads {', '.join(streams)})"
        )
    others = [name for name in streams if name not in named]
    rest = max(0.0, 1.0 - sum(named.values())) / len(others) if others else 0.0
    return {name: named.get(name, rest) for name in streams}


class FrameConcatHead(Head):
    """The published concatenation fusion over the frame-level streams (see the module)."""

    config_class = FrameConcatConfig

    ACOUSTIC = "frames"

    @classmethod
    def resolve_config(cls, config: FrameConcatConfig) -> FrameConcatConfig:
        return latent_without_cached_vad(config)

    def __init__(self, config: FrameConcatConfig):
        super().__init__(config)
        self.streams = [self.ACOUSTIC]
        self.aux_shares = stream_shares(self.streams, config.stream_aux_weights)
        width, dropout = config.branch_dim, config.dropout
        self.project = nn.ModuleDict(
            {
                name: nn.Sequential(
                    nn.LayerNorm(config.dims[name]),
                    nn.Linear(config.dims[name], width),
                    nn.GELU(),
                    nn.Dropout(dropout),
                )
                for name in self.streams
            }
        )
        self.vad_head = self.vad_fuse = None
        if config.vad_latent != "off":
            self.vad_head = nn.Sequential(
                nn.LayerNorm(width),
                nn.Linear(width, width // 2),
                nn.GELU(),
                nn.Dropout(dropout),
                nn.Linear(width // 2, VAD_DIM),
                nn.Sigmoid(),
            )
            self.vad_fuse = nn.Sequential(
                nn.LayerNorm(width + VAD_DIM),
                nn.Linear(width + VAD_DIM, width),
                nn.GELU(),
                nn.Dropout(dropout),
            )
        self.vector = nn.ModuleDict(
            {
                name: nn.Sequential(nn.LayerNorm(width), nn.Linear(width, width))
                for name in self.streams
            }
        )
        self.aux_heads = nn.ModuleDict(
            {name: _regressor(width, config.mlp_hidden, dropout) for name in self.streams}
        )
        self.attention = None
        if config.frame_pool == "attention":
            self.attention = nn.ModuleDict({name: AttentionPool(width) for name in self.streams})
        self.fusion = _regressor(width * len(self.streams), config.mlp_hidden, dropout)

    def output_layers(self) -> list[nn.Linear]:
        return [self.fusion[-1], *(head[-1] for head in self.aux_heads.values())]

    def forward(self, batch: dict[str, torch.Tensor]) -> HeadOutput:
        vectors, aux = [], {}
        for name in self.streams:
            frames, lengths = batch[name], batch["lengths"]
            if self.config.pool_steps:
                frames = adaptive_average(frames, lengths, self.config.pool_steps)
                lengths = torch.full_like(lengths, self.config.pool_steps)
            projected = self.project[name](frames)
            if name == self.ACOUSTIC and self.vad_head is not None:
                latent = self.vad_head(time_mean(projected, lengths))
                aux["vad_latent"] = latent
                repeated = latent[:, None, :].expand(-1, projected.shape[1], -1)
                projected = self.vad_fuse(torch.cat([projected, repeated], dim=-1))
            pooled = (time_mean(projected, lengths) if self.attention is None
                      else self.attention[name](projected, lengths))  # fmt: skip
            vector = self.vector[name](pooled)
            aux[f"branch/{name}"] = self.activate(self.aux_heads[name](vector))
            vectors.append(vector)
        return HeadOutput(self.activate(self.fusion(torch.cat(vectors, dim=-1))), aux)

    def auxiliary_loss(self, output, batch, target, main_loss) -> torch.Tensor:
        """`aux_weight` times each stream's share (`stream_aux_weights`; the published shares
        for its three modalities were 0.20 / 0.35 / 0.45) on its head's `aux_loss`; the VAD
        latent pulled towards 0.5 (`vad_center_weight`, free) or to the cached VAD
        (`vad_weight`, supervised)."""
        branch_loss = self.branch_loss(main_loss)
        total = output.prediction.new_zeros(())
        for name, share in self.aux_shares.items():
            value = output.aux[f"branch/{name}"]
            total = total + self.config.aux_weight * share * branch_loss(value, target)
        latent = output.aux.get("vad_latent")
        if latent is not None and self.config.vad_latent == "supervised":
            total = total + self.config.vad_weight * mse(latent.float(), batch["vad"])
        elif latent is not None:
            total = total + self.config.vad_center_weight * ((latent.float() - 0.5) ** 2).mean()
        return total
