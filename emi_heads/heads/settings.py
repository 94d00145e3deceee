"""Each head's own settings, a frozen dataclass per head that is also its registration: its
name, what it is, the network class that it builds (`module:Class`, imported on use) and what it
reads. `HEADS` lists them by name; `head_config(name, ...)` builds the right one.

Light (no torch): `emi train --help` shows every head's settings, and a bad value is refused in
one line, before torch loads. Settings several heads share are written once, in the base class
they share (`NeuralConfig`, `RecurrentConfig`, `BranchConfig`). Each field's `help` is the one
the command line shows.

Adding a head: its network module (a `Head` subclass) and its settings class here, named in
`HEADS` (see the README's "How to add").
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

from emi_heads.heads import reads
from emi_heads.heads.settings_base import (  # noqa: F401  (imported from here too)
    ALIASES,
    MAX_LAYERS,
    MAX_OUTPUTS,
    MAX_WIDTH,
    NOT_SETTINGS,
    BranchConfig,
    ConfigError,
    HeadConfig,
    NeuralConfig,
    RecurrentConfig,
    _help,
    _inputs,
)


@dataclass(frozen=True)
class LstmConfig(RecurrentConfig):
    name = "lstm"
    description = (
        "frames (+ frame VAD) -> 2-layer LSTM, last state + global mean -> MLP "
        "(audio-only system, 6th ABAW)"
    )
    network = "emi_heads.heads.lstm:LstmHead"
    reads = staticmethod(reads.lstm_reads)


@dataclass(frozen=True)
class StreamsLstmConfig(RecurrentConfig):
    name = "streams-lstm"
    description = (
        "one LSTM per frame-level stream (the cache's frames and every frame stream "
        "under /features), last states + global mean -> MLP (late fusion per "
        "modality, 8th ABAW)"
    )
    network = "emi_heads.heads.streams_lstm:StreamLstmHead"
    reads = staticmethod(reads.streams_lstm_reads)

    inputs: str = _inputs()
    stream_hidden: str = field(
        default="",
        metadata=_help(
            "streams-lstm: an LSTM width per stream, NAME=WIDTH,... (0: the input's "
            "width; a stream not named: --hidden), e.g. features/face=768."
        ),
    )

    def problems(self) -> list[str]:
        problems = super().problems()
        try:
            reads.parse_stream_widths(self.stream_hidden)
        except ValueError as error:
            problems.append(str(error))
        return problems


@dataclass(frozen=True)
class ConcatConfig(BranchConfig):
    name = "concat"
    description = (
        "branches per clip input, concatenated, auxiliary heads, VAD latent "
        "(concatenation fusion, 10th ABAW)"
    )
    network = "emi_heads.heads.concat:ConcatHead"
    reads = staticmethod(reads.branch_inputs)

    inputs: str = _inputs()
    layer_weights: bool = field(
        default=False,
        metadata=_help(
            "concat: a stream of every hidden layer (`emi extract --layers all`) enters as a "
            "learned softmax-weighted sum of its layers (SUPERB's weighted sum), the weights "
            "saved and plotted in the run; off: all layers side by side."
        ),
    )


@dataclass(frozen=True)
class FrameConcatConfig(BranchConfig):
    name = "concat-frames"
    description = (
        "per-frame branches (LayerNorm, Linear, GELU) mean-pooled over time, VAD "
        "latent on the acoustic frames, auxiliary heads (the published concat "
        "fusion, 10th ABAW)"
    )
    network = "emi_heads.heads.frame_concat:FrameConcatHead"
    reads = staticmethod(reads.frames_reads)
    needs_frames = True

    inputs: str = field(
        default="frames",
        metadata=_help(
            "concat-frames: the streams fused, comma-separated: frames, and frame or clip streams "
            "(features/NAME); a clip stream is one step."
        ),
    )
    stream_aux_weights: str = field(
        default="",
        metadata=_help(
            "concat-frames: each stream's share of aux_weight, e.g. frames=0.35 (the published "
            "shares: face 0.20, audio 0.35, text 0.45); streams not named share what is left "
            "evenly; empty: even shares."
        ),
    )
    pool_steps: int = field(
        default=16,
        metadata=_help(
            "concat-frames: adaptive average pooling of each clip to N steps (0: off; the "
            "published: 128)."
        ),
    )
    vad_center_weight: float = field(
        default=0.0,
        metadata=_help("concat-frames: weight of mean((v - 0.5)^2) on the free VAD latent v."),
    )
    frame_pool: Literal["mean", "attention"] = field(
        default="mean",
        metadata=_help(
            "How each stream's projected frames become its vector: their mean (as published), "
            "or masked attention pooling, a learned score per frame softmaxed over the clip's "
            "own frames (MimicMetrics, 10th ABAW)."
        ),
    )
    branch_layout: Literal["project-pool", "pool-project"] = field(
        default="project-pool",
        metadata=_help(
            "concat-frames: project each frame then pool and LayerNorm -> Linear (CASIA, 10th "
            "ABAW), or pool the raw frames then project, ending in a LayerNorm, with linear "
            "auxiliary heads (MimicMetrics, 10th ABAW; no VAD latent)."
        ),
    )
    triplet_weight: float = field(
        default=0.0,
        metadata=_help(
            "concat-frames: weight of the text-guided triplet term (CASIA, 10th ABAW): clips "
            "close in the guide stream are pulled together in the fused vector (0: off; the "
            "published: 0.05, switched off in their final run)."
        ),
    )
    triplet_margin: float = field(
        default=0.1, metadata=_help("concat-frames: margin of the triplet term.")
    )
    triplet_stream: str = field(
        default="features/text",
        metadata=_help("concat-frames: the stream whose distances guide the triplet term."),
    )
    encoding_dropout: float = field(
        default=0.0,
        metadata=_help(
            "concat-frames, training only: each clip's branch encodings dropped with "
            "probability p before the fusion (one kept), the kept scaled by "
            "1/(1-p) (MimicMetrics' modality dropout)."
        ),
    )

    def problems(self) -> list[str]:
        problems = super().problems()
        try:
            shares = reads.parse_stream_weights(self.stream_aux_weights)
            if sum(shares.values()) > 1 + 1e-9:
                problems.append(
                    f"stream_aux_weights: the shares of aux_weight add up to "
                    f"{sum(shares.values()):g}, more than 1"
                )
        except ValueError as error:
            problems.append(str(error))
        if not 0 <= self.pool_steps <= MAX_WIDTH:
            problems.append(f"pool_steps must be in 0..{MAX_WIDTH}")
        if not 0.0 <= self.encoding_dropout < 1.0:
            problems.append("encoding_dropout must be in [0, 1)")
        if not 0 <= self.vad_center_weight < math.inf:
            problems.append("vad_center_weight must be finite and >= 0")
        if not all(0 <= w < math.inf for w in (self.triplet_weight, self.triplet_margin)):
            problems.append("triplet_weight and triplet_margin must be finite and >= 0")
        return problems


@dataclass(frozen=True)
class RidgeConfig(HeadConfig):
    name = "ridge"
    description = "ridge regression on clip vectors (the baseline; `linear` is its old name)"
    network = "emi_heads.heads.ridge:RidgeHead"
    reads = staticmethod(reads.branch_inputs)
    trained_by_sgd = False

    inputs: str = _inputs()
    ridge_alphas: tuple[float, ...] = field(
        default=(0.1, 1.0, 10.0, 100.0, 1000.0),
        metadata=_help("ridge: ridge alphas tried on validation (comma-separated)."),
    )

    def problems(self) -> list[str]:
        problems = super().problems()
        if not self.ridge_alphas or not all(math.isfinite(a) and a > 0 for a in self.ridge_alphas):
            problems.append("ridge_alphas must be positive numbers")
        return problems


HEADS: dict[str, type[HeadConfig]] = {
    config.name: config
    for config in (LstmConfig, ConcatConfig, StreamsLstmConfig, FrameConcatConfig, RidgeConfig)
}


def head_class(name: str) -> type[HeadConfig]:
    """The settings class of the head NAME (or of its old name); one line when unknown."""
    name = ALIASES.get(name, name)
    if name not in HEADS:
        raise ConfigError(f"head {name!r} is unknown (known: {', '.join(HEADS)})")
    return HEADS[name]


def head_config(head: str, dims: dict[str, int] | None = None, **settings: Any) -> HeadConfig:
    """The config of the head `head` (an old name is accepted) with these settings; a setting
    that belongs to another head is refused by name."""
    config_class = head_class(head)
    own = set(config_class.setting_names())
    foreign = sorted(set(settings) - own)
    if foreign:
        raise ConfigError(
            f"{', '.join(foreign)}: not a setting of the {config_class.name} head "
            f"(its settings: {', '.join(sorted(own))})"
        )
    return config_class(config_class.name, dict(dims or {}), **settings)


def setting_owners(name: str) -> list[str]:
    """The heads that have the setting NAME."""
    return [head for head, config_class in HEADS.items() if name in config_class.setting_names()]


def all_settings() -> dict[str, type[HeadConfig]]:
    """Every head's settings by name, each once, with a settings class that has it (the command
    line's head options, `--set` keys)."""
    found: dict[str, type[HeadConfig]] = {}
    for config_class in HEADS.values():
        for name in config_class.setting_names():
            found.setdefault(name, config_class)
    return found
