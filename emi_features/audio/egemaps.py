"""`--modality egemaps`: openSMILE's eGeMAPS, audeering's field-standard acoustic parameters
(Eyben et al., 2016), weight-free, as a stream of a finished cache.

`--level lld`: the 25 low-level descriptors (loudness, pitch, jitter, shimmer, formants, spectral
slopes, ...) every 10 ms, a frame stream at 100 frames/s. `--level functionals`: the 88
functionals of the whole clip, a clip stream. The `opensmile` package is an optional extra
(`pip install 'emi[egemaps]'`); without it the command answers in one line.

    emi extract data/sample --modality egemaps --stream egemaps --out cache.h5
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from emi_features import __version__
from emi_features.cache.schema import SAMPLE_RATE, Attr
from emi_features.extraction.config import ExtractConfig
from emi_features.extraction.modality import Modality, SkipClip

LLD_RATE = 100.0  # openSMILE's eGeMAPS descriptors: 10 ms hop
MIN_SAMPLES = 1_000  # shorter, openSMILE fills every value with NaN (measured, opensmile 2.6)


@dataclass(frozen=True)
class EgemapsSettings:
    """The settings of `--modality egemaps`."""

    level: Literal["lld", "functionals"] = field(
        default="lld",
        metadata={
            "help": "egemaps: low-level descriptors every 10 ms (a frame stream), or the "
            "clip's functionals (a clip stream)."
        },
    )
    feature_set: Literal["eGeMAPSv02", "GeMAPSv01b"] = field(
        default="eGeMAPSv02", metadata={"help": "egemaps: the openSMILE feature set."}
    )


class EgemapsModality(Modality):
    name = "egemaps"
    description = "openSMILE eGeMAPS acoustic parameters (weight-free; the opensmile extra)"
    default_model = None
    settings = EgemapsSettings

    def open(self, config: ExtractConfig, device: Any) -> EgemapsEncoder:
        return EgemapsEncoder(config.settings)


def load_opensmile() -> Any:
    """The `opensmile` module, or one line saying how to install it."""
    try:
        import opensmile
    except ImportError:
        from emi_features.audio.backbones import BackboneError

        raise BackboneError(
            "--modality egemaps needs openSMILE: pip install 'emi[egemaps]' (or opensmile)"
        ) from None
    return opensmile


class EgemapsEncoder:
    """One clip's audio -> (T, 25) descriptors at 100 frames/s, or (1, 88) functionals."""

    def __init__(self, settings: EgemapsSettings):
        opensmile = load_opensmile()
        self.settings = settings
        level = (
            opensmile.FeatureLevel.LowLevelDescriptors
            if settings.level == "lld"
            else opensmile.FeatureLevel.Functionals
        )
        self.smile = opensmile.Smile(
            feature_set=getattr(opensmile.FeatureSet, settings.feature_set), feature_level=level
        )
        self.attrs = {
            Attr.BACKBONE: f"opensmile-{settings.feature_set}",
            Attr.FINGERPRINT: f"opensmile-{opensmile.__version__}-{settings.feature_set}-"
            f"{settings.level}",
            Attr.HIDDEN_SIZE: len(self.smile.feature_names),
            Attr.LAYER: settings.level,
            Attr.SOURCE: "audio",
            Attr.DTYPE: "float32",
            Attr.PACKAGE_VERSION: __version__,
        }
        if settings.level == "lld":
            self.attrs[Attr.FRAME_RATE] = LLD_RATE
        else:
            self.attrs["clip_level"] = True  # attached as a clip stream

    def encode(self, clip: Any) -> Any:
        from emi_features.audio.decode import DecodeError, load_audio
        from emi_features.cache.schema import ClipFeatures

        try:
            wave = load_audio(clip.path)
        except DecodeError as error:
            raise SkipClip(str(error)) from None
        if len(wave) < MIN_SAMPLES:
            raise SkipClip(
                f"{len(wave) / SAMPLE_RATE:.3f} s of audio: eGeMAPS needs "
                f"{MIN_SAMPLES / SAMPLE_RATE:.4f} s"
            )
        frames = self.smile.process_signal(wave, SAMPLE_RATE).to_numpy(dtype=np.float32)
        if not len(frames) or np.isnan(frames).all():
            raise SkipClip("openSMILE computed no parameters")
        frames = np.nan_to_num(frames)  # a descriptor undefined on a frame (rare) counts as 0
        return ClipFeatures(
            id=clip.id,
            frames=frames,
            frame_vad=None,
            mean=frames.mean(axis=0),
            vad=None,
            num_samples=len(wave),
        )

    def close(self) -> None:
        """Nothing to report: a clip openSMILE cannot measure is already a logged skip."""
