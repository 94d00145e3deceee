"""What every head is: `Head`, the module the training loop trains (`forward(batch) ->
HeadOutput` and the head's own auxiliary loss terms), the pieces several heads share, and
`build_head`, which builds the network a config names (`heads.settings`).

One module per head family: `lstm`, `concat`, `frame_concat` (concat-frames), `streams_lstm`,
`ridge`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch import nn

from emi_features.cache.schema import VAD_DIM  # noqa: F401  (the heads' VAD width)
from emi_heads.heads import reads
from emi_heads.heads.reads import SUMMARIES
from emi_heads.heads.settings import HeadConfig
from emi_heads.heads.standardize import Standardizer
from emi_heads.training.losses import Loss, smooth_l1


@dataclass
class HeadOutput:
    """prediction (B, 6) in [0, 1]; aux: named auxiliary outputs the head's own losses read."""

    prediction: torch.Tensor
    aux: dict[str, torch.Tensor] = field(default_factory=dict)


class Head(nn.Module):
    """What the training loop needs of a head: `forward(batch) -> HeadOutput`, and the head's
    own auxiliary loss terms. A new head subclasses this; its settings class names it."""

    def __init__(self, config: HeadConfig):
        super().__init__()
        self.config = config
        self.standardizer = None
        if getattr(config, "standardize", False) and config.dims:
            self.standardizer = Standardizer(config.dims)
            self.register_forward_pre_hook(_standardize_batch)

    def fit_standardizer(self, inputs) -> None:
        """Set the input statistics from the training `Inputs` (no-op without standardising)."""
        if self.standardizer is not None:
            self.standardizer.fit(inputs)

    @classmethod
    def resolve_config(cls, config: HeadConfig) -> HeadConfig:
        """The config as the head will really run (fallbacks applied); saved with the run."""
        return config

    def output_layers(self) -> list[nn.Linear]:
        """The layers whose outputs are predictions (main and auxiliary heads)."""
        return []

    def activate(self, outputs: torch.Tensor) -> torch.Tensor:
        """The output activation of the config: sigmoid, or none."""
        return torch.sigmoid(outputs) if self.config.output_activation == "sigmoid" else outputs

    def init_output_bias(self, label_mean: np.ndarray) -> None:
        """Start the outputs at the training label mean (labels are mostly near zero), unless
        the config keeps PyTorch's own initialisation (`bias_at_label_mean`, off in presets)."""
        if not getattr(self.config, "bias_at_label_mean", False):  # ridge: its fit sets it
            return
        mean = torch.as_tensor(label_mean, dtype=torch.float32)
        if self.config.output_activation == "sigmoid":
            mean = mean.clamp(1e-3, 1 - 1e-3)
            mean = torch.log(mean / (1 - mean))
        with torch.no_grad():
            for layer in self.output_layers():
                layer.bias.copy_(mean)

    def branch_loss(self, main_loss: Loss) -> Loss:
        """The loss of auxiliary branch heads (`aux_loss`): the main loss, or Smooth-L1."""
        return smooth_l1 if self.config.aux_loss == "smooth_l1" else main_loss

    def auxiliary_loss(
        self,
        output: HeadOutput,
        batch: dict[str, torch.Tensor],
        target: torch.Tensor,
        main_loss: Loss,
    ) -> torch.Tensor:
        """The head's extra training terms (a scalar; zero for none)."""
        return output.prediction.new_zeros(())


def _standardize_batch(head: Head, args: tuple) -> tuple:
    """Forward pre-hook: every head reads its batch standardised (the loss terms that read the
    batch itself, such as the cached VAD target, still see it raw)."""
    return (head.standardizer(args[0]), *args[1:])


def time_mean(frames: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Each clip's mean over its own frames: (B, T, d), (B,) -> (B, d); padding left out."""
    mask = (
        torch.arange(frames.shape[1], device=frames.device)[None, :]
        < lengths.to(frames.device)[:, None]
    )
    total = (frames * mask[..., None].to(frames.dtype)).sum(dim=1)
    return total / lengths.to(frames.device, frames.dtype).clamp(min=1)[:, None]


class AttentionPool(nn.Module):
    """Masked attention pooling (MimicMetrics, 10th ABAW): a learned score per frame, a softmax
    over each clip's own frames (padding never weighs), their weighted sum: (B, T, d), (B,) ->
    (B, d)."""

    def __init__(self, width: int):
        super().__init__()
        self.score = nn.Linear(width, 1)

    def forward(self, frames: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        lengths = lengths.to(frames.device).clamp(min=1)
        valid = torch.arange(frames.shape[1], device=frames.device)[None, :] < lengths[:, None]
        scores = self.score(frames).squeeze(-1).float().masked_fill(~valid, float("-inf"))
        weights = torch.softmax(scores, dim=1).to(frames.dtype)
        return (weights[..., None] * frames.masked_fill(~valid[..., None], 0.0)).sum(dim=1)


def without_absent_frame_vad(config: HeadConfig) -> HeadConfig:
    """A sequence head on a cache without frame VAD reads the frames alone."""
    if config.use_vad and config.dims and "frame_vad" not in config.dims:
        return replace(config, use_vad=False)
    return config


def latent_without_cached_vad(config: HeadConfig) -> HeadConfig:
    """A VAD latent with no cached VAD to be tied to is learned freely."""
    if config.vad_latent == "supervised" and config.dims and "vad" not in config.dims:
        return replace(config, vad_latent="free")
    return config


def summary_width(config: HeadConfig) -> int:
    """Width of the clip summary a recurrent head joins to its last states (`clip_summary`)."""
    return config.dims[SUMMARIES.get(config.mean_input, "mean")]


def clip_summary(batch: dict[str, torch.Tensor], config: HeadConfig) -> torch.Tensor:
    """(B, d) what joins a recurrent head's last states: the cropped frames' mean ⊕ sd
    (`stats`, what ridge reads) or the cache's /mean (`cache`)."""
    return batch[SUMMARIES.get(config.mean_input, "mean")]


def readout(width: int, config: HeadConfig) -> nn.Sequential:
    """The recurrent heads' MLP: Dropout -> Linear(width, mlp_hidden) -> tanh -> Linear(outputs);
    `mlp_hidden` 0 is `width` (as published)."""
    hidden = config.mlp_hidden or width
    return nn.Sequential(
        nn.Dropout(config.dropout),
        nn.Linear(width, hidden),
        nn.Tanh(),
        nn.Linear(hidden, config.outputs),
    )


def check_inputs(config: HeadConfig, offered: tuple[str, ...] = ()) -> None:
    """One line when a setting names an input the cache does not hold (`--inputs`,
    `--triplet-stream`, `--stream-aux-weights`, `--stream-hidden`: a frame stream the head
    reads), or `--layer-weights` reads no layers stream."""
    named = [(n.strip(), "--inputs") for n in getattr(config, "inputs", "").split(",") if n.strip()]
    if getattr(config, "triplet_weight", 0):
        named.append((config.triplet_stream, "--triplet-stream"))
    shares = reads.parse_stream_weights(getattr(config, "stream_aux_weights", ""))
    fused = reads.fused_streams(config) if hasattr(config, "stream_aux_weights") else []
    named += [(n, "--stream-aux-weights") for n in shares if n not in fused]
    names = [n.removeprefix("seq/") for n in config.dims if n != "frame_vad"]
    streams = list(offered) or [n for n in names if n.startswith("features/")]
    offered_text = ", ".join(
        dict.fromkeys([*(n for n in names if not n.startswith("features/")), *streams])
    )
    for name, option in named:
        if name.startswith("seq/"):
            raise ValueError(f"{option}: {name}: name the stream as {name.removeprefix('seq/')}")
        if option == "--stream-aux-weights":
            raise ValueError(
                f"{option}: {name} is not one of the fused streams ({', '.join(fused)})"
            )
        if name not in config.dims and f"seq/{name}" not in config.dims:
            raise ValueError(f"{option}: {name} not in the cache (it has {offered_text})")
    widths = reads.parse_stream_widths(getattr(config, "stream_hidden", ""))
    recurrent = [n.removeprefix("seq/") for n in reads.sequence_streams(config)] if widths else []
    for name in widths:
        if name not in recurrent:
            raise ValueError(
                f"--stream-hidden: {name} is not one of the frame streams the head "
                f"reads ({', '.join(recurrent) or 'none'})"
            )
    if getattr(config, "layer_weights", False) and not any(
        f"{reads.LAYERS}/{n}" in config.dims for n in reads.inputs_read(config)
    ):
        raise ValueError(
            "--layer-weights: the head reads no stream of every layer (emi "
            "extract --layers all --pool stats --stream NAME)"
        )


def resolve_head_config(config: HeadConfig) -> HeadConfig:
    """`config` as its head will run on these inputs (see `Head.resolve_config`)."""
    return type(config).network_class().resolve_config(config)


def build_head(config: HeadConfig) -> Head:
    """A head from its config (see `heads.settings`), with the config's fallbacks applied."""
    return type(config).network_class()(resolve_head_config(config))
