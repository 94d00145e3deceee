"""`--modality layers` (`emi extract --layers all --pool stats --stream NAME`): every hidden
layer of a speech encoder, each reduced to the clip's mean and standard deviation over its
frames — a small clip stream for the layer-weighted sums of the SUPERB practice (a learned
softmax weight per layer, `emi train --head concat --layer-weights`).

One clip's vector is (L, 2D) flattened to L x 2D float32, L = the encoder's layers + 1
(hidden_states[0] is the CNN features projected), each row [mean ⊕ sd] over the clip's frames;
the stream records `layers` = L. Clips longer than `--window-seconds` run in windows one after
another, their frames pooled together. Runs per clip through the per-clip runner (resumable,
torchrun ranks), not the batched audio runner: the model sees one clip (window) at a time.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from emi_features import __version__
from emi_features.cache.schema import SAMPLE_RATE, Attr
from emi_features.core.models import VAD_MODEL_ID
from emi_features.extraction.config import ExtractConfig
from emi_features.extraction.modality import Modality, SkipClip


class LayersModality(Modality):
    name = "layers"
    description = (
        "every hidden layer's clip mean and sd of a speech encoder (a clip stream; "
        "for learned layer weights; `--layers all --pool stats`)"
    )
    source = "audio"
    default_model = VAD_MODEL_ID

    def open(self, config: ExtractConfig, device: Any) -> LayerStats:
        return LayerStats(config, device)


class LayerStats:
    """One clip's audio -> (1, L x 2D) every hidden layer's [mean ⊕ sd] over its frames."""

    def __init__(self, config: ExtractConfig, device: Any):
        from emi_features.audio.backbones import BackboneError, HFBackbone, load_backbone

        backbone = load_backbone(config.model, offline=config.offline)
        if not isinstance(backbone, HFBackbone):
            raise BackboneError(
                f"--layers all needs a Hugging Face speech encoder; "
                f"{config.model} has no hidden layers"
            )
        self.backbone, self.device = backbone.to(device), device
        self.window = int(config.window_seconds * SAMPLE_RATE)
        self.layers = backbone.encoder.config.num_hidden_layers + 1
        self.attrs = {
            Attr.BACKBONE: config.model,
            Attr.FINGERPRINT: f"{backbone.fingerprint}-layers-stats",
            Attr.HIDDEN_SIZE: self.layers * 2 * backbone.hidden_size,
            Attr.LAYER: "all",
            Attr.SOURCE: "audio",
            Attr.DTYPE: "float32",
            Attr.PACKAGE_VERSION: __version__,
            "layers": self.layers,
            "clip_level": True,  # attached as a clip stream
        }

    def encode(self, clip: Any) -> Any:
        import torch

        from emi_features.audio.decode import DecodeError, load_audio
        from emi_features.cache.schema import ClipFeatures

        try:
            wave = load_audio(clip.path)
        except DecodeError as error:
            raise SkipClip(str(error)) from None
        if len(wave) < self.backbone.grid.receptive_field:
            raise SkipClip(f"{len(wave) / SAMPLE_RATE:.3f} s of audio: shorter than one frame")
        total = np.zeros((self.layers, 2, self.backbone.hidden_size), dtype=np.float64)
        count = 0
        for start in range(0, len(wave), self.window):
            piece = wave[start : start + self.window]
            if len(piece) < self.backbone.grid.receptive_field:  # a tail shorter than a frame
                continue
            inputs = self.backbone.feature_extractor(
                piece, sampling_rate=SAMPLE_RATE, return_tensors="pt"
            )
            with torch.inference_mode():
                states = self.backbone.encoder(
                    inputs["input_values"].to(self.device), output_hidden_states=True
                ).hidden_states
            stacked = torch.stack(states)[:, 0].double()  # (L, T, D), reduced where it lies
            total[:, 0] += stacked.sum(dim=1).cpu().numpy()
            total[:, 1] += stacked.square().sum(dim=1).cpu().numpy()
            count += stacked.shape[1]
        mean = total[:, 0] / count
        sd = np.sqrt(np.maximum(total[:, 1] / count - mean**2, 0.0))
        vector = np.concatenate([mean, sd], axis=1).reshape(-1).astype(np.float32)
        return ClipFeatures(
            id=clip.id,
            frames=vector[None],
            frame_vad=None,
            mean=vector,
            vad=None,
            num_samples=len(wave),
        )

    def close(self) -> None:
        """Nothing to report: a clip too short for one frame is already a logged skip."""
