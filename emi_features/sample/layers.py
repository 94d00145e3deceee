"""The sample's other modalities: a spoken word that a label depends on, and a video image that
carries a label (see `sample_data`).

- Words: each clip says one word of `WORDS` (espeak-ng speaks it, mixed over the voice at a random
  time); the word's score is the clip's Admiration before the threshold. A clip too short to hold
  the word says nothing, and its transcript is empty. `transcripts.csv` holds what each clip says.
- Images: every video frame shows a bright disc on a noisy background; the disc's radius is the
  clip's Joy before the threshold.
"""

from __future__ import annotations

import functools
import io
import shutil
import subprocess
from dataclasses import dataclass

import numpy as np
import soundfile
import soxr

# spoken word -> score in [0, 1]
WORDS: dict[str, float] = {
    "awful": 0.0,
    "sad": 0.15,
    "plain": 0.3,
    "okay": 0.45,
    "fine": 0.6,
    "good": 0.75,
    "great": 0.9,
    "wonderful": 1.0,
}
IMAGE_SIZE = 48  # pixels, square
ESPEAK = "espeak-ng"


class SampleError(RuntimeError):
    """The sample cannot be generated on this machine; one line saying what is missing."""


@dataclass(frozen=True)
class Layers:
    """What a clip says ("" for nothing) and how large its image's disc is, in [0, 1]."""

    word: str
    image: float

    @property
    def word_score(self) -> float:
        return WORDS[self.word] if self.word else 0.0


@functools.cache
def _spoken(word: str) -> tuple[np.ndarray, int]:
    if shutil.which(ESPEAK) is None:
        raise SampleError(
            f"the sample's spoken words need {ESPEAK} (apt-get install espeak-ng); "
            f"or generate an audio-only sample with --no-layers"
        )
    completed = subprocess.run(
        [ESPEAK, "-v", "en", "-s", "150", "--stdout", word], capture_output=True, check=False
    )
    if completed.returncode != 0:
        raise SampleError(f"{ESPEAK} failed on {word!r}: {completed.stderr.decode()[:200]}")
    wave, rate = soundfile.read(io.BytesIO(completed.stdout), dtype="float32")
    return wave, rate


def speak(word: str, rate: int) -> np.ndarray:
    """The word spoken by espeak-ng, (N,) float32 at `rate`, peak 1."""
    wave, source_rate = _spoken(word)
    wave = soxr.resample(wave, source_rate, rate).astype(np.float32)
    return wave / (np.max(np.abs(wave)) + 1e-9)


def mix_word(wave: np.ndarray, layers: Layers, rng: np.random.Generator, rate: int) -> Layers:
    """Mix the clip's word into `wave` (in place) at a random time, as loud as the voice; a clip
    shorter than the word says nothing (its layers are returned with an empty word)."""
    if not layers.word:
        return layers
    spoken = speak(layers.word, rate)
    if spoken.size > wave.size:
        return Layers("", layers.image)
    start = int(rng.integers(0, wave.size - spoken.size + 1))
    peak = float(np.max(np.abs(wave))) or 1.0
    wave[start : start + spoken.size] += peak * spoken
    wave *= peak / (float(np.max(np.abs(wave))) + 1e-9)
    return layers


def draw_frame(image: float, rng: np.random.Generator) -> np.ndarray:
    """One (IMAGE_SIZE, IMAGE_SIZE, 3) uint8 frame: a noisy gray field with a bright disc of
    radius 3 + 17 x image pixels near the centre."""
    size = IMAGE_SIZE
    frame = rng.normal(90, 12, size=(size, size)).clip(0, 255)
    centre = size / 2 + rng.uniform(-3, 3, size=2)
    y, x = np.mgrid[0:size, 0:size]
    disc = (y - centre[0]) ** 2 + (x - centre[1]) ** 2 <= (3 + 17 * image) ** 2
    frame[disc] = 230
    return np.repeat(frame.astype(np.uint8)[..., None], 3, axis=2)


def random_layers(rng: np.random.Generator) -> Layers:
    return Layers(str(rng.choice(list(WORDS))), float(rng.uniform(0, 1)))
