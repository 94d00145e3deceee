"""The registry of stage one's modalities (`--modality NAME`), apart from the modules that use
it: names to `module:Class`, imported on use. Light: no torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from emi_features.extraction.modality import Modality

MODALITIES: dict[str, str] = {
    "audio": "emi_features.audio.modality:AudioModality",
    "vision": "emi_features.vision.encode:VisionModality",
    "egemaps": "emi_features.audio.egemaps:EgemapsModality",
    "layers": "emi_features.audio.layers:LayersModality",
}


def modality_class(name: str) -> type[Modality]:
    """The registered modality NAME (imported on use)."""
    if name not in MODALITIES:
        raise ValueError(f"modality {name!r} is unknown (known: {', '.join(MODALITIES)})")
    module, attribute = MODALITIES[name].split(":")
    return getattr(importlib.import_module(module), attribute)


def get_modality(name: str) -> Modality:
    return modality_class(name)()
