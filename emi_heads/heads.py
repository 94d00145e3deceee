"""The heads, by name (`emi-train --head NAME`), all built from one frozen `HeadConfig`.

- `lstm`: the audio-only system (2nd, 6th ABAW EMI track): frames (+ frame VAD) -> 2-layer LSTM
  over packed sequences; its last state (+ the global mean vector) -> Linear, tanh, Linear -> 6.
- `concat`: the concatenation fusion of the 10th ABAW EMI track: one branch per clip input
  (pooled frames, global mean, VAD, /features/*), concatenated into a shared regression head,
  an auxiliary head on each branch, and a 3-d VAD-aware latent on the acoustic branch.
- `linear`: ridge regression on the clip vectors (scikit-learn), the baseline.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Literal

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from emi_features.dataset import EMOTIONS

OUTPUTS = len(EMOTIONS)


@dataclass(frozen=True)
class HeadConfig:
    """Everything that rebuilds a head; saved as JSON beside its weights.

    `dims` are the widths of the inputs the head reads (filled in from the cache).
    """

    head: str
    dims: dict[str, int] = field(default_factory=dict)
    use_vad: bool = True  # ablation: the cached VAD predictions as inputs
    use_mean: bool = True  # ablation: the global mean vector
    hidden: int = 256  # lstm hidden size (the published system: 1027)
    layers: int = 2
    mlp_hidden: int = 256
    dropout: float = 0.2
    branch_dim: int = 128  # concat: width of each branch
    vad_latent: Literal["supervised", "free", "off"] = "supervised"
    ridge_alphas: tuple[float, ...] = (0.1, 1.0, 10.0, 100.0, 1000.0)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> HeadConfig:
        data = dict(data)
        data["ridge_alphas"] = tuple(data.get("ridge_alphas", cls.ridge_alphas))
        return cls(**data)


@dataclass
class HeadOutput:
    """prediction (B, 6) in [0, 1]; aux: named auxiliary predictions for auxiliary losses."""

    prediction: torch.Tensor
    aux: dict[str, torch.Tensor] = field(default_factory=dict)


def _set_output_bias(layers: list[nn.Linear], label_mean: np.ndarray) -> None:
    """Start sigmoid outputs at the training label mean (labels are mostly near zero)."""
    mean = torch.as_tensor(label_mean, dtype=torch.float32).clamp(1e-3, 1 - 1e-3)
    with torch.no_grad():
        for layer in layers:
            layer.bias.copy_(torch.log(mean / (1 - mean)))


class LstmHead(nn.Module):
    """frames ⊕ frame VAD (B, T, D+3) -> LSTM -> last state ⊕ mean (B, H+D) -> MLP -> (B, 6).

    The state read is each clip's own last frame's: padding never enters it (`last_states`)."""

    needs_frames = True

    def __init__(self, config: HeadConfig):
        super().__init__()
        self.use_vad = config.use_vad and "frame_vad" in config.dims
        self.use_mean = config.use_mean
        width = config.dims["frames"] + (3 if self.use_vad else 0)
        # Frames of different backbones differ in scale (log-mel vs. layer-normed hidden
        # states); a LayerNorm keeps the LSTM's gates out of saturation for all of them.
        self.input_norm = nn.LayerNorm(width)
        self.lstm = nn.LSTM(
            width,
            config.hidden,
            num_layers=config.layers,
            batch_first=True,
            dropout=config.dropout if config.layers > 1 else 0.0,
        )
        fused = config.hidden + (config.dims["mean"] if self.use_mean else 0)
        self.mlp = nn.Sequential(
            nn.Dropout(config.dropout),
            nn.Linear(fused, config.mlp_hidden),
            nn.Tanh(),
            nn.Linear(config.mlp_hidden, OUTPUTS),
        )

    def init_output_bias(self, label_mean: np.ndarray) -> None:
        _set_output_bias([self.mlp[-1]], label_mean)

    def last_states(
        self, frames: torch.Tensor, lengths: torch.Tensor, packed: bool | None = None
    ) -> torch.Tensor:
        """The top layer's state after each clip's last frame: (B, T, d), (B,) -> (B, H).

        Packed sequences on a GPU (cuDNN). On a CPU, PyTorch's packed backward pass measured
        5.6x slower than the padded one (32 clips x 340 frames, hidden 1027), so the padded
        output is read at each clip's last frame instead: a unidirectional LSTM's output there
        is the same state, since the padding after it never reaches it.
        """
        if packed if packed is not None else frames.device.type == "cuda":
            sequences = pack_padded_sequence(
                frames, lengths.cpu(), batch_first=True, enforce_sorted=False
            )
            _, (hidden, _) = self.lstm(sequences)
            return hidden[-1]
        output, _ = self.lstm(frames)
        last = (lengths.to(frames.device) - 1).clamp(min=0)
        return output[torch.arange(len(frames), device=frames.device), last]

    def forward(self, batch: dict[str, torch.Tensor]) -> HeadOutput:
        frames = batch["frames"]
        if self.use_vad:
            frames = torch.cat([frames, batch["frame_vad"].to(frames.dtype)], dim=-1)
        state = self.last_states(self.input_norm(frames), batch["lengths"])
        if self.use_mean:
            state = torch.cat([state, batch["mean"].to(state.dtype)], dim=-1)
        return HeadOutput(torch.sigmoid(self.mlp(state)))


def branch_inputs(config: HeadConfig) -> list[str]:
    """The clip vectors a concat or linear head reads, after the ablation switches."""
    names = ["frame_stats"]
    if config.use_mean:
        names.append("mean")
    if config.use_vad:
        names += [n for n in ("vad", "frame_vad_stats") if n in config.dims]
    names += sorted(n for n in config.dims if n.startswith("features/"))
    return names


class ConcatHead(nn.Module):
    """Branches (Linear -> GELU -> dropout) concatenated, with the VAD latent, into an MLP.

    The acoustic branch (pooled frames) also emits a 3-d latent that joins the fusion: tied to
    the cached arousal/dominance/valence by an auxiliary loss (`supervised`), learned with no
    VAD target as in the published system (`free`), or left out (`off`).
    """

    needs_frames = False

    def __init__(self, config: HeadConfig):
        super().__init__()
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
        if config.vad_latent == "supervised" and "vad" not in config.dims:
            self.vad_latent = "free"  # no VAD in the cache: nothing to tie the latent to
        latent = 3 if self.vad_latent != "off" else 0
        self.latent = nn.Linear(config.branch_dim, 3) if latent else None
        fused = config.branch_dim * len(self.names) + latent
        self.fusion = nn.Sequential(
            nn.Linear(fused, config.mlp_hidden),
            nn.GELU(),
            nn.Dropout(config.dropout),
            nn.Linear(config.mlp_hidden, OUTPUTS),
        )

    def init_output_bias(self, label_mean: np.ndarray) -> None:
        _set_output_bias([self.fusion[-1], *self.aux_heads.values()], label_mean)

    def forward(self, batch: dict[str, torch.Tensor]) -> HeadOutput:
        embedded = {
            key: self.branches[key](batch[name])
            for name, key in zip(self.names, self.branches, strict=True)
        }
        aux = {
            f"branch/{key}": torch.sigmoid(self.aux_heads[key](e)) for key, e in embedded.items()
        }
        parts = list(embedded.values())
        if self.latent is not None:
            latent = self.latent(embedded["frame_stats"])
            parts.append(latent)
            if self.vad_latent == "supervised":
                aux["vad_latent"] = latent
        return HeadOutput(torch.sigmoid(self.fusion(torch.cat(parts, dim=-1))), aux)


class LinearHead(nn.Module):
    """Standardised clip vectors -> ridge regression (fitted by scikit-learn, not by SGD)."""

    needs_frames = False

    def __init__(self, config: HeadConfig):
        super().__init__()
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


@dataclass(frozen=True)
class HeadEntry:
    build: Callable[[HeadConfig], nn.Module]
    description: str
    trained_by_sgd: bool = True


HEADS: dict[str, HeadEntry] = {
    "lstm": HeadEntry(
        LstmHead,
        "frames (+ frame VAD) -> 2-layer LSTM, last state + global mean "
        "-> MLP (audio-only system, 6th ABAW)",
    ),
    "concat": HeadEntry(
        ConcatHead,
        "branches per clip input, concatenated, auxiliary heads, VAD "
        "latent (concatenation fusion, 10th ABAW)",
    ),
    "linear": HeadEntry(
        LinearHead, "ridge regression on clip vectors (baseline)", trained_by_sgd=False
    ),
}


def build_head(config: HeadConfig) -> nn.Module:
    """A head from its config; unknown names get one line listing the known ones."""
    if config.head not in HEADS:
        raise ValueError(f"unknown head {config.head!r}; known: {', '.join(HEADS)}")
    return HEADS[config.head].build(config)
