"""Decoding: formats, rates, channels, and the one-line reasons for bad files."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile
import soxr
from conftest import write_wav

from emi_features.audio.decode import SAMPLE_RATE, DecodeError, load_audio, probe_seconds
from emi_features.sample.generate import write_mp4


def test_wav_at_44k_stereo_is_downmixed_and_resampled(tmp_path):
    data = write_wav(tmp_path / "a.wav", 1.5, rate=44_100, channels=2)
    samples = load_audio(tmp_path / "a.wav")
    expected = soxr.resample(data.mean(axis=1), 44_100, SAMPLE_RATE, quality="HQ")
    assert samples.dtype == np.float32 and samples.shape == (24_000,)
    np.testing.assert_allclose(samples, expected, atol=1e-5)


def test_mp3_and_mp4_decode_to_the_same_sound(tmp_path):
    rate = 48_000
    t = np.arange(2 * rate) / rate
    wave = (0.4 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    soundfile.write(tmp_path / "a.mp3", wave, rate, format="MP3")
    write_mp4(tmp_path / "a.mp4", wave, rate)
    reference = soxr.resample(wave, rate, SAMPLE_RATE)
    for name in ("a.mp3", "a.mp4"):
        samples = load_audio(tmp_path / name)
        # lossy codecs add a little delay and padding; the tone must be there at the right pitch
        assert abs(samples.size - reference.size) < 0.1 * SAMPLE_RATE, name
        spectrum = np.abs(np.fft.rfft(samples))
        peak_hz = np.argmax(spectrum) * SAMPLE_RATE / samples.size
        assert abs(peak_hz - 220) < 2, (name, peak_hz)
        assert 0.2 < np.abs(samples).max() < 0.6, name
    assert probe_seconds(tmp_path / "a.mp4") == pytest.approx(2.0, abs=0.1)
    assert probe_seconds(tmp_path / "a.mp3") == pytest.approx(2.0, abs=0.1)


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda p: None, "missing file"),
        (lambda p: p.write_bytes(b""), "empty file"),
        (lambda p: p.write_bytes(b"this is not audio at all" * 50), "cannot decode"),
        (
            lambda p: soundfile.write(
                p, np.array([0.1, np.nan, 0.2] * 300, np.float32), SAMPLE_RATE, subtype="FLOAT"
            ),
            "non-finite samples",
        ),
    ],
)
def test_bad_files_raise_one_line_reasons(tmp_path, make, reason):
    path = tmp_path / "bad.wav"
    make(path)
    with pytest.raises(DecodeError, match=reason) as caught:
        load_audio(path)
    assert "\n" not in str(caught.value)


def test_video_without_audio_track_is_named(tmp_path):
    import av

    with av.open(str(tmp_path / "silent.mp4"), "w") as container:
        stream = container.add_stream("mpeg4", rate=2)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        frame = av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    with pytest.raises(DecodeError, match="no audio track"):
        load_audio(tmp_path / "silent.mp4")
