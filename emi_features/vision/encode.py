"""`emi extract INPUT --modality vision --model IMAGE_MODEL --stream vision [--fps 5]`: per-frame
embeddings of the video track, a modality (`extraction.modality`) run by the shared per-clip
runner into a side cache that `extraction.side_stream` attaches as `/features/NAME`.

Each clip's video track is sampled at `fps`: sample k (from 0, while k / fps is inside the
clip) is the last decoded frame shown at time k / fps, so the stream's frame rate is exactly
`fps` whatever the source's. A Hugging Face image encoder (ViT, or the vision tower of CLIP)
embeds each sample; the stream holds its [CLS] token (or, with `frame_pooling="mean"`, the mean
of all its tokens, as the 8th ABAW EMI winner read ViT-H), (T, D) float16 at `fps` frames/s,
and its clip mean. With `crop="face"` each sample is cropped to the largest face OpenCV's
frontal-face Haar cascade finds (a sample with no face is kept whole, and counted); OpenCV is
then needed. Clips without a video track are recorded as skipped, so they are missing from
the stream.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from emi_features import __version__
from emi_features.cache.schema import SAMPLE_RATE, Attr
from emi_features.core.models import IMAGE_MODEL_ID
from emi_features.extraction.config import ExtractConfig
from emi_features.extraction.modality import Modality, SkipClip

log = logging.getLogger(__name__)
IMAGES_PER_BATCH = 32
LAYER_OF = {"cls": "cls", "mean": "token-mean"}  # frame_pooling -> the stream's `layer`


class NoVideoError(ValueError):
    """A clip whose file has no video track (an audio file, or an audio-only container)."""


class ImageEncoder:
    """A Hugging Face image model's [CLS] embedding, or the mean of its last hidden state over
    every token (`pooling="mean"`): (N, H, W, 3) uint8 RGB -> (N, D) float32."""

    def __init__(self, model: str, *, device: Any, offline: bool = False, pooling: str = "cls"):
        import transformers
        from transformers import AutoImageProcessor, AutoModel

        from emi_features.audio.backbones import BackboneError, state_fingerprint
        from emi_features.core.hub import TINY_RANDOM, load_error, pretrained_options, resolve_model

        transformers.utils.logging.disable_progress_bar()
        model = resolve_model(model, "image")
        options = pretrained_options(model, offline)
        try:
            network = AutoModel.from_pretrained(model, **options)
            self.processor = AutoImageProcessor.from_pretrained(model, **options)
        except (OSError, ValueError) as error:
            raise load_error(model, "image", offline, error, [TINY_RANDOM]) from error
        network = getattr(network, "vision_model", network)  # CLIP: its vision tower
        if "pixel_values" not in inspect.signature(network.forward).parameters:
            raise BackboneError(f"{model}: not an image encoder ({type(network).__name__})")
        self.network = network.eval().to(device)
        self.device = device
        self.hidden_size = int(network.config.hidden_size)
        self.pooling = pooling
        self.fingerprint = state_fingerprint(network, type(network).__name__, LAYER_OF[pooling])

    def embed(self, images: list[np.ndarray]) -> np.ndarray:
        import torch

        pixels = self.processor(images=images, return_tensors="pt")["pixel_values"]
        with torch.inference_mode():
            output = self.network(pixel_values=pixels.to(self.device))
        states = output.last_hidden_state.float()
        pooled = states.mean(dim=1) if self.pooling == "mean" else states[:, 0]
        return pooled.cpu().numpy()


def face_cropper() -> Any:
    """A function cropping an RGB image to its largest frontal face (OpenCV's Haar cascade);
    it returns the image whole when it finds none. One line when OpenCV is not installed."""
    from emi_features.audio.backbones import BackboneError

    try:
        import cv2
    except ImportError:
        raise BackboneError(
            "--crop face needs OpenCV: pip install opencv-python-headless (or use --crop none)"
        ) from None
    detector = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")

    def crop(image: np.ndarray) -> tuple[np.ndarray, bool]:
        gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        boxes = detector.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5)
        return largest_box(image, boxes)

    return crop


def largest_box(image: np.ndarray, boxes: Any) -> tuple[np.ndarray, bool]:
    """The image cut to the largest (x, y, w, h) box, and whether there was one."""
    if len(boxes) == 0:
        return image, False
    x, y, w, h = max((tuple(int(v) for v in b) for b in boxes), key=lambda b: b[2] * b[3])
    return image[y : y + h, x : x + w], True


def upright(image: np.ndarray, rotation: float) -> np.ndarray:
    """An (H, W, 3) frame turned as its display matrix says (PyAV's `frame.rotation`: degrees
    counter-clockwise; a phone's portrait video is stored sideways with -90)."""
    turns = round(float(rotation or 0) / 90) % 4
    return np.ascontiguousarray(np.rot90(image, k=turns)) if turns else image


def sample_frames(path: Path, fps: float) -> Iterator[np.ndarray]:
    """RGB frames (H, W, 3) uint8 of the video track at `fps`, upright as a player shows them
    (the container's display rotation applied): sample k is the frame on show at time k / fps,
    for every k / fps before the video track's end (at least one sample)."""
    import av

    from emi_features.audio.decode import c_stderr_captured

    with c_stderr_captured(), av.open(str(path)) as container:
        if not container.streams.video:
            raise NoVideoError(f"{path.name}: no video track")
        stream = container.streams.video[0]
        step = 1.0 / float(stream.average_rate or 25)
        shown, end, k = None, 0.0, 0
        for frame in container.decode(stream):
            at = float(frame.time) if frame.time is not None else end
            while shown is not None and k / fps < at - 1e-9:
                yield shown
                k += 1
            shown = upright(frame.to_ndarray(format="rgb24"), frame.rotation)
            end = at + step
        # the track's own extent (the container's may run on with a longer audio track)
        duration = float(stream.duration * stream.time_base) if stream.duration else end
        while shown is not None and (k / fps < max(end, duration) - 1e-9 or k == 0):
            yield shown
            k += 1


def embed_clip(
    path: Path, encoder: ImageEncoder, fps: float, crop: Any = None
) -> tuple[np.ndarray, int]:
    """(T, D) float32 embeddings of a clip's samples, and how many had no face."""
    rows, batch, faceless = [], [], 0
    for image in sample_frames(path, fps):
        if crop is not None:
            image, found = crop(image)
            faceless += not found
        batch.append(image)
        if len(batch) == IMAGES_PER_BATCH:
            rows.append(encoder.embed(batch))
            batch = []
    if batch:
        rows.append(encoder.embed(batch))
    return np.concatenate(rows), faceless


@dataclass(frozen=True)
class VisionSettings:
    """The settings of `--modality vision`."""

    fps: float = field(default=5.0, metadata={"help": "vision: video samples per second."})
    crop: Literal["none", "face"] = field(
        default="none",
        metadata={
            "help": "vision: the whole frame, or the largest face (OpenCV's Haar cascade; "
            "the whole frame when none is found)."
        },
    )

    frame_pooling: Literal["cls", "mean"] = field(
        default="cls",
        metadata={
            "help": "vision: each sample's embedding: the [CLS] token, or the mean over "
            "all tokens of the last hidden state."
        },
    )

    def __post_init__(self) -> None:
        if not 0 < self.fps <= 100:
            raise ValueError("--fps must be in (0, 100]")


class VisionModality(Modality):
    name = "vision"
    description = "per-frame embeddings ([CLS] or token mean) of the video track by an image model"
    source = "video"
    default_model = IMAGE_MODEL_ID
    settings = VisionSettings

    def open(self, config: ExtractConfig, device: Any) -> VisionEncoder:
        return VisionEncoder(config, device)


class VisionEncoder:
    """Each clip's video track sampled at `fps`, each sample (face-cropped) embedded."""

    def __init__(self, config: ExtractConfig, device: Any):
        self.settings: VisionSettings = config.settings
        self.crop = face_cropper() if self.settings.crop == "face" else None
        self.encoder = ImageEncoder(
            config.model, device=device, offline=config.offline, pooling=self.settings.frame_pooling
        )
        self.faceless = 0
        self.attrs = {
            Attr.BACKBONE: config.model,
            Attr.FINGERPRINT: self.encoder.fingerprint,
            Attr.HIDDEN_SIZE: self.encoder.hidden_size,
            Attr.LAYER: LAYER_OF[self.settings.frame_pooling],
            Attr.SOURCE: "video",
            Attr.DTYPE: "float32",
            Attr.FRAME_RATE: float(self.settings.fps),
            Attr.CROP: self.settings.crop,
            Attr.PACKAGE_VERSION: __version__,
        }

    def encode(self, clip: Any) -> Any:
        from emi_features.cache.schema import ClipFeatures

        if clip.path is None:
            raise SkipClip("no video file")
        try:
            frames, faceless = embed_clip(clip.path, self.encoder, self.settings.fps, self.crop)
        except NoVideoError:
            raise SkipClip("no video track") from None
        except Exception as error:  # PyAV raises its own error types for broken files
            raise SkipClip(
                f"video not decodable ({type(error).__name__}: {str(error)[:120]})"
            ) from None
        self.faceless += faceless
        return ClipFeatures(
            id=clip.id,
            frames=frames,
            frame_vad=None,
            mean=frames.mean(axis=0).astype(np.float32),
            vad=None,
            num_samples=int(round(len(frames) / self.settings.fps * SAMPLE_RATE)),
        )

    def close(self) -> None:
        if self.crop is not None and self.faceless:
            log.info("%d sampled frames had no face and were encoded whole", self.faceless)
