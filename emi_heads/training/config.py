"""How a head is trained (`TrainConfig`) and what a run reads of a cache (`InputSpec`, the
`reads` block of config.json). Frozen dataclasses, validated when built, saved in config.json
beside the head's own settings (`heads.settings`).

No heavy imports: `emi-train --help` and argument errors answer before torch loads. Each field's
`help` is the one the command line shows; `emi-train` has an option for every field.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

from emi_features.core.dataclass_options import choice_problems
from emi_heads.heads.settings import ConfigError, HeadConfig
from emi_heads.training.losses import parse_loss_terms

EMA_RUN_SHARE = 0.05  # an automatic EMA averages over the last 5 % of the run's steps


def _help(text: str, **extra: Any) -> dict[str, Any]:
    return {"help": text, **extra}


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
    lr_schedule: Literal["warmup-cosine", "cosine-epoch", "plateau"] = field(
        default="warmup-cosine",
        metadata=_help(
            "Linear warm-up then cosine decay stepped per batch, cosine annealing stepped "
            "per epoch without warm-up, or halved when the valid r has not improved for "
            "max(3, patience // 3) epochs (ReduceLROnPlateau, MimicMetrics).",
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
    unimodal_epochs: int = field(
        default=0,
        metadata=_help(
            "Two-stage training (MimicMetrics, 10th ABAW): first N epochs of each stream's "
            "branch alone on its own auxiliary head (the best epoch by their mean valid r kept), "
            "then the fusion over them (concat-frames; 0: one stage)."
        ),
    )
    unimodal_runs: Literal["joint", "separate"] = field(
        default="joint",
        metadata=_help(
            "Two-stage training: the branches trained in one run (their losses summed, one best "
            "epoch), or a run each, one after another, each with its own optimizer, schedule, "
            "early stop and best epoch (MimicMetrics)."
        ),
    )
    l2_normalize: str = field(
        default="",
        metadata=_help(
            "Clip streams scaled to unit length when read, comma-separated (features/NAME; "
            "MimicMetrics' text vectors). A missing clip stays zero."
        ),
    )
    encoder_lr_scale: float = field(
        default=0.0,
        metadata=_help(
            "Two-stage training: the branches' learning rate in the fusion stage, times --lr "
            "(0: frozen; MimicMetrics fine-tunes them at 0.05)."
        ),
    )
    max_seconds: float | None = field(
        default=12.0,
        metadata=_help("Use each clip's first seconds of frames (0: all).", zero_is_none=True),
    )
    stream_max_seconds: str = field(
        default="",
        metadata=_help(
            "Per stream, NAME=SECONDS,...: its crop instead of --max-seconds (frames, "
            "features/NAME; the 8th ABAW winner: 12 s of audio, 400 face frames = 80 s at 5/s)."
        ),
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
        if self.unimodal_epochs < 0 or not 0.0 <= self.encoder_lr_scale <= 1.0:
            problems.append("unimodal_epochs must be >= 0 and encoder_lr_scale in [0, 1]")
        bad = [
            n
            for n in self.l2_normalize.split(",")
            if n.strip() and not n.strip().startswith("features/")
        ]
        if bad:
            problems.append(f"l2_normalize: {bad[0].strip()} is not a stream (features/NAME)")
        if self.encoder_lr_scale and not self.unimodal_epochs:
            problems.append(
                "encoder_lr_scale is the fusion stage's rate of two-stage training: "
                "give unimodal_epochs too"
            )
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
            stream_crops(self.stream_max_seconds)
        except ValueError as error:
            problems.append(str(error))
        problems += choice_problems(self)
        if problems:
            raise ConfigError("; ".join(problems))

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        from emi_heads.training.config_json import from_dict

        return from_dict(cls, data)


@dataclass(frozen=True)
class InputSpec:
    """What a head reads from the cache: the same spec loads training and prediction inputs.
    Saved as the `reads` block of config.json, so prediction needs no training config."""

    need_frames: bool
    use_vad: bool
    max_seconds: float | None
    streams: tuple[str, ...] | None = None  # the /features streams read; None: every one
    stream_max_seconds: tuple[tuple[str, float], ...] = ()  # (input, seconds): its own crop
    unit_length: tuple[str, ...] = ()  # clip streams scaled to unit L2 length when read

    def seconds_of(self, name: str) -> float | None:
        """The crop of the input `name` (`frames`, `features/NAME`), in seconds (None: all)."""
        return dict(self.stream_max_seconds).get(name, self.max_seconds)

    def to_dict(self) -> dict[str, Any]:
        block = {"frames": self.need_frames, "vad": self.use_vad, "max_seconds": self.max_seconds}
        if self.stream_max_seconds:  # runs saved before these read as they did
            block["stream_max_seconds"] = dict(self.stream_max_seconds)
        if self.unit_length:
            block["unit_length"] = list(self.unit_length)
        return block if self.streams is None else {**block, "streams": list(self.streams)}

    @classmethod
    def from_run(cls, recorded: dict[str, Any]) -> InputSpec:
        """The spec of a run's config.json: its `reads` block, or for a run saved before runs
        had one, what its head and training config imply."""
        if "reads" in recorded:
            block = recorded["reads"]
            streams = block.get("streams")
            crops = block.get("stream_max_seconds", {})
            crops = tuple((str(k), float(v)) for k, v in crops.items())
            return cls(
                bool(block["frames"]),
                bool(block["vad"]),
                block["max_seconds"],
                None if streams is None else tuple(map(str, streams)),
                crops,
                tuple(map(str, block.get("unit_length", ()))),
            )
        from emi_heads.heads.settings import head_class

        head = head_class(recorded["head"]["head"])
        return cls(head.needs_frames, recorded["head"]["use_vad"], recorded["train"]["max_seconds"])


def input_spec(head: HeadConfig, train: TrainConfig) -> InputSpec:
    """What `head` trained with `train` reads: only the streams its settings name, where they
    name them (a cache's other streams are never read)."""
    from emi_heads.heads.reads import requested_streams

    crops = tuple(stream_crops(train.stream_max_seconds).items())
    unit = tuple(n.strip() for n in train.l2_normalize.split(",") if n.strip())
    return InputSpec(
        head.needs_frames, head.use_vad, train.max_seconds, requested_streams(head), crops, unit
    )


def stream_crops(spec: str) -> dict[str, float]:
    """`stream_max_seconds` (`features/face=80`) as {input: seconds}, each > 0."""
    from emi_heads.heads.reads import parse_pairs

    return parse_pairs(
        spec, "stream_max_seconds", "seconds > 0", float, lambda v: v > 0 and math.isfinite(v)
    )
