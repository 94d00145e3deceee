"""Decoding: any audio file or video's audio track to 16 kHz mono float32.

Audio files go through soundfile (libsndfile: wav, flac, ogg, mp3); video containers and m4a go
through PyAV (FFmpeg). Both paths downmix by averaging channels and resample with soxr.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile
import soxr

from emi_features.cache.schema import SAMPLE_RATE
from emi_features.core.dataset import AUDIO_SUFFIXES

__all__ = ["SAMPLE_RATE", "DecodeError", "load_audio", "probe_seconds", "to_mono_16k"]


log = logging.getLogger(__name__)


class DecodeError(Exception):
    """A clip that cannot be used; the message is the one-line reason recorded in `/skipped`."""


_STDERR_LOCK = threading.Lock()  # file descriptor 2 is one per process: one capture at a time


@contextlib.contextmanager
def c_stderr_captured() -> Iterator[list[str]]:
    """Collect what C libraries (libmpg123 inside libsndfile) print straight to file
    descriptor 2 while the block runs; the list holds its non-empty lines afterwards.

    Descriptor 2 is one per process, so captures are serialised; the saved descriptor is taken
    under the lock, never while another thread has 2 redirected."""
    lines: list[str] = []
    with _STDERR_LOCK:
        try:
            saved = os.dup(2)
        except OSError:  # no stderr to redirect
            yield lines
            return
        with tempfile.TemporaryFile() as sink:
            sys.stderr.flush()
            os.dup2(sink.fileno(), 2)
            try:
                yield lines
            finally:
                os.dup2(saved, 2)
                os.close(saved)
                sink.seek(0)
                text = sink.read().decode("utf-8", "replace")
                lines.extend(line.strip() for line in text.splitlines() if line.strip())


class MonoResampler:
    """Chunks of (C, n) samples at one rate -> (N,) float32 mono at 16 kHz, a chunk at a time:
    each chunk's channels averaged (in float64) and resampled by soxr's stream (HQ), which gives
    the one-shot resampler's samples exactly. Memory: the 16 kHz output, not the decoded file."""

    def __init__(self) -> None:
        self.rate: int | None = None
        self._stream: soxr.ResampleStream | None = None
        self._parts: list[np.ndarray] = []

    def add(self, channels: np.ndarray, rate: int) -> None:
        mono = channels.mean(axis=0, dtype=np.float64) if channels.shape[0] > 1 else channels[0]
        mono = np.ascontiguousarray(mono, dtype=np.float32)
        if self.rate is None:
            self.rate = rate
            if rate != SAMPLE_RATE:
                self._stream = soxr.ResampleStream(
                    rate, SAMPLE_RATE, 1, dtype="float32", quality="HQ"
                )
        elif rate != self.rate:
            raise DecodeError(f"the sample rate changes inside the file ({self.rate} -> {rate})")
        self._parts.append(mono if self._stream is None else self._stream.resample_chunk(mono))

    def finish(self) -> np.ndarray:
        if self._stream is not None:
            self._parts.append(self._stream.resample_chunk(np.zeros(0, np.float32), last=True))
        return np.concatenate(self._parts) if self._parts else np.zeros(0, dtype=np.float32)


BLOCK_SAMPLES = 1 << 16  # what libsndfile decodes at a time


def _read_soundfile(path: Path) -> np.ndarray:
    mono = MonoResampler()
    with c_stderr_captured() as noise:
        try:
            rate = soundfile.info(str(path)).samplerate
            for block in soundfile.blocks(
                str(path), blocksize=BLOCK_SAMPLES, dtype="float32", always_2d=True
            ):
                mono.add(block.T, rate)  # (channels, samples)
        except DecodeError:
            raise
        except Exception as error:
            raise RuntimeError(_with_noise(str(error).strip().split(". ")[0], noise)) from error
    if noise:
        log.debug("%s decoded with warnings: %s", path.name, " | ".join(noise[:3]))
    return mono.finish()


def _with_noise(reason: str, noise: list[str]) -> str:
    """The library's error plus its first console line, as one line."""
    if not noise:
        return reason
    first = noise[0].split("] ", 1)[-1]  # drop libmpg123's "[src/libmpg123/id3.c:...]" prefix
    return f"{reason} (decoder: {first})"


def _read_av(path: Path) -> np.ndarray:
    import av  # imported here: only video inputs need FFmpeg

    mono = MonoResampler()
    with av.open(str(path)) as container:
        stream = next((s for s in container.streams if s.type == "audio"), None)
        if stream is None:
            raise DecodeError("no audio track")
        # Convert the sample format only; channels are averaged and the rate resampled by
        # MonoResampler, exactly as for audio files: one downmix and one resampler.
        resampler = av.AudioResampler(format="fltp")
        for frame in container.decode(stream):
            for out in resampler.resample(frame):
                mono.add(out.to_ndarray(), out.sample_rate)
        for out in resampler.resample(None):
            mono.add(out.to_ndarray(), out.sample_rate)
    return mono.finish()


def to_mono_16k(channels: np.ndarray, rate: int) -> np.ndarray:
    """(C, N) samples at `rate` -> (M,) float32 mono at 16 kHz (channel average, soxr HQ)."""
    mono = MonoResampler()
    mono.add(channels, rate)
    return mono.finish()


def load_audio(path: Path | None) -> np.ndarray:
    """Decode one clip to (N,) float32 mono at 16 kHz.

    Raises DecodeError with a one-line reason for a missing, empty, undecodable or non-finite
    file.
    """
    if path is None:
        raise DecodeError("no media file for this id")
    path = Path(path)
    if path.is_symlink() and not path.exists():
        raise DecodeError(f"dangling symlink {path.name} -> {os.readlink(path)}")
    if not path.is_file():
        raise DecodeError(f"missing file {path}")
    if path.stat().st_size == 0:
        raise DecodeError(f"empty file {path.name}")
    readers = (
        [_read_av] if path.suffix.lower() not in AUDIO_SUFFIXES else [_read_soundfile, _read_av]
    )
    for reader in readers:  # libsndfile first for audio files, FFmpeg for the rest or as fallback
        try:
            samples = reader(path)
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
            with c_stderr_captured():
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
