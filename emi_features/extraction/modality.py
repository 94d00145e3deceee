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

Adding a modality: one module with a `Modality` subclass, and one line in `MODALITIES`
(`extraction.registry`). A modality with a runner of its own defines `run` (audio's batched
runner); `per_clip.run_modality` runs either.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

if TYPE_CHECKING:
    from emi_features.cache.schema import ClipFeatures
    from emi_features.core.dataset import Clip
    from emi_features.extraction.config import ExtractConfig


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
        """The per-clip encoder that the shared runner drives (a modality with a `run` of its
        own, as audio has, has none)."""
        raise NotImplementedError(f"--modality {self.name} runs its own runner, not per clip")
