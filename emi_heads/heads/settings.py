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

import importlib
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar, Literal

from emi_features.core.dataclass_options import choice_problems
from emi_heads.heads import reads
from emi_heads.training.config_json import ConfigError  # noqa: F401  (imported from here too)

MAX_WIDTH = 1 << 16  # the widest layer a config may ask for: 65,536 units
MAX_LAYERS = 16
MAX_OUTPUTS = 1024  # targets a task may have
NOT_SETTINGS = ("head", "dims", "outputs")  # set by the data, not on the command line
ALIASES = {"linear": "ridge"}  # the names heads had before (runs saved with them still load)


def _help(text: str, **extra: Any) -> dict[str, Any]:
    return {"help": text, **extra}


def _inputs() -> Any:
    """`inputs`: the one definition every head that chooses its inputs shares."""
    return field(default="", metadata=_help(
        "What the head reads, comma-separated; empty: all. concat, ridge: clip inputs and "
        "streams (frame_stats, mean, vad, frame_vad_stats, features/NAME); streams-lstm: frame "
        "streams (frames, features/NAME), an LSTM each, and clip streams joined as they "
        "are."))  # fmt: skip


@dataclass(frozen=True)
class HeadConfig:
    """What every head has: its name, the widths of what it reads (`dims`, from the cache),
    and the ablation switches of the VAD inputs and the global mean."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    network: ClassVar[str] = ""  # module:Class of its `Head`
    reads: ClassVar[Callable[[Any], list[str]]]
    needs_frames: ClassVar[bool] = False  # sequence heads read every frame
    trained_by_sgd: ClassVar[bool] = True

    head: str
    dims: dict[str, int] = field(default_factory=dict)
    outputs: int = 6  # the task's targets (the EMI track's six emotions unless the run says)
    use_vad: bool = field(default=True, metadata=_help("Ablation: VAD inputs.", flag="vad"))
    use_mean: bool = field(
        default=True, metadata=_help("Ablation: global mean vector.", flag="mean")
    )

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:
            raise ConfigError("; ".join(problems))

    def problems(self) -> list[str]:
        """A line per invalid setting (subclasses add their own)."""
        problems = []
        if self.head != self.name:
            problems.append(f"head {self.head!r}: this config is the {self.name} head's")
        if not 1 <= self.outputs <= MAX_OUTPUTS:
            problems.append(f"outputs must be in 1..{MAX_OUTPUTS}")
        bad_dims = [k for k, v in self.dims.items() if not 1 <= v <= 1 << 20]
        if bad_dims:
            problems.append(f"input widths out of range: {', '.join(bad_dims)}")
        return [*problems, *choice_problems(self)]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def network_class(cls) -> type:
        """The `Head` subclass this config builds (imports torch)."""
        module, name = cls.network.split(":")
        return getattr(importlib.import_module(module), name)

    @classmethod
    def setting_names(cls) -> list[str]:
        return [f.name for f in fields(cls) if f.name not in NOT_SETTINGS]


@dataclass(frozen=True)
class NeuralConfig(HeadConfig):
    """What every head trained by SGD has."""

    mlp_hidden_zero: ClassVar[bool] = False  # may mlp_hidden be 0 (see RecurrentConfig)

    mlp_hidden: int = field(
        default=256,
        metadata=_help("Hidden width of the output MLP (lstm, streams-lstm: 0 is its input's)."),
    )
    dropout: float = field(default=0.2, metadata=_help("Dropout in every head."))
    output_activation: Literal["sigmoid", "none"] = field(
        default="sigmoid",
        metadata=_help(
            "Output layer: sigmoid, or none (predictions clipped to [0, 1] only when written).",
        ),
    )
    bias_at_label_mean: bool = field(
        default=True, metadata=_help("Start the output bias at the training label mean.")
    )
    standardize: bool = field(
        default=True,
        metadata=_help(
            "Standardise every input per dimension with the training set's mean and sd "
            "(saved with the weights; ridge always standardises)."
        ),
    )

    def problems(self) -> list[str]:
        problems = super().problems()
        if not int(not self.mlp_hidden_zero) <= self.mlp_hidden <= MAX_WIDTH:
            problems.append(f"mlp_hidden must be in {int(not self.mlp_hidden_zero)}..{MAX_WIDTH}")
        if not 0.0 <= self.dropout < 1.0:
            problems.append("dropout must be in [0, 1)")
        return problems


@dataclass(frozen=True)
class RecurrentConfig(NeuralConfig):
    """The LSTM heads: the LSTM's size and what joins its last state."""

    needs_frames = True
    mlp_hidden_zero = True  # mlp_hidden 0: the fused width, as published (Linear(2054, 2054))

    hidden: int = field(
        default=256,
        metadata=_help("LSTM hidden size (0: its input's width, as published: LSTM(1027, 1027))."),
    )
    layers: int = field(default=2, metadata=_help("LSTM layers."))
    mean_input: Literal["stats", "cache", "frames"] = field(
        default="stats",
        metadata=_help(
            "lstm, streams-lstm: what joins the last state — the frames' mean and sd over the "
            "crop (what ridge reads), the cache's /mean, or the time-mean of each LSTM's input "
            "frames (as published).",
        ),
    )
    input_norm: bool = field(
        default=True, metadata=_help("lstm, streams-lstm: LayerNorm on the frames before the LSTM.")
    )

    def problems(self) -> list[str]:
        problems = super().problems()
        if not 0 <= self.hidden <= MAX_WIDTH:
            problems.append(f"hidden must be in 0..{MAX_WIDTH}")
        if not 1 <= self.layers <= MAX_LAYERS:
            problems.append(f"layers must be in 1..{MAX_LAYERS}")
        return problems


@dataclass(frozen=True)
class LstmConfig(RecurrentConfig):
    name = "lstm"
    description = ("frames (+ frame VAD) -> 2-layer LSTM, last state + global mean -> MLP "
                   "(audio-only system, 6th ABAW)")  # fmt: skip
    network = "emi_heads.heads.lstm:LstmHead"
    reads = staticmethod(reads.lstm_reads)


@dataclass(frozen=True)
class StreamsLstmConfig(RecurrentConfig):
    name = "streams-lstm"
    description = ("one LSTM per frame-level stream (the cache's frames and every frame stream "
                   "under /features), last states + global mean -> MLP (late fusion per "
                   "modality, 8th ABAW)")  # fmt: skip
    network = "emi_heads.heads.streams_lstm:StreamLstmHead"
    reads = staticmethod(reads.streams_lstm_reads)

    inputs: str = _inputs()
    stream_hidden: str = field(
        default="",
        metadata=_help("streams-lstm: an LSTM width per stream, NAME=WIDTH,... (0: the input's "
                       "width; a stream not named: --hidden), e.g. features/face=768."),
    )  # fmt: skip

    def problems(self) -> list[str]:
        problems = super().problems()
        try:
            reads.parse_stream_widths(self.stream_hidden)
        except ValueError as error:
            problems.append(str(error))
        return problems


@dataclass(frozen=True)
class BranchConfig(NeuralConfig):
    """The concatenation-fusion heads: a branch per input, auxiliary heads, a VAD latent."""

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
    aux_loss: Literal["main", "smooth_l1"] = field(
        default="main",
        metadata=_help("Loss of the auxiliary branch heads: the main loss, or Smooth-L1."),
    )

    def problems(self) -> list[str]:
        problems = super().problems()
        if not 1 <= self.branch_dim <= MAX_WIDTH:
            problems.append(f"branch_dim must be in 1..{MAX_WIDTH}")
        if not all(0 <= w < math.inf for w in (self.aux_weight, self.vad_weight)):
            problems.append("aux_weight and vad_weight must be finite and >= 0")
        return problems


@dataclass(frozen=True)
class ConcatConfig(BranchConfig):
    name = "concat"
    description = ("branches per clip input, concatenated, auxiliary heads, VAD latent "
                   "(concatenation fusion, 10th ABAW)")  # fmt: skip
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
    description = ("per-frame branches (LayerNorm, Linear, GELU) mean-pooled over time, VAD "
                   "latent on the acoustic frames, auxiliary heads (the published concat "
                   "fusion, 10th ABAW)")  # fmt: skip
    network = "emi_heads.heads.frame_concat:FrameConcatHead"
    reads = staticmethod(reads.frames_reads)
    needs_frames = True

    inputs: str = field(default="frames", metadata=_help(
        "concat-frames: the streams fused, comma-separated: frames, and frame or clip streams "
        "(features/NAME); a clip stream is one step."))  # fmt: skip
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
        metadata=_help("concat-frames, training only: each clip's branch encodings dropped with "
                       "probability p before the fusion (one kept), the kept scaled by "
                       "1/(1-p) (MimicMetrics' modality dropout)."),
    )  # fmt: skip

    def problems(self) -> list[str]:
        problems = super().problems()
        try:
            shares = reads.parse_stream_weights(self.stream_aux_weights)
            if sum(shares.values()) > 1 + 1e-9:
                problems.append(f"stream_aux_weights: the shares of aux_weight add up to "
                                f"{sum(shares.values()):g}, more than 1")  # fmt: skip
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
        raise ConfigError(f"{', '.join(foreign)}: not a setting of the {config_class.name} head "
                          f"(its settings: {', '.join(sorted(own))})")  # fmt: skip
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
