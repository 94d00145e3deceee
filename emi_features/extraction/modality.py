"""The one stream interface of stage one: a modality, registered by name (`--modality NAME`).

A modality is a class with a name, its own frozen settings dataclass (whose fields become
`emi extract` options), the medium it reads (`audio` or `video`), a default model, and an
`open(config, device)` that returns a `ClipEncoder`: the attributes it records in the cache and
its per-clip `encode`. Everything else — finding clips, parts, resume, skips with reasons,
progress with an ETA, the cache lock, torchrun ranks, and attaching the result to a finished
cache by id as `/features/NAME` — is shared (`per_clip.run_per_clip`, `side_stream`). The audio
backbones override `run` with their batched, windowed runner on the same writer and ranks.

Light at import (no torch): `emi extract --help` lists every modality's options before torch
loads. A modality module imports its heavy dependencies inside `open`.

Adding a modality: one module with a `Modality` subclass, and one line in `MODALITIES`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

if TYPE_CHECKING:
    from emi_features.cache.schema import ClipFeatures
    from emi_features.core.dataset import Clip
    from emi_features.extraction.config import ExtractConfig

MODALITIES: dict[str, str] = {
    "audio": "emi_features.audio.modality:AudioModality",
    "vision": "emi_features.vision.encode:VisionModality",
    "egemaps": "emi_features.audio.egemaps:EgemapsModality",
    "layers": "emi_features.audio.layers:LayersModality",
}


class SkipClip(ValueError):
    """A clip this modality cannot encode; the message is the reason recorded in the cache."""


class ClipEncoder(Protocol):
    """An opened modality: what it records in the cache, and each clip's features."""

    attrs: dict[str, Any]

    def encode(self, clip: Clip) -> ClipFeatures:
        """The clip's frames (T, D) and mean; raises `SkipClip(reason)` to skip it."""

    def close(self) -> None:
        """Log what the run counted (faces not found, ...)."""


@dataclass(frozen=True)
class NoSettings:
    """A modality without settings of its own."""


class Modality:
    """A kind of input encoded per clip (see module). Subclasses set the class attributes."""

    name: ClassVar[str]
    description: ClassVar[str]
    source: ClassVar[str] = "audio"  # what `find_clips` decodes: audio, or video
    default_model: ClassVar[str | None] = None  # None: --model is not read
    settings: ClassVar[type] = NoSettings
    stream_only: ClassVar[bool] = True  # written only as a stream of a finished cache
    frame_unit: ClassVar[str] = "s"  # what the progress bar counts

    def open(self, config: ExtractConfig, device: Any) -> ClipEncoder:
        """The per-clip encoder that the shared runner drives (a modality that overrides `run`
        with a runner of its own, as audio does, has none)."""
        raise NotImplementedError(f"--modality {self.name} runs its own runner, not per clip")

    def run(self, input_path: str | Path, *, out: str | Path, config: ExtractConfig,
            progress: bool = True) -> Any:  # fmt: skip
        """Every clip of INPUT into the cache `out` (resumable); returns an `ExtractResult`."""
        from emi_features.extraction.per_clip import run_per_clip

        return run_per_clip(self, input_path, out=out, config=config, progress=progress)


def modality_class(name: str) -> type[Modality]:
    """The registered modality NAME (imported on use)."""
    if name not in MODALITIES:
        raise ValueError(f"modality {name!r} is unknown (known: {', '.join(MODALITIES)})")
    module, attribute = MODALITIES[name].split(":")
    return getattr(importlib.import_module(module), attribute)


def get_modality(name: str) -> Modality:
    return modality_class(name)()
