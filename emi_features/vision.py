"""`emi extract INPUT --modality vision --model IMAGE_MODEL --stream vision [--fps 5]`: per-frame
embeddings of the video track, written like an audio extraction (resumable parts, a lock, a
skip list) into a side cache that `groups.extract_group` attaches as `/features/NAME`.

Each clip's video track is sampled at `fps`: sample k (from 0, while k / fps is inside the
clip) is the last decoded frame shown at time k / fps, so the stream's frame rate is exactly
`fps` whatever the source's. A Hugging Face image encoder (ViT, or the vision tower of CLIP)
embeds each sample; the stream holds its [CLS] token, (T, D) float16 at `fps` frames/s, and its
clip mean. With `crop="face"` each sample is cropped to the largest face OpenCV's frontal-face
Haar cascade finds (a sample with no face is kept whole, and counted); OpenCV is then needed.
Clips without a video track are recorded as skipped, so they are missing from the stream.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from emi_features import __version__
from emi_features.audio import c_stderr_captured
from emi_features.backbones import BackboneError, state_fingerprint
from emi_features.config import ExtractConfig
from emi_features.dataset import Clip, find_clips
from emi_features.devices import default_device, resolve_device
from emi_features.hub import TINY_RANDOM, load_error, pretrained_options, resolve_model
from emi_features.schema import SAMPLE_RATE, Attr
from emi_features.writer import CacheWriter, ClipFeatures

log = logging.getLogger(__name__)
CLIPS_PER_PART = 16  # clips committed together: what a kill can cost
IMAGES_PER_BATCH = 32


class NoVideoError(ValueError):
    """A clip whose file has no video track (an audio file, or an audio-only container)."""


class ImageEncoder:
    """A Hugging Face image model's [CLS] embedding: (N, H, W, 3) uint8 RGB -> (N, D) float32."""

    def __init__(self, model: str, *, device: torch.device, offline: bool = False):
        import transformers
        from transformers import AutoImageProcessor, AutoModel

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
        self.fingerprint = state_fingerprint(network, type(network).__name__, "cls")

    @torch.inference_mode()
    def embed(self, images: list[np.ndarray]) -> np.ndarray:
        pixels = self.processor(images=images, return_tensors="pt")["pixel_values"]
        output = self.network(pixel_values=pixels.to(self.device))
        return output.last_hidden_state[:, 0].float().cpu().numpy()


def face_cropper() -> Any:
    """A function cropping an RGB image to its largest frontal face (OpenCV's Haar cascade);
    it returns the image whole when it finds none. One line when OpenCV is not installed."""
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
    """(T, D) float32 [CLS] embeddings of a clip's samples, and how many had no face."""
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


def vision_attrs(config: ExtractConfig, encoder: ImageEncoder) -> dict[str, Any]:
    return {
        Attr.BACKBONE: config.model,
        Attr.FINGERPRINT: encoder.fingerprint,
        Attr.HIDDEN_SIZE: encoder.hidden_size,
        Attr.LAYER: "cls",
        Attr.SOURCE: "video",
        Attr.DTYPE: "float32",
        Attr.FRAME_RATE: float(config.fps),
        Attr.CROP: config.crop,
        Attr.PACKAGE_VERSION: __version__,
    }


def extract_vision(
    input_path: str | Path, *, out: str | Path, config: ExtractConfig, progress: bool = True
) -> Any:
    """Every clip's video track of INPUT into the cache `out` (see module); resumable."""
    from emi_features.extract import ExtractResult

    started = time.perf_counter()
    device = resolve_device(config.device or default_device())
    clips = find_clips(Path(input_path), split=config.split, source="video")
    crop = face_cropper() if config.crop == "face" else None
    encoder = ImageEncoder(config.model, device=device, offline=config.offline)
    writer = CacheWriter(
        out,
        vision_attrs(config, encoder),
        overwrite=config.overwrite,
        retry_skipped=config.retry_skipped,
    )
    processed, seconds, faceless = 0, 0.0, 0
    with contextlib.closing(writer):
        todo = [clip for clip in clips if clip.id not in writer.done_ids]
        log.info("%d clips, %d already in %s", len(clips), len(clips) - len(todo), out)
        bar = tqdm(total=len(todo), unit="clip", desc="video", disable=not progress or None)
        with bar:
            for first in range(0, len(todo), CLIPS_PER_PART):
                records, skipped = [], {}
                for clip in todo[first : first + CLIPS_PER_PART]:
                    record, reason = _clip_record(clip, encoder, config, crop)
                    if record is None:
                        log.warning("skip %s: %s", clip.id, reason)
                        skipped[clip.id] = reason
                    else:
                        records.append(record[0])
                        faceless += record[1]
                        seconds += len(record[0].frames) / config.fps
                    bar.update()
                writer.write_part(records, skipped)
                processed += len(records)
        if crop is not None and faceless:
            log.info("%d sampled frames had no face and were encoded whole", faceless)
        written, skipped_all = writer.finish()
    return ExtractResult(
        Path(out), written, skipped_all, processed, seconds, time.perf_counter() - started,
        medium="video",
    )  # fmt: skip


def _clip_record(
    clip: Clip, encoder: ImageEncoder, config: ExtractConfig, crop: Any
) -> tuple[tuple[ClipFeatures, int] | None, str]:
    """A clip's record and faceless count, or None and why it is skipped."""
    if clip.path is None:
        return None, "no video file"
    try:
        frames, faceless = embed_clip(clip.path, encoder, config.fps, crop)
    except NoVideoError:
        return None, "no video track"
    except Exception as error:  # PyAV raises its own error types for broken files
        return None, f"video not decodable ({type(error).__name__}: {str(error)[:120]})"
    record = ClipFeatures(
        id=clip.id,
        frames=frames,
        frame_vad=None,
        mean=frames.mean(axis=0).astype(np.float32),
        vad=None,
        num_samples=int(round(len(frames) / config.fps * SAMPLE_RATE)),
    )
    return (record, faceless), ""
