"""What each head reads of a cache's inputs, as functions of its config alone (light: no
torch): the heads build their branches from them, `emi predict` checks a cache for them, and
`emi runs` shows them. Each head names its function in its settings class (`settings`).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from emi_features.cache.schema import FEATURES
from emi_features.core.pairs import split_pair

if TYPE_CHECKING:
    from emi_heads.heads.settings import HeadConfig

SUMMARIES = {"stats": "frame_stats", "cache": "mean"}  # mean_input -> the clip vector read
LAYERS = "layers"  # dims["layers/features/NAME"]: the hidden layers a layered stream holds


def module_key(name: str) -> str:
    """An input's name as a key of the head's module dicts and buffers (no "/" allowed there):
    `features/text` -> `features__text`."""
    return name.replace("/", "__")


def layer_count(config: HeadConfig, name: str) -> int:
    """How many hidden layers the clip vector `name` holds (`emi extract --layers all`): its
    width is that many times each layer's mean ⊕ sd; 1 for any other input."""
    return int(config.dims.get(f"{LAYERS}/{name}", 1))


def branch_inputs(config: HeadConfig) -> list[str]:
    """The clip vectors a concat or ridge head reads: `inputs` when given, else every one the
    cache has, after the ablation switches."""
    if config.inputs:
        return [name.strip() for name in config.inputs.split(",") if name.strip()]
    names = ["frame_stats"]
    if config.use_mean:
        names.append("mean")
    if config.use_vad:
        names += [n for n in ("vad", "frame_vad_stats") if n in config.dims]
    names += sorted(n for n in config.dims if n.startswith("features/"))
    return names


def sequence_streams(config: HeadConfig) -> list[str]:
    """The frame-level streams `streams-lstm` reads: `frames` and `seq/features/NAME`, all of
    them or those `inputs` names (`frames,features/face`)."""
    chosen = [n.strip() for n in config.inputs.split(",") if n.strip()]
    sequences = sorted(n for n in config.dims if n.startswith("seq/"))
    streams = [n for n in sequences if not chosen or n.removeprefix("seq/") in chosen]
    return ["frames", *streams] if not chosen or "frames" in chosen else streams


def joined_clip_streams(config: HeadConfig) -> list[str]:
    """The clip streams `streams-lstm` joins to its last states as they are (no LSTM: a
    sentence vector, as the 8th ABAW winner's text), in the order `inputs` names them; known
    once the cache's widths are (a frame stream has `seq/NAME` in `dims`)."""
    chosen = [n.strip() for n in config.inputs.split(",") if n.strip()]
    return [n for n in chosen if n != "frames" and f"seq/{n}" not in config.dims]


def _recurrent_extras(config: HeadConfig, frames: bool = True) -> list[str]:
    """The frame VAD beside the frames, and the clip summary joined to the last states."""
    vad = ["frame_vad"] if frames and config.use_vad and "frame_vad" in config.dims else []
    joined = config.use_mean and config.mean_input != "frames"
    return [*vad, *([SUMMARIES.get(config.mean_input, "mean")] if joined else [])]


def lstm_reads(config: HeadConfig) -> list[str]:
    return ["frames", *_recurrent_extras(config)]


def streams_lstm_reads(config: HeadConfig) -> list[str]:
    streams = sequence_streams(config)
    extras = _recurrent_extras(config, frames="frames" in streams)
    return [*streams, *joined_clip_streams(config), *extras]


def fused_streams(config: HeadConfig) -> list[str]:
    """The streams `concat-frames` fuses, a branch each: `inputs` (`frames,features/text`)."""
    return [n.strip() for n in config.inputs.split(",") if n.strip()] or ["frames"]


def frames_reads(config: HeadConfig) -> list[str]:
    """What `concat-frames` reads: each fused stream, and the triplet term's guide, as the
    batch holds it — `frames`, a frame stream as `seq/features/NAME`, a clip stream as
    `features/NAME`."""
    names = fused_streams(config)
    if config.triplet_weight and config.triplet_stream not in names:
        names = [*names, config.triplet_stream]
    return [f"seq/{n}" if n != "frames" and f"seq/{n}" in config.dims else n for n in names]


def requested_streams(config: HeadConfig) -> tuple[str, ...] | None:
    """The /features streams a head's settings name, by name, known before any data is read
    (its `inputs`, the triplet term's guide); () for a head of the backbone's frames alone;
    None where it reads every stream the cache has (`inputs` left empty on ridge, concat and
    streams-lstm)."""
    if not hasattr(config, "inputs"):  # lstm
        return ()
    named = [n.strip() for n in config.inputs.split(",") if n.strip()]
    if config.name == "concat-frames":
        named = fused_streams(config)
        if config.triplet_weight:
            named.append(config.triplet_stream)
    elif not named:
        return None
    prefix = f"{FEATURES}/"
    bare = (n.removeprefix("seq/") for n in named)
    return tuple(dict.fromkeys(n.removeprefix(prefix) for n in bare if n.startswith(prefix)))


def inputs_read(config: HeadConfig) -> list[str]:
    """The inputs (keys of `config.dims`) a head reads to predict: what a cache must hold for
    it, whatever else the training cache held."""
    return type(config).reads(config)


def streams_read(config: HeadConfig) -> list[str]:
    """The /features streams among `inputs_read`, by name (`fb10`, `text`)."""
    names = (n.removeprefix("seq/") for n in inputs_read(config))
    return list(dict.fromkeys(n.split("/", 1)[1] for n in names if n.startswith("features/")))


def parse_pairs(spec: str, option: str, what: str, convert, valid) -> dict[str, object]:
    """`NAME=VALUE,NAME=VALUE` -> {NAME: convert(VALUE)}: the one parser of such options
    (`stream_aux_weights`, `stream_hidden`, `stream_max_seconds`); one line naming `option` for
    a malformed pair or a value that `valid` refuses (`what` says what a value must be)."""
    pairs: dict[str, object] = {}
    for pair in filter(None, (p.strip() for p in spec.split(","))):
        try:
            name, text = split_pair(pair, option)
            value = convert(text)
        except ValueError:
            name, value = "", None
        if value is None or not valid(value):
            raise ValueError(f"{option}: {pair!r} is not NAME=VALUE with {what}")
        pairs[name] = value
    return pairs


def parse_stream_weights(spec: str) -> dict[str, float]:
    """`frames=0.35,features/text=0.45` -> {"frames": 0.35, "features/text": 0.45}; one-line
    error for a malformed pair or a weight that is not a number >= 0."""
    return parse_pairs(
        spec, "stream_aux_weights", "a weight >= 0", float, lambda w: w >= 0 and math.isfinite(w)
    )


def parse_stream_widths(spec: str) -> dict[str, int]:
    """`streams-lstm`'s `stream_hidden`: `features/face=768` -> {"features/face": 768}."""
    return parse_pairs(
        spec,
        "stream_hidden",
        "a whole width >= 0 (0: the input's)",
        int,
        lambda w: 0 <= w <= 1 << 16,
    )
