"""The sample generator (layout, label function) and the one-command demo end to end."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from emi_features.audio.decode import load_audio
from emi_features.core.task import EMOTIONS
from emi_features.sample.generate import VIDEO_RATE, Voice, intensities, quantise, render


def test_sample_layout_matches_the_challenge(sample_root):
    train = list(csv.reader((sample_root / "train_split.csv").open()))
    test = list(csv.reader((sample_root / "test_split.csv").open()))
    assert train[0] == ["Filename", *EMOTIONS] and test[0] == ["Filename"]
    train_ids = [row[0] for row in train[1:]]
    test_ids = [row[0] for row in test[1:]]
    assert train_ids == [f"{i:05d}" for i in range(8)] and test_ids == ["00013", "00014", "00015"]
    for clip_id in train_ids + test_ids:
        assert (sample_root / "raw" / f"{clip_id}.mp4").is_file()
    assert all((sample_root / "audio" / f"{i}.mp3").is_file() for i in train_ids)
    assert not any((sample_root / "audio" / f"{i}.mp3").exists() for i in test_ids)
    import av

    with av.open(str(sample_root / "raw" / "00001.mp4")) as container:
        audio = container.streams.audio[0]
        assert audio.rate == VIDEO_RATE and audio.channels == 2 and container.streams.video
    assert load_audio(sample_root / "raw" / "00000.mp4").size < 0.1 * 16_000 * 1.5  # ~0.064 s


def test_labels_are_quantised_fractions_with_many_zeros(sample_root):
    rows = list(csv.DictReader((sample_root / "train_split.csv").open()))
    values = np.array([[float(row[e]) for e in EMOTIONS] for row in rows])
    assert ((values >= 0) & (values <= 1)).all()
    assert (values == 0).mean() > 0.2
    for row in values:  # each clip's values are k/N for one annotator count N in 5..10
        assert any(np.allclose(row * n, np.round(row * n), atol=1e-3) for n in range(5, 11))


def _fundamental_hz(wave: np.ndarray, rate: int) -> float:
    """Autocorrelation pitch between 80 and 400 Hz."""
    segment = wave[: rate // 2] - wave[: rate // 2].mean()
    correlation = np.correlate(segment, segment, mode="full")[segment.size - 1 :]
    lags = np.arange(rate // 400, rate // 80)
    return rate / lags[np.argmax(correlation[lags])]


@pytest.mark.parametrize("pitch", [0.0, 0.5, 1.0])
def test_pitch_label_is_audible(pitch):
    voice = Voice(pitch=pitch, rate=0.0, brightness=0.5, breathiness=0.0, seconds=1.0)
    wave = render(voice, np.random.default_rng(0), 16_000)
    assert _fundamental_hz(wave, 16_000) == pytest.approx(100 * 3.2**pitch, rel=0.05)
    assert intensities(voice)[EMOTIONS.index("Determination")] == pytest.approx(
        np.clip((1 - pitch - 0.4) / 0.6, 0, 1)
    )


def test_loudness_carries_no_label_and_labels_follow_the_stated_function():
    voice = Voice(pitch=0.9, rate=0.8, brightness=0.2, breathiness=0.7, seconds=1.0)
    expected = np.clip((np.array([0.2, 0.8, 0.1, 0.7, 0.85, 0.55]) - 0.4) / 0.6, 0, 1)
    np.testing.assert_allclose(intensities(voice), expected)
    np.testing.assert_allclose(quantise(expected, 5) * 5, np.round(expected * 5))
    quiet = render(voice, np.random.default_rng(1), 16_000)
    loud = render(voice, np.random.default_rng(2), 16_000)
    assert np.abs(quiet).max() != pytest.approx(np.abs(loud).max(), rel=0.05)


@pytest.mark.slow
def test_demo_end_to_end_beats_the_shuffled_control(tmp_path):
    """The README's main job on the bundled sample (as a smoke run, --fast): every head clears
    0.4 mean r on valid, at least 0.3 above the shuffled-label control; the submission passes
    the check; the text stream carries Admiration (the spoken word), the vision stream Joy (the
    image), and all streams fused beat each alone."""
    completed = subprocess.run(
        [sys.executable, "-m", "emi_heads.cli.demo", "--out", str(tmp_path), "--fast"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    bundled = Path(__file__).resolve().parents[1] / "data" / "sample"
    first = completed.stderr.splitlines()[0]
    assert first == f"sample: the bundled {bundled} (made by emi make-sample)", first
    assert not (tmp_path / "sample").exists()  # used where it lies, not generated again
    summary = json.loads((tmp_path / "summary.json").read_text())
    control = summary["valid"]["control"]["mean_r"]
    assert abs(control) < 0.2
    for head in ("ridge", "concat", "lstm"):
        assert summary["valid"][head]["mean_r"] > max(0.4, control + 0.3), summary["valid"]
    assert "valid submission, 60 rows" in completed.stdout + completed.stderr
    assert "control*" in completed.stdout and "submission" in completed.stdout
    streams = summary["streams"]
    assert list(streams) == ["fbank alone", "fb10 alone", "text alone", "vision alone", "all fused"]
    assert streams["text alone"]["Admiration"] > 0.9 and streams["vision alone"]["Joy"] > 0.8
    alone = [v["mean_r"] for k, v in streams.items() if k != "all fused"]
    assert streams["all fused"]["mean_r"] > max(alone) + 0.1, streams
    assert "concat on" in completed.stdout and "all fused" in completed.stdout
    rows = list(csv.reader((tmp_path / "submission.csv").open()))
    assert rows[0] == ["Filename", *EMOTIONS] and len(rows) == 61


def test_the_sample_says_a_word_and_shows_an_image_that_carry_labels(sample_root):
    """Admiration is the score of the word each clip says (transcripts.csv; a clip too short
    to hold it says nothing), Joy the size of the disc its video shows."""
    import av

    from emi_features.sample.layers import WORDS, Layers

    rows = list(csv.DictReader((sample_root / "transcripts.csv").open()))
    labels = {r["Filename"]: r for r in csv.DictReader((sample_root / "train_split.csv").open())}
    assert [r["Filename"] for r in rows] == [f"{i:05d}" for i in range(16)]
    assert rows[0]["text"] == ""  # the 0.064 s clip
    for row in rows:
        assert row["text"] in ("", *WORDS) and row["language"] == "en"
        if row["Filename"] in labels:
            expected = intensities(Voice(0.5, 0.5, 0.5, 0.5, 1.0), Layers(row["text"], 0.0))[0]
            assert float(labels[row["Filename"]]["Admiration"]) == pytest.approx(expected, abs=0.1)
    with av.open(str(sample_root / "raw" / "00003.mp4")) as container:
        frame = next(container.decode(video=0)).to_ndarray(format="rgb24")
    assert frame.shape[:2] == (48, 48) and frame.max() > 200  # the bright disc


def test_without_a_bundled_sample_the_demo_says_it_generates_one(tmp_path, monkeypatch, capsys):
    """An installed package has no data/: the demo says so in its first line and makes the
    same sample in OUT."""
    import emi_features.sample.generate as generate
    from emi_heads.pipelines import demo

    made = []
    monkeypatch.setattr(demo, "BUNDLED_SAMPLE", tmp_path / "not-installed")
    monkeypatch.setattr(generate, "generate_sample", lambda root, **_: made.append(root))
    assert demo._sample(None, tmp_path / "out") == tmp_path / "out" / "sample"
    assert made == [tmp_path / "out" / "sample"]
    first = capsys.readouterr().err.splitlines()[0]
    assert first.startswith("sample: none bundled with this installation (a package has no")
