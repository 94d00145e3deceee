"""`concat-frames`: the concatenation fusion of the 10th ABAW EMI track, as published.

Each frame-level stream is adaptive-average-pooled to `pool_steps` steps, projected frame by
frame (LayerNorm -> Linear(D, branch_dim) -> GELU -> Dropout) and averaged over time, then
LayerNorm -> Linear(branch_dim, branch_dim) gives the stream's vector z. On the acoustic stream
(`frames`) a 3-d VAD latent v is read from the time-mean of the projected frames (LayerNorm ->
Linear(h, h/2) -> GELU -> Dropout -> Linear(h/2, 3) -> sigmoid), broadcast to every frame and
re-projected with them (LayerNorm -> Linear(h+3, h) -> GELU -> Dropout) before the pooling. The
streams' vectors are concatenated into the shared head (LayerNorm -> Linear -> GELU -> Dropout
-> Linear(6)), and each stream has an auxiliary head of the same shape on its own z.

The streams are `inputs`: the acoustic frames, frame streams (face, text tokens) and clip
streams (a sentence vector, one step). `branch_layout="pool-project"` builds MimicMetrics'
branches instead (github.com/Dinithipurna/MimicMetrics src/staged_fusion_training.py lines
303-456): each stream pooled first (attention scored on its raw frames), then LayerNorm ->
Linear -> GELU -> Dropout -> LayerNorm; auxiliary heads Dropout -> Linear(6); the fusion
LayerNorm -> Dropout -> Linear -> GELU -> Dropout -> Linear(6); no VAD latent.

Switches: masked attention pooling (`frame_pool`), the text-guided triplet term
(`triplet_weight`), per-stream auxiliary shares, and two-stage training (`emi train
--unimodal-epochs`: each stream's branch and auxiliary head first, then the fusion).
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from emi_features.cache.schema import VAD_DIM
from emi_heads.heads import reads
from emi_heads.heads.base import (
    AttentionPool,
    Head,
    HeadOutput,
    latent_without_cached_vad,
    time_mean,
)
from emi_heads.heads.reads import module_key, parse_stream_weights
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


def _regressor(width: int, hidden: int, dropout: float, outputs: int) -> nn.Sequential:
    """LayerNorm -> Linear(width, hidden) -> GELU -> Dropout -> Linear(hidden, outputs)."""
    return nn.Sequential(
        nn.LayerNorm(width),
        nn.Linear(width, hidden),
        nn.GELU(),
        nn.Dropout(dropout),
        nn.Linear(hidden, outputs),
    )


def _vad_latent(width: int, dropout: float) -> tuple[nn.Sequential, nn.Sequential]:
    """The VAD latent's head (LayerNorm -> Linear(h, h/2) -> GELU -> Dropout -> Linear(h/2, 3)
    -> sigmoid) and the re-projection of the frames with it (LayerNorm -> Linear(h+3, h) ->
    GELU -> Dropout)."""
    head = nn.Sequential(
        nn.LayerNorm(width),
        nn.Linear(width, width // 2),
        nn.GELU(),
        nn.Dropout(dropout),
        nn.Linear(width // 2, VAD_DIM),
        nn.Sigmoid(),
    )
    fuse = nn.Sequential(
        nn.LayerNorm(width + VAD_DIM),
        nn.Linear(width + VAD_DIM, width),
        nn.GELU(),
        nn.Dropout(dropout),
    )
    return head, fuse


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
        projected_frames = config.branch_layout == "project-pool"  # what the latent reads
        if cls.ACOUSTIC not in reads.fused_streams(config) or not projected_frames:
            return replace(config, vad_latent="off")
        return latent_without_cached_vad(config)

    def __init__(self, config: FrameConcatConfig):
        super().__init__(config)
        self.streams = reads.fused_streams(config)
        self.aux_shares = stream_shares(self.streams, config.stream_aux_weights)
        width, dropout = config.branch_dim, config.dropout
        self.pool_first = config.branch_layout == "pool-project"
        self.project = nn.ModuleDict(
            {
                module_key(name): nn.Sequential(
                    nn.LayerNorm(self.width_of(name)),
                    nn.Linear(self.width_of(name), width),
                    nn.GELU(),
                    nn.Dropout(dropout),
                    *([nn.LayerNorm(width)] if self.pool_first else []),
                )
                for name in self.streams
            }
        )
        self.vad_head = self.vad_fuse = None
        if config.vad_latent != "off":
            self.vad_head, self.vad_fuse = _vad_latent(width, dropout)
        self.vector = nn.ModuleDict(
            {
                module_key(name): nn.Identity()
                if self.pool_first
                else nn.Sequential(nn.LayerNorm(width), nn.Linear(width, width))
                for name in self.streams
            }
        )
        self.aux_heads = nn.ModuleDict(
            {
                module_key(name): nn.Sequential(
                    nn.Dropout(dropout), nn.Linear(width, config.outputs)
                )
                if self.pool_first
                else _regressor(width, config.mlp_hidden, dropout, config.outputs)
                for name in self.streams
            }
        )
        self.attention = None
        if config.frame_pool == "attention":  # a clip stream's one step needs none
            self.attention = nn.ModuleDict(
                {
                    module_key(n): AttentionPool(self.width_of(n) if self.pool_first else width)
                    for n in self.streams
                    if n == self.ACOUSTIC or f"seq/{n}" in config.dims
                }
            )
        fused = width * len(self.streams)
        self.fusion = _regressor(fused, config.mlp_hidden, dropout, config.outputs)
        if self.pool_first:  # MimicMetrics' FusionRegressor: a Dropout after the LayerNorm
            self.fusion.insert(1, nn.Dropout(dropout))

    def width_of(self, name: str) -> int:
        dims = self.config.dims
        return dims[f"seq/{name}"] if f"seq/{name}" in dims else dims[name]

    def sequence(self, batch: dict[str, torch.Tensor], name: str) -> tuple[torch.Tensor, ...]:
        """The stream `name` as (B, T, d) steps and (B,) lengths; a clip stream is one step."""
        if name == self.ACOUSTIC:
            return batch["frames"], batch["lengths"]
        if f"seq/{name}" in batch:
            return batch[f"seq/{name}"], batch[f"lengths/{name}"]
        vectors = batch[name]
        return vectors[:, None, :], torch.ones(len(vectors), dtype=torch.long)

    def branch_modules(self) -> list[nn.Module]:
        """What `--unimodal-epochs` trains first: each stream's projection, VAD latent,
        pooling, vector and auxiliary head (everything but the fusion)."""
        return [module for module in self.children() if module is not self.fusion]

    def branch_modules_of(self, name: str) -> list[nn.Module]:
        """The modules of the stream `name`'s branch alone (the VAD latent is the acoustic
        stream's)."""
        key = module_key(name)
        modules = [self.project[key], self.vector[key], self.aux_heads[key]]
        if self.attention is not None and key in self.attention:
            modules.append(self.attention[key])
        if name == self.ACOUSTIC and self.vad_head is not None:
            modules += [self.vad_head, self.vad_fuse]
        return modules

    def output_layers(self) -> list[nn.Linear]:
        return [self.fusion[-1], *(head[-1] for head in self.aux_heads.values())]

    def forward(self, batch: dict[str, torch.Tensor]) -> HeadOutput:
        vectors, aux = [], {}
        for name in self.streams:
            frames, lengths = self.sequence(batch, name)
            key = module_key(name)
            if self.config.pool_steps and frames.shape[1] > 1:
                frames = adaptive_average(frames, lengths, self.config.pool_steps)
                lengths = torch.full_like(lengths, self.config.pool_steps)
            if self.pool_first:
                vector = self.project[key](self.pool(frames, lengths, key))
                aux[f"branch/{name}"] = self.activate(self.aux_heads[key](vector))
                vectors.append(vector)
                continue
            projected = self.project[key](frames)
            if name == self.ACOUSTIC and self.vad_head is not None:
                latent = self.vad_head(time_mean(projected, lengths))
                aux["vad_latent"] = latent
                repeated = latent[:, None, :].expand(-1, projected.shape[1], -1)
                projected = self.vad_fuse(torch.cat([projected, repeated], dim=-1))
            vector = self.vector[key](self.pool(projected, lengths, key))
            aux[f"branch/{name}"] = self.activate(self.aux_heads[key](vector))
            vectors.append(vector)
        if self.training and self.config.encoding_dropout:
            vectors = drop_encodings(vectors, self.config.encoding_dropout)
        fused = torch.cat(vectors, dim=-1)
        if self.config.triplet_weight:
            aux["fused"] = fused
        return HeadOutput(self.activate(self.fusion(fused)), aux)

    def pool(self, frames: torch.Tensor, lengths: torch.Tensor, key: str) -> torch.Tensor:
        """Each clip's steps (B, T, d) to one vector (B, d): their mean, or attention."""
        if self.attention is None or key not in self.attention:
            return time_mean(frames, lengths)
        return self.attention[key](frames, lengths)

    def unimodal_loss(
        self, output: HeadOutput, target: torch.Tensor, main_loss, streams: tuple[str, ...]
    ) -> torch.Tensor:
        """Stage one of two-stage training: the auxiliary heads of `streams` on the main loss,
        each weighted alike (the streams' parameters are disjoint, so each learns alone)."""
        values = [main_loss(output.aux[f"branch/{n}"].float(), target) for n in streams]
        return torch.stack(values).sum()

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
        if self.config.triplet_weight and self.training:
            guide, lengths = self.sequence(batch, self.config.triplet_stream)
            total = total + self.config.triplet_weight * guided_triplet_loss(
                output.aux["fused"].float(),
                time_mean(guide.float(), lengths),
                self.config.triplet_margin,
            )
        latent = output.aux.get("vad_latent")
        if latent is not None and self.config.vad_latent == "supervised":
            total = total + self.config.vad_weight * mse(latent.float(), batch["vad"])
        elif latent is not None:
            total = total + self.config.vad_center_weight * ((latent.float() - 0.5) ** 2).mean()
        return total


def drop_encodings(vectors: list[torch.Tensor], p: float) -> list[torch.Tensor]:
    """Modality dropout on the branches' encodings (B, d_i), as MimicMetrics
    (src/staged_fusion_training.py @f8e24a2, `_modality_dropout`, lines 483-495): each clip's
    each encoding kept with probability 1 - p, one drawn back where all were dropped, the kept
    scaled by 1 / (1 - p). Draws from torch's global generator in the published order."""
    count, device = vectors[0].shape[0], vectors[0].device
    keep = (torch.rand(count, len(vectors), device=device) >= p).float()
    all_dropped = keep.sum(dim=1) == 0
    if all_dropped.any():
        choice = torch.randint(0, len(vectors), (int(all_dropped.sum()),), device=device)
        keep[all_dropped, choice] = 1.0
    scale = 1.0 / max(1e-3, 1.0 - p)
    return [v * keep[:, i].unsqueeze(1).to(v.dtype) * scale for i, v in enumerate(vectors)]


TRIPLET_DRAWS = 32  # triplets drawn per batch (the published n_triplets)


def guided_triplet_loss(fused: torch.Tensor, guide: torch.Tensor, margin: float) -> torch.Tensor:
    """The text-guided triplet term (CASIA, 10th ABAW; `shared/reference/seed2_head.py`
    lines 153-175 after their A:200-242): draw TRIPLET_DRAWS triplets of clips; of each, the
    pair closest in the guide space (B, g) is anchor and positive, the third the negative; the
    fused vectors (B, f) are pushed so that the anchor is nearer its positive than the negative
    by `margin` (squared distances, both ends of the pair). Zero for a batch under 3 clips."""
    count = fused.shape[0]
    if count < 3:
        return fused.new_zeros(())
    draws = torch.stack([torch.randperm(count)[:3] for _ in range(min(TRIPLET_DRAWS, count))])
    i, j, k = draws.to(fused.device).unbind(1)
    with torch.no_grad():
        gap = lambda a, b: ((guide[a] - guide[b]) ** 2).sum(-1)  # noqa: E731
        closest = torch.stack([gap(i, j), gap(i, k), gap(j, k)], dim=1).argmin(dim=1)
    roles = torch.stack(
        [torch.stack([i, j, k], 1), torch.stack([i, k, j], 1), torch.stack([j, k, i], 1)], 1
    )
    anchor, positive, negative = roles[torch.arange(len(closest)), closest].unbind(1)
    distance = lambda a, b: ((fused[a] - fused[b]) ** 2).sum(-1)  # noqa: E731
    near = distance(anchor, positive)
    return (
        torch.relu(near - distance(anchor, negative) + margin)
        + torch.relu(near - distance(positive, negative) + margin)
    ).mean()
