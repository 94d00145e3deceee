"""The heads, by name (`emi-train --head NAME`), all built from one frozen `HeadConfig`.

- `lstm`: the audio-only system (2nd, 6th ABAW EMI track): frames (+ frame VAD) -> 2-layer LSTM
  over packed sequences; its last state (+ the global mean vector) -> Linear, tanh, Linear -> 6.
- `concat`: the concatenation fusion of the 10th ABAW EMI track: one branch per clip input
  (pooled frames, global mean, VAD, /features/*), concatenated into a shared regression head,
  an auxiliary head on each branch, and a 3-d VAD-aware latent on the acoustic branch.
- `linear`: ridge regression on the clip vectors (scikit-learn), the baseline.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from emi_features.dataset import EMOTIONS
from emi_features.schema import VAD_DIM
from emi_heads.config import HEADS, SUMMARIES, HeadConfig, branch_inputs
from emi_heads.losses import Loss, mse, smooth_l1
from emi_heads.standardize import Standardizer

OUTPUTS = len(EMOTIONS)


@dataclass
class HeadOutput:
    """prediction (B, 6) in [0, 1]; aux: named auxiliary outputs the head's own losses read."""

    prediction: torch.Tensor
    aux: dict[str, torch.Tensor] = field(default_factory=dict)


class Head(nn.Module):
    """What the training loop needs of a head: `forward(batch) -> HeadOutput`, and the head's
    own auxiliary loss terms. A new head subclasses this and is named in `config.HEADS`."""

    def __init__(self, config: HeadConfig):
        super().__init__()
        self.config = config
        self.standardizer = None
        if config.standardize and HEADS[config.head].trained_by_sgd and config.dims:
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
        if not self.config.bias_at_label_mean:
            return
        mean = torch.as_tensor(label_mean, dtype=torch.float32).clamp(1e-3, 1 - 1e-3)
        if self.config.output_activation == "sigmoid":
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
    """The recurrent heads' MLP: Dropout -> Linear(width, mlp_hidden) -> tanh -> Linear(6)."""
    return nn.Sequential(
        nn.Dropout(config.dropout),
        nn.Linear(width, config.mlp_hidden),
        nn.Tanh(),
        nn.Linear(config.mlp_hidden, OUTPUTS),
    )


class LstmHead(Head):
    """frames ⊕ frame VAD (B, T, D+3) -> LSTM -> last state ⊕ mean (B, H+D) -> MLP -> (B, 6).

    The state read is each clip's own last frame's: padding never enters it (`last_states`).
    The mean is the cache's /mean (D), or with `mean_input="frames"` the time-mean of the
    LSTM's own input frames over the crop (D+3), as the published system computes it."""

    @classmethod
    def resolve_config(cls, config: HeadConfig) -> HeadConfig:
        return without_absent_frame_vad(config)

    def __init__(self, config: HeadConfig):
        super().__init__(config)
        self.use_vad = config.use_vad
        self.use_mean = config.use_mean
        width = config.dims["frames"] + (VAD_DIM if self.use_vad else 0)
        # Frames of different backbones differ in scale (log-mel vs. layer-normed hidden
        # states); a LayerNorm keeps the LSTM's gates out of saturation for all of them.
        self.input_norm = nn.LayerNorm(width) if config.input_norm else nn.Identity()
        self.lstm = nn.LSTM(
            width,
            config.hidden,
            num_layers=config.layers,
            batch_first=True,
            dropout=config.dropout if config.layers > 1 else 0.0,
        )
        mean_width = width if config.mean_input == "frames" else summary_width(config)
        self.mlp = readout(config.hidden + (mean_width if self.use_mean else 0), config)

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


def check_inputs(config: HeadConfig) -> None:
    """One line when `inputs` names something the cache does not hold."""
    unknown = [n for n in branch_inputs(config) if n not in config.dims]
    if config.inputs and unknown:
        available = ", ".join(n for n in config.dims if n not in ("frames", "frame_vad"))
        raise ValueError(f"--inputs: {', '.join(unknown)} not in the cache (it has {available})")


class ConcatHead(Head):
    """Branches (Linear -> GELU -> dropout) concatenated, with the VAD latent, into an MLP.

    The acoustic branch (pooled frames) also emits a 3-d latent that joins the fusion: tied to
    the cached arousal/dominance/valence by an auxiliary loss (`supervised`), learned with no
    VAD target as in the published system (`free`), or left out (`off`).
    """

    @classmethod
    def resolve_config(cls, config: HeadConfig) -> HeadConfig:
        if config.vad_latent != "off" and "frame_stats" not in branch_inputs(config):
            return replace(config, vad_latent="off")  # its acoustic branch is not read
        return latent_without_cached_vad(config)

    def __init__(self, config: HeadConfig):
        super().__init__(config)
        self.names = branch_inputs(config)
        self.branches = nn.ModuleDict(
            {
                name.replace("/", "__"): nn.Sequential(
                    nn.LayerNorm(config.dims[name]),
                    nn.Linear(config.dims[name], config.branch_dim),
                    nn.GELU(),
                    nn.Dropout(config.dropout),
                )
                for name in self.names
            }
        )
        self.aux_heads = nn.ModuleDict(
            {key: nn.Linear(config.branch_dim, OUTPUTS) for key in self.branches}
        )
        self.vad_latent = config.vad_latent
        latent = VAD_DIM if self.vad_latent != "off" else 0
        self.latent = nn.Linear(config.branch_dim, VAD_DIM) if latent else None
        fused = config.branch_dim * len(self.names) + latent
        self.fusion = nn.Sequential(
            nn.Linear(fused, config.mlp_hidden),
            nn.GELU(),
            nn.Dropout(config.dropout),
            nn.Linear(config.mlp_hidden, OUTPUTS),
        )

    def output_layers(self) -> list[nn.Linear]:
        return [self.fusion[-1], *self.aux_heads.values()]

    def forward(self, batch: dict[str, torch.Tensor]) -> HeadOutput:
        embedded = {
            key: self.branches[key](batch[name])
            for name, key in zip(self.names, self.branches, strict=True)
        }
        aux = {
            f"branch/{key}": self.activate(self.aux_heads[key](e)) for key, e in embedded.items()
        }
        parts = list(embedded.values())
        if self.latent is not None:
            latent = self.latent(embedded["frame_stats"])
            parts.append(latent)
            if self.vad_latent == "supervised":
                aux["vad_latent"] = latent
        return HeadOutput(self.activate(self.fusion(torch.cat(parts, dim=-1))), aux)

    def auxiliary_loss(self, output, batch, target, main_loss) -> torch.Tensor:
        """Each branch's head on the main loss (`aux_weight`), and the VAD latent against the
        cached VAD (`vad_weight`, supervised mode)."""
        branch_loss = self.branch_loss(main_loss)
        total = output.prediction.new_zeros(())
        for name, value in output.aux.items():
            if name == "vad_latent":
                total = total + self.config.vad_weight * mse(value.float(), batch["vad"])
            else:
                total = total + self.config.aux_weight * branch_loss(value.float(), target)
        return total


class LinearHead(Head):
    """Standardised clip vectors -> ridge regression (fitted by scikit-learn, not by SGD)."""

    def __init__(self, config: HeadConfig):
        super().__init__(config)
        self.names = branch_inputs(config)
        width = sum(config.dims[name] for name in self.names)
        self.register_buffer("center", torch.zeros(width))
        self.register_buffer("scale", torch.ones(width))
        self.register_buffer("coef", torch.zeros(OUTPUTS, width))
        self.register_buffer("intercept", torch.zeros(OUTPUTS))
        self.register_buffer("alpha", torch.zeros(()))

    def features(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.cat([batch[name].float() for name in self.names], dim=-1)

    def forward(self, batch: dict[str, torch.Tensor]) -> HeadOutput:
        x = (self.features(batch) - self.center) / self.scale
        return HeadOutput(x @ self.coef.T + self.intercept)

    def fit(self, batch: dict[str, torch.Tensor], targets: np.ndarray, alpha: float) -> None:
        """Closed-form ridge on (N, d) features for (N, 6) targets."""
        from sklearn.linear_model import Ridge
        from sklearn.preprocessing import StandardScaler

        x = self.features(batch).double().numpy()
        scaler = StandardScaler().fit(x)
        ridge = Ridge(alpha=alpha).fit(scaler.transform(x), targets)
        self.center.copy_(torch.from_numpy(scaler.mean_))
        self.scale.copy_(torch.from_numpy(scaler.scale_))
        self.coef.copy_(torch.from_numpy(ridge.coef_))
        self.intercept.copy_(torch.from_numpy(np.asarray(ridge.intercept_)))
        self.alpha.fill_(alpha)


def resolve_head_config(config: HeadConfig) -> HeadConfig:
    """`config` as its head will run on these inputs (see `Head.resolve_config`)."""
    return HEADS[config.head].load().resolve_config(config)


def build_head(config: HeadConfig) -> Head:
    """A head from its config (see `config.HEADS`), with the config's fallbacks applied."""
    return HEADS[config.head].load()(resolve_head_config(config))
