"""What the heads' settings share (light: no torch): `HeadConfig` (every head), `NeuralConfig`
(the heads trained by SGD), `RecurrentConfig` (the LSTM heads) and `BranchConfig` (the
concatenation fusions), each field once, with the `help` the command line shows. The heads'
own settings classes and their registry: `heads.settings`.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar, Literal

from emi_features.core.dataclass_options import choice_problems
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
    return field(
        default="",
        metadata=_help(
            "What the head reads, comma-separated; empty: all. concat, ridge: clip inputs and "
            "streams (frame_stats, mean, vad, frame_vad_stats, features/NAME); streams-lstm: frame "
            "streams (frames, features/NAME), an LSTM each, and clip streams joined as they "
            "are."
        ),
    )


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
