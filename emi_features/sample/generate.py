"""A synthetic dataset in the exact challenge layout, with labels that are audible.

Each clip is a buzzy "voice": a harmonic tone with a pitch, a syllable rate (amplitude bursts),
a brightness (how slowly the harmonics fall off) and a breathiness (noise mixed in), at a random
loudness that carries no label (the feature extractor normalises it away). The six intensities
are fixed functions of those four properties, each in [0, 1] (see `intensities`), cut at 0.4 and
quantised to k/N like annotator fractions, so many are exactly zero.

With `layers` (the default) two labels move to the other modalities (`sample_layers`): each clip
also says a word whose score is its Admiration, and its video shows a disc whose size is its Joy;
`transcripts.csv` holds the words. Without, all six come from the voice.

The sample shows that the pipeline learns audible properties end to end; it says nothing about
emotions or about how well a head does on the real data.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import click
import numpy as np
import soundfile
import soxr
from tqdm import tqdm

from emi_features.audio.decode import SAMPLE_RATE
from emi_features.core.logs import setup_logging
from emi_features.core.options import logging_options
from emi_features.core.task import EMOTIONS, ID_COLUMN, ID_WIDTH
from emi_features.sample.layers import Layers, SampleError, draw_frame, mix_word, random_layers

VIDEO_RATE = 44_100  # the AAC track of raw/*.mp4 is stereo at another rate than 16 kHz
LABEL_THRESHOLD = 0.4
TRANSCRIPTS = "transcripts.csv"  # what each clip says (with layers)


@dataclass(frozen=True)
class Voice:
    """The audible properties of one clip, each in [0, 1], and its length in seconds."""

    pitch: float  # 0 -> 100 Hz, 1 -> 320 Hz (log scale)
    rate: float  # 0 -> 2 syllables/s, 1 -> 7 syllables/s
    brightness: float  # 0 -> harmonics fall as k^-3, 1 -> as k^-1
    breathiness: float  # 0 -> pure tone, 1 -> noise at 0.8 of the tone's level
    seconds: float


def intensities(voice: Voice, layers: Layers | None = None) -> np.ndarray:
    """The label function before quantisation: (6,) in [0, 1], in the order of EMOTIONS. With
    `layers`, Admiration is the spoken word's score and Joy the image's disc size."""
    raw = np.array(
        [
            voice.brightness if layers is None else layers.word_score,  # Admiration
            voice.rate,  # Amusement
            1.0 - voice.pitch,  # Determination
            voice.breathiness,  # Empathic Pain
            (voice.pitch + voice.rate) / 2,  # Excitement
            (voice.pitch + voice.brightness) / 2 if layers is None else layers.image,  # Joy
        ]
    )
    return np.clip((raw - LABEL_THRESHOLD) / (1 - LABEL_THRESHOLD), 0.0, 1.0)


def quantise(values: np.ndarray, annotators: int) -> np.ndarray:
    """Round to fractions k/annotators, as the challenge's labels are."""
    return np.round(values * annotators) / annotators


def render(
    voice: Voice, rng: np.random.Generator, rate: int, end: Voice | None = None
) -> np.ndarray:
    """The clip's waveform (N,) float32 at `rate`, peak at a random loudness. With `end`, pitch
    and breathiness glide linearly from `voice`'s to `end`'s over the clip (a sound whose
    change over time, not its average, carries a label)."""
    n = max(1, int(round(voice.seconds * rate)))
    t = np.arange(n) / rate
    end = end or voice
    glide = np.linspace(0.0, 1.0, n)
    pitch = voice.pitch + (end.pitch - voice.pitch) * glide
    breathiness = voice.breathiness + (end.breathiness - voice.breathiness) * glide
    f0 = 100.0 * (3.2**pitch) * (1 + 0.01 * np.sin(2 * np.pi * 5.0 * t))  # slight vibrato
    phase = 2 * np.pi * np.cumsum(f0) / rate
    tilt = 3.0 - 2.0 * voice.brightness
    harmonics = range(1, int(min(7000 / (100 * 3.2 ** max(voice.pitch, end.pitch)), 40)) + 1)
    tone = sum(k**-tilt * np.sin(k * phase + rng.uniform(0, 2 * np.pi)) for k in harmonics)
    tone /= np.max(np.abs(tone)) + 1e-9
    noise = rng.standard_normal(n)
    noise /= np.max(np.abs(noise)) + 1e-9
    syllables = 2.0 + 5.0 * voice.rate
    envelope = np.clip(np.sin(np.pi * syllables * t + rng.uniform(0, np.pi)), 0, None) ** 0.7
    wave = envelope * (tone + 0.8 * breathiness * noise)
    wave /= np.max(np.abs(wave)) + 1e-9
    return (wave * rng.uniform(0.05, 0.8)).astype(np.float32)


def _lengths(count: int, rng: np.random.Generator) -> np.ndarray:
    return np.clip(rng.lognormal(mean=np.log(2.2), sigma=0.45, size=count), 0.3, 8.0)


def write_mp4(
    path: Path, wave: np.ndarray, rate: int, frames: list[np.ndarray] | None = None
) -> None:
    """A video track at 2 frames/s (`frames`, or gray levels) plus a stereo AAC track at
    `rate`, like the challenge's raw/*.mp4."""
    import av

    stereo = np.stack([wave, wave * 0.9]).astype(np.float32)
    with av.open(str(path), "w") as container:
        video = container.add_stream("mpeg4", rate=2)
        count = max(1, int(stereo.shape[1] / rate * 2))
        if frames is None:
            frames = [np.full((32, 32, 3), (k * 40) % 255, dtype=np.uint8) for k in range(count)]
        video.height, video.width = frames[0].shape[:2]
        video.pix_fmt = "yuv420p"
        audio = container.add_stream("aac", rate=rate, layout="stereo")
        audio.bit_rate = 24_000
        for index in range(count):
            frame = av.VideoFrame.from_ndarray(frames[index % len(frames)], format="rgb24")
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        chunk = 1024
        for start in range(0, stereo.shape[1], chunk):
            block = np.ascontiguousarray(stereo[:, start : start + chunk])
            frame = av.AudioFrame.from_ndarray(block, format="fltp", layout="stereo")
            frame.sample_rate = rate
            container.mux(audio.encode(frame))
        container.mux(audio.encode(None))


def generate_sample(
    root: str | Path,
    *,
    train: int = 120,
    valid: int = 60,
    test: int = 60,
    seed: int = 0,
    long_seconds: float = 70.0,
    layers: bool = True,
    progress: bool = False,
) -> Path:
    """Write the dataset under `root`: raw/*.mp4 for every clip, audio/*.mp3 (16 kHz mono) for
    train and valid, {train,valid,test}_split.csv (test without labels, as shipped), and with
    `layers` transcripts.csv (Filename, text, language) of every clip. `progress`: a bar over
    the clips with an ETA.

    One train clip lasts 0.064 s (the real data's shortest) and one valid clip `long_seconds`.
    """
    root = Path(root)
    (root / "raw").mkdir(parents=True, exist_ok=True)
    (root / "audio").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    layer_rng = np.random.default_rng([seed, 1])  # the voices stay those of an audio-only sample
    transcripts: list[list[str]] = []
    splits = {"train": train, "valid": valid, "test": test}
    bar = tqdm(
        total=train + valid + test, desc="sample clips", unit="clip", disable=not progress or None
    )
    next_id = 0
    with bar:
        for split, count in splits.items():
            lengths = _lengths(count, rng)
            if split == "train" and count:
                lengths[0] = 0.064
            if split == "valid" and count and long_seconds:
                lengths[-1] = long_seconds
            rows = []
            for seconds in lengths:
                clip_id = str(next_id).zfill(ID_WIDTH)
                next_id += 1
                labels, said = _write_clip(
                    root, clip_id, float(seconds), split, rng, layer_rng if layers else None
                )
                if said is not None:
                    transcripts.append([clip_id, said.word, "en"])
                rows.append([clip_id, *(f"{v:.4f}" for v in labels)])
                bar.update()
            _write_split(root / f"{split}_split.csv", rows, labelled=split != "test")
    if layers:
        with (root / TRANSCRIPTS).open("w", newline="") as handle:
            csv.writer(handle).writerows([[ID_COLUMN, "text", "language"], *transcripts])
    return root


def _write_clip(root: Path, clip_id: str, seconds: float, split: str, rng, layer_rng):
    """One clip's video (and, outside test, its 16 kHz mp3); returns its labels (6,) and what
    it says and shows (None without layers)."""
    voice = Voice(*rng.uniform(0, 1, size=4), seconds=seconds)
    annotators = int(rng.integers(5, 11))
    wave = render(voice, rng, VIDEO_RATE)
    frames, said = None, None
    if layer_rng is not None:
        said = mix_word(wave, random_layers(layer_rng), layer_rng, VIDEO_RATE)
        frames = [draw_frame(said.image, layer_rng) for _ in range(4)]
    labels = quantise(intensities(voice, said), annotators=annotators)
    write_mp4(root / "raw" / f"{clip_id}.mp4", wave, VIDEO_RATE, frames)
    if split != "test":  # the same sound, as the organisers' 16 kHz mono mp3
        soundfile.write(
            root / "audio" / f"{clip_id}.mp3",
            soxr.resample(wave, VIDEO_RATE, SAMPLE_RATE),
            SAMPLE_RATE,
            format="MP3",
        )
    return labels, said


def _write_split(path: Path, rows: list[list[str]], labelled: bool) -> None:
    """A split CSV as shipped: Filename and the six labels, or Filename alone (test)."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        if labelled:
            writer.writerow([ID_COLUMN, *EMOTIONS])
            writer.writerows(rows)
        else:
            writer.writerow([ID_COLUMN])
            writer.writerows([row[:1] for row in rows])


@click.command(context_settings={"show_default": True})
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--train", type=int, default=120, help="Train clips.")
@click.option("--valid", type=int, default=60, help="Valid clips.")
@click.option("--test", type=int, default=60, help="Test clips (videos only, no labels).")
@click.option("--seed", type=int, default=0)
@click.option("--long-seconds", type=float, default=70.0, help="Length of the one long clip.")
@click.option(
    "--layers/--no-layers",
    default=True,
    help="A spoken word (espeak-ng) and a video image that each carry a label, and "
    "transcripts.csv; without, all labels come from the voice.",
)
@logging_options
def main(out: str, quiet: bool, verbose: bool, **options: int) -> None:
    """Write a synthetic dataset in the challenge layout to OUT (see emi_features.sample)."""
    setup_logging(verbose)
    try:
        root = generate_sample(out, progress=not quiet, **options)
    except SampleError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"wrote a synthetic sample in {root}", err=True)
