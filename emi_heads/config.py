"""What a run is: the head's config, the training config, the head registry and the inputs a
head reads. Frozen dataclasses, validated when built, saved in config.json beside the weights.

No heavy imports: `emi-train --help` and argument errors answer before torch loads. Each field's
`help` is the one the command line shows; `emi-train` has an option for every field.
"""

from __future__ import annotations

import importlib
import math
import typing
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

from emi_heads.losses import parse_loss_terms
from emi_heads.reads import (  # noqa: F401  (inputs_read, streams_read: imported from here too)
    SUMMARIES,
    branch_inputs,
    frames_reads,
    inputs_read,
    lstm_reads,
    parse_stream_weights,
    sequence_streams,
    streams_lstm_reads,
    streams_read,
)

MAX_WIDTH = 1 << 16  # the widest layer a config may ask for: 65,536 units
MAX_LAYERS = 16
EMA_RUN_SHARE = 0.05  # an automatic EMA averages over the last 5 % of the run's steps


@dataclass(frozen=True)
class HeadSpec:
    """A head known by name: the class that builds it (`module:Class`), whether it reads every
    frame (sequence heads) or only clip vectors, and whether SGD trains it."""

    description: str
    target: str
    reads: Callable[[HeadConfig], list[str]]
    needs_frames: bool = False
    trained_by_sgd: bool = True
    takes_inputs: bool = True  # whether `inputs` chooses what it reads

    def load(self) -> type:
        module, name = self.target.split(":")
        return getattr(importlib.import_module(module), name)


HEADS: dict[str, HeadSpec] = {
    "lstm": HeadSpec(
        "frames (+ frame VAD) -> 2-layer LSTM, last state + global mean -> MLP "
        "(audio-only system, 6th ABAW)",
        "emi_heads.heads:LstmHead",
        lstm_reads,
        needs_frames=True,
        takes_inputs=False,
    ),
    "concat": HeadSpec(
        "branches per clip input, concatenated, auxiliary heads, VAD latent "
        "(concatenation fusion, 10th ABAW)",
        "emi_heads.heads:ConcatHead",
        branch_inputs,
    ),
    "streams-lstm": HeadSpec(
        "one LSTM per frame-level stream (the cache's frames and every frame stream under "
        "/features), last states + global mean -> MLP (late fusion per modality, 8th ABAW)",
        "emi_heads.frame_heads:StreamLstmHead",
        streams_lstm_reads,
        needs_frames=True,
    ),
    "concat-frames": HeadSpec(
        "per-frame branches (LayerNorm, Linear, GELU) mean-pooled over time, VAD latent on "
        "the acoustic frames, auxiliary heads (the published concat fusion, 10th ABAW)",
        "emi_heads.frame_heads:FrameConcatHead",
        frames_reads,
        needs_frames=True,
        takes_inputs=False,
    ),
    "linear": HeadSpec(
        "ridge regression on clip vectors (baseline)",
        "emi_heads.heads:LinearHead",
        branch_inputs,
        trained_by_sgd=False,
    ),
}


def _help(text: str, **extra: Any) -> dict[str, Any]:
    return {"help": text, **extra}


class ConfigError(ValueError):
    """A config that cannot be built; one line naming the field."""


def choices(config_class: type, name: str) -> tuple[str, ...] | None:
    """The allowed values of a field typed `Literal[...]` (its one home), else None."""
    kind = typing.get_type_hints(config_class)[name]
    return typing.get_args(kind) if typing.get_origin(kind) is Literal else None


def choice_problems(config: Any) -> list[str]:
    """A line for every `Literal` field whose value is not one of its choices."""
    problems = []
    for item in fields(config):
        allowed = choices(type(config), item.name)
        if allowed and getattr(config, item.name) not in allowed:
            problems.append(f"{item.name} must be one of {', '.join(allowed)}")
    return problems


@dataclass(frozen=True)
class HeadConfig:
    """Everything that rebuilds a head; saved as JSON beside its weights.

    `dims` are the widths of the inputs the head reads (filled in from the cache).
    """

    head: str
    dims: dict[str, int] = field(default_factory=dict)
    inputs: str = field(
        default="",
        metadata=_help(
            "concat/linear: the clip inputs and feature streams to read, comma-separated "
            "(frame_stats, mean, vad, frame_vad_stats, features/NAME); empty: all."
        ),
    )
    use_vad: bool = field(default=True, metadata=_help("Ablation: VAD inputs.", flag="vad"))
    use_mean: bool = field(
        default=True, metadata=_help("Ablation: global mean vector.", flag="mean")
    )
    hidden: int = field(default=256, metadata=_help("LSTM hidden size (the published: 1027)."))
    layers: int = field(default=2, metadata=_help("LSTM layers."))
    mlp_hidden: int = field(default=256, metadata=_help("Hidden width of the output MLP."))
    dropout: float = field(default=0.2, metadata=_help("Dropout in every head."))
    branch_dim: int = field(default=128, metadata=_help("concat: width of each branch."))
    vad_latent: Literal["supervised", "free", "off"] = field(
        default="supervised",
        metadata=_help(
            "concat: the 3-d VAD latent tied to the cached VAD, learned freely, or off.",
        ),
    )
    aux_weight: float = field(
        default=0.3, metadata=_help("concat: weight of each branch's auxiliary loss.")
    )
    vad_weight: float = field(
        default=0.1, metadata=_help("concat: weight of the VAD latent's loss (supervised).")
    )
    stream_aux_weights: str = field(
        default="",
        metadata=_help(
            "concat-frames: each stream's share of aux_weight, e.g. frames=0.35 (the published "
            "shares: face 0.20, audio 0.35, text 0.45); streams not named share what is left "
            "evenly; empty: even shares."
        ),
    )
    ridge_alphas: tuple[float, ...] = field(
        default=(0.1, 1.0, 10.0, 100.0, 1000.0),
        metadata=_help("linear: ridge alphas tried on validation (comma-separated)."),
    )
    input_norm: bool = field(
        default=True, metadata=_help("lstm: LayerNorm on the frames before the LSTM.")
    )
    mean_input: Literal["stats", "cache", "frames"] = field(
        default="stats",
        metadata=_help(
            "lstm, streams-lstm: what joins the last state — the frames' mean and sd over the "
            "crop (what ridge reads), the cache's /mean, or the time-mean of the LSTM's input "
            "frames (as published; lstm only).",
        ),
    )
    output_activation: Literal["sigmoid", "none"] = field(
        default="sigmoid",
        metadata=_help(
            "Output layer: sigmoid, or none (predictions clipped to [0, 1] only when written).",
        ),
    )
    bias_at_label_mean: bool = field(
        default=True, metadata=_help("Start the output bias at the training label mean.")
    )
    pool_steps: int = field(
        default=16,
        metadata=_help(
            "concat-frames: adaptive average pooling of each clip to N steps (0: off; the "
            "published: 128)."
        ),
    )
    aux_loss: Literal["main", "smooth_l1"] = field(
        default="main",
        metadata=_help(
            "Loss of the auxiliary branch heads: the main loss, or Smooth-L1.",
        ),
    )
    vad_center_weight: float = field(
        default=0.0,
        metadata=_help("concat-frames: weight of mean((v - 0.5)^2) on the free VAD latent v."),
    )
    standardize: bool = field(
        default=True,
        metadata=_help(
            "Standardise every input per dimension with the training set's mean and sd "
            "(saved with the weights; ridge always standardises)."
        ),
    )

    def __post_init__(self) -> None:
        problems = []
        if self.head not in HEADS:
            problems.append(f"head {self.head!r} is unknown (known: {', '.join(HEADS)})")
        elif self.inputs and not HEADS[self.head].takes_inputs:
            choosers = ", ".join(k for k, v in HEADS.items() if v.takes_inputs)
            problems.append(f"inputs: the {self.head} head reads the frames; inputs chooses what "
                            f"{choosers} read")  # fmt: skip
        for name in ("hidden", "mlp_hidden", "branch_dim"):
            if not 1 <= getattr(self, name) <= MAX_WIDTH:
                problems.append(f"{name} must be in 1..{MAX_WIDTH}")
        if not 1 <= self.layers <= MAX_LAYERS:
            problems.append(f"layers must be in 1..{MAX_LAYERS}")
        if not 0.0 <= self.dropout < 1.0:
            problems.append("dropout must be in [0, 1)")
        if not (self.aux_weight >= 0 and self.vad_weight >= 0 and self.vad_center_weight >= 0):
            problems.append("aux_weight, vad_weight and vad_center_weight must be >= 0")
        try:
            parse_stream_weights(self.stream_aux_weights)
        except ValueError as error:
            problems.append(str(error))
        if not 0 <= self.pool_steps <= MAX_WIDTH:
            problems.append(f"pool_steps must be in 0..{MAX_WIDTH}")
        if not self.ridge_alphas or not all(math.isfinite(a) and a > 0 for a in self.ridge_alphas):
            problems.append("ridge_alphas must be positive numbers")
        bad_dims = [k for k, v in self.dims.items() if not 1 <= v <= 1 << 20]
        if bad_dims:
            problems.append(f"input widths out of range: {', '.join(bad_dims)}")
        problems += choice_problems(self)
        if problems:
            raise ConfigError("; ".join(problems))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> HeadConfig:
        from emi_heads.config_json import from_dict

        return from_dict(cls, data)


@dataclass(frozen=True)
class TrainConfig:
    """How a head is trained; saved in config.json beside the head's own config."""

    epochs: int = field(default=30, metadata=_help("Training epochs."))
    batch_size: int = field(default=32, metadata=_help("Clips per step."))
    min_steps: int = field(
        default=1500,
        metadata=_help(
            "Floor on the run's optimizer steps: on a small set each epoch repeats passes over "
            "the training clips until epochs x steps reach it (0: one pass per epoch)."
        ),
    )
    lr: float = field(default=1e-3, metadata=_help("AdamW learning rate."))
    weight_decay: float = field(default=0.01, metadata=_help("AdamW weight decay."))
    warmup_fraction: float = field(
        default=0.05, metadata=_help("Share of the steps spent warming the rate up.")
    )
    warmup_epochs: float = field(
        default=0.0,
        metadata=_help(
            "Warm-up length in epochs, whatever the number of epochs (0: warmup_fraction "
            "decides; the published LSTM: 1)."
        ),
    )
    grad_clip: float = field(default=1.0, metadata=_help("Gradient clipping threshold."))
    clip_mode: Literal["norm", "value"] = field(
        default="norm",
        metadata=_help("Clip the gradients' total norm, or each value."),
    )
    lr_schedule: Literal["warmup-cosine", "cosine-epoch"] = field(
        default="warmup-cosine",
        metadata=_help(
            "Linear warm-up then cosine decay stepped per batch, or cosine annealing stepped "
            "per epoch without warm-up.",
        ),
    )
    loss: str = field(default="mse+pearson", metadata=_help("e.g. mse, pearson, mse+0.1*ccc"))
    ema: bool = field(default=True, metadata=_help("EMA of the weights (evaluated, saved)."))
    ema_decay: float | None = field(
        default=None,
        metadata=_help(
            "EMA decay per step (0: tied to the run's length, a time constant of "
            f"{EMA_RUN_SHARE:.0%} of its steps, at least 10).",
            zero_is_none=True,
        ),
    )
    ema_warmup: bool = field(
        default=True,
        metadata=_help("EMA decay min(d, (1+t)/(10+t)) at first; off: d from the first step."),
    )
    corr_ramp_epochs: int = field(
        default=0,
        metadata=_help("Ramp the pearson/ccc terms' weight up over N epochs: min(1, epoch/N)."),
    )
    min_improvement: float = field(
        default=0.0, metadata=_help("A better valid r must beat the best by more than this.")
    )
    patience: int = field(
        default=10, metadata=_help("Early stopping: epochs without a better valid r.")
    )
    select_window: int = field(
        default=3,
        metadata=_help(
            "Best epoch and early stopping on the mean valid r of the last N epochs (1: raw)."
        ),
    )
    length_buckets: bool = field(
        default=True,
        metadata=_help(
            "Sequence heads: batches of clips of similar length (little padding); off: "
            "uniformly shuffled batches, as published."
        ),
    )
    modality_dropout: float = field(
        default=0.0,
        metadata=_help(
            "Training only: each clip's every /features stream is blanked with probability p, "
            "as a clip the stream lacks, so that a clip missing a stream still predicts."
        ),
    )
    max_seconds: float | None = field(
        default=12.0,
        metadata=_help("Use each clip's first seconds of frames (0: all).", zero_is_none=True),
    )
    seed: int = field(default=0, metadata=_help("Seed of initialisation and batch order."))

    def __post_init__(self) -> None:
        problems = []
        if self.epochs < 1 or self.batch_size < 1 or self.patience < 1:
            problems.append("epochs, batch_size and patience must be >= 1")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            problems.append("lr must be a positive number")
        if not self.weight_decay >= 0:
            problems.append("weight_decay must be >= 0")
        if not 0.0 <= self.modality_dropout < 1.0:
            problems.append("modality_dropout must be in [0, 1)")
        if not 0.0 <= self.warmup_fraction < 1.0:
            problems.append("warmup_fraction must be in [0, 1)")
        if not 0.0 <= self.warmup_epochs <= self.epochs:
            problems.append("warmup_epochs must be in [0, epochs]")
        if not self.grad_clip > 0:
            problems.append("grad_clip must be > 0")
        if self.corr_ramp_epochs < 0 or not self.min_improvement >= 0:
            problems.append("corr_ramp_epochs and min_improvement must be >= 0")
        if self.ema_decay is not None and not 0.0 < self.ema_decay < 1.0:
            problems.append("ema_decay must be in (0, 1) (or None: tied to the run's length)")
        if self.min_steps < 0 or self.select_window < 1:
            problems.append("min_steps must be >= 0 and select_window >= 1")
        if self.max_seconds is not None and not self.max_seconds > 0:
            problems.append("max_seconds must be > 0 (or None: every frame)")
        try:
            parse_loss_terms(self.loss)
        except ValueError as error:
            problems.append(str(error))
        problems += choice_problems(self)
        if problems:
            raise ConfigError("; ".join(problems))

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        from emi_heads.config_json import from_dict

        return from_dict(cls, data)


@dataclass(frozen=True)
class InputSpec:
    """What a head reads from the cache: the same spec loads training and prediction inputs."""

    need_frames: bool
    use_vad: bool
    max_seconds: float | None


def input_spec(head: HeadConfig, train: TrainConfig) -> InputSpec:
    return InputSpec(HEADS[head.head].needs_frames, head.use_vad, train.max_seconds)
