"""`--modality audio`: a speech backbone (the VAD model, wav2vec2, WavLM, HuBERT, a filter bank)
over the audio track, by the batched, windowed runner (`extraction.runner.extract`) that shares
the writer, the ranks and the attaching with every other modality. The main cache is this
modality's output; with `--stream NAME` a further backbone or layer joins a finished cache."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from emi_features.core.models import VAD_MODEL_ID
from emi_features.extraction.modality import Modality

if TYPE_CHECKING:  # the config's defaults build this modality's settings: no import at load
    from emi_features.extraction.config import ExtractConfig


class AudioModality(Modality):
    name = "audio"
    description = "a speech backbone's frames (+ frame VAD) on its own frame grid"
    source = "audio"
    default_model = VAD_MODEL_ID
    stream_only = False

    def run(
        self,
        input_path: str | Path,
        *,
        out: str | Path,
        config: ExtractConfig,
        progress: bool = True,
    ) -> Any:
        from emi_features.extraction.runner import extract

        return extract(input_path, out=out, config=config, progress=progress)
