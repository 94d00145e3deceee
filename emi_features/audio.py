"""Decoding: any audio file or video's audio track to 16 kHz mono float32.

Audio files go through soundfile (libsndfile: wav, flac, ogg, mp3); video containers and m4a go
through PyAV (FFmpeg). Both paths downmix by averaging channels and resample with soxr.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile
import soxr

from emi_features.dataset import AUDIO_SUFFIXES
from emi_features.schema import SAMPLE_RATE

__all__ = ["SAMPLE_RATE", "DecodeError", "load_audio", "probe_seconds", "to_mono_16k"]


class DecodeError(Exception):
    """A clip that cannot be used; the message is the one-line reason recorded in `/skipped`."""


def _read_soundfile(path: Path) -> tuple[np.ndarray, int]:
    data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    return data.T, rate  # (channels, samples)


def _read_av(path: Path) -> tuple[np.ndarray, int]:
    import av  # imported here: only video inputs need FFmpeg

    with av.open(str(path)) as container:
        stream = next((s for s in container.streams if s.type == "audio"), None)
        if stream is None:
            raise DecodeError("no audio track")
        # Convert the sample format only; channels are averaged and the rate resampled below,
        # exactly as for audio files, so both paths share one downmix and one resampler.
        resampler = av.AudioResampler(format="fltp")
        chunks: list[np.ndarray] = []
        rate = stream.rate
        for frame in container.decode(stream):
            rate = frame.sample_rate
            chunks.extend(out.to_ndarray() for out in resampler.resample(frame))
        chunks.extend(out.to_ndarray() for out in resampler.resample(None))
    if not chunks:
        return np.zeros((1, 0), dtype=np.float32), rate or SAMPLE_RATE
    return np.concatenate(chunks, axis=1).astype(np.float32, copy=False), rate


def to_mono_16k(channels: np.ndarray, rate: int) -> np.ndarray:
    """(C, N) samples at `rate` -> (M,) float32 mono at 16 kHz (channel average, soxr HQ)."""
    mono = channels.mean(axis=0, dtype=np.float64) if channels.shape[0] > 1 else channels[0]
    mono = np.ascontiguousarray(mono, dtype=np.float32)
    if rate != SAMPLE_RATE and mono.size:
        mono = soxr.resample(mono, rate, SAMPLE_RATE, quality="HQ").astype(np.float32, copy=False)
    return mono


def load_audio(path: Path | None) -> np.ndarray:
    """Decode one clip to (N,) float32 mono at 16 kHz.

    Raises DecodeError with a one-line reason for a missing, empty, undecodable or non-finite
    file.
    """
    if path is None:
        raise DecodeError("no media file for this id")
    path = Path(path)
    if not path.is_file():
        raise DecodeError(f"missing file {path}")
    if path.stat().st_size == 0:
        raise DecodeError(f"empty file {path.name}")
    readers = (
        [_read_av] if path.suffix.lower() not in AUDIO_SUFFIXES else [_read_soundfile, _read_av]
    )
    for reader in readers:  # libsndfile first for audio files, FFmpeg for the rest or as fallback
        try:
            channels, rate = reader(path)
            break
        except DecodeError:
            raise
        except Exception as error:  # every codec library has its own exception types
            text = str(error).strip()
            reason = text.splitlines()[0] if text else type(error).__name__
            failure = DecodeError(f"cannot decode {path.name}: {reason}")
            failure.__cause__ = error
    else:
        raise failure
    samples = to_mono_16k(channels, rate)
    if samples.size == 0:
        raise DecodeError(f"no samples in {path.name}")
    if not np.isfinite(samples).all():
        raise DecodeError(f"non-finite samples in {path.name}")
    return samples


def probe_seconds(path: Path | None) -> float:
    """Duration in seconds from the file's header, without decoding; 0.0 when unknown.

    Used only to plan batches by length; the decoded length is what gets recorded.
    """
    if path is None or not Path(path).is_file():
        return 0.0
    try:
        if Path(path).suffix.lower() in AUDIO_SUFFIXES:
            info = soundfile.info(str(path))
            return float(info.frames) / float(info.samplerate)
        import av

        with av.open(str(path)) as container:
            stream = next((s for s in container.streams if s.type == "audio"), None)
            if stream is not None and stream.duration is not None and stream.time_base:
                return float(stream.duration * stream.time_base)
            return float(container.duration or 0) / 1e6
    except Exception:  # an unreadable header: the decoder will give the real reason later
        return 0.0
