"""Settings that name what is not there, or that the chosen path would ignore: each refused in
one line before any work (`emi train`, `emi extract`), never a traceback, never dropped."""

from __future__ import annotations

import numpy as np
import pytest
import soxr
from click.testing import CliRunner
from conftest import run_extract_cli, write_labels, write_synthetic_cache, write_wav

from emi_features.cli.extract import add_features_command
from emi_heads.cli.train import train_command


@pytest.fixture(scope="module")
def streams(tmp_path_factory):
    """A synthetic cache with a clip stream `cl` and a frame stream `fr`, and its labels."""
    root = tmp_path_factory.mktemp("options")
    rng = np.random.default_rng(7)
    ids = [f"{i:05d}" for i in range(60)]
    latents = rng.uniform(0, 1, (60, 6))
    cache = write_synthetic_cache(root / "c.h5", ids, latents)
    np.savez(root / "clip.npz", **{i: rng.standard_normal(4) for i in ids})
    np.savez(root / "frames.npz", **{i: rng.standard_normal((5, 4)) for i in ids})
    runner = CliRunner()
    for name, source, extra in (
        ("cl", "clip.npz", []),
        ("fr", "frames.npz", ["--frame-rate", "5"]),
    ):
        result = runner.invoke(
            add_features_command,
            [str(cache), "--stream", name, "--from", str(root / source), *extra],
        )
        assert result.exit_code == 0, result.output
    train = write_labels(root / "t.csv", ids[:40], latents[:40])
    valid = write_labels(root / "v.csv", ids[40:], latents[40:])
    return {"cache": cache, "root": root, "labels": ["--train", str(train), "--valid", str(valid)]}


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (
            [
                "--head",
                "concat-frames",
                "--inputs",
                "frames,features/fr",
                "--triplet-weight",
                "0.1",
                "--triplet-stream",
                "features/nope",
            ],
            1,
            "--triplet-stream: features/nope not in the "
            "cache (it has mean, vad, frame_stats, frame_vad_stats, frames, features/cl, "
            "features/fr)",
        ),
        (
            [
                "--head",
                "streams-lstm",
                "--inputs",
                "frames,features/cl",
                "--stream-hidden",
                "features/cl=8",
            ],
            1,
            "--stream-hidden: features/cl is not one of the frame streams the head reads (frames)",
        ),
        (
            ["--head", "streams-lstm", "--stream-hidden", "frames=-1"],
            2,
            "stream_hidden: 'frames=-1' is not NAME=VALUE with a whole width >= 0",
        ),
        (
            ["--head", "streams-lstm", "--stream-max-seconds", "features/fr=0"],
            2,
            "stream_max_seconds: 'features/fr=0' is not NAME=VALUE with seconds > 0",
        ),
        (
            ["--head", "concat-frames", "--inputs", "seq/features/fr"],
            1,
            "--inputs: seq/features/fr: name the stream as features/fr",
        ),
        (
            ["--head", "concat-frames", "--triplet-weight", "inf"],
            2,
            "triplet_weight and triplet_margin must be finite",
        ),
        (
            ["--head", "concat-frames", "--stream-aux-weights", "frames=2"],
            2,
            "the shares of aux_weight add up to 2, more than 1",
        ),
        (
            [
                "--head",
                "concat-frames",
                "--inputs",
                "frames",
                "--stream-aux-weights",
                "features/cl=0.5",
            ],
            1,
            "features/cl is not one of the fused streams (frames)",
        ),
        (["--head", "concat", "--layer-weights"], 1, "--layer-weights: the head reads no stream"),
        (["--head", "concat-frames", "--encoder-lr-scale", "0.5"], 2, "give unimodal_epochs too"),
    ],
)
def test_a_head_setting_naming_what_is_not_there_is_one_line(streams, tmp_path, args, code, words):
    result = CliRunner().invoke(
        train_command,
        [
            str(streams["cache"]),
            *streams["labels"],
            *args,
            "--epochs",
            "1",
            "--out",
            str(tmp_path / "run"),
            "--quiet",
        ],
    )
    assert result.exit_code == code, result.output
    assert words in result.output and "Traceback" not in result.output, result.output
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--modality", "egemaps", "--model", "x/y"], "--model: --modality egemaps reads no model"),
        (
            ["--modality", "vision", "--runtime", "onnxruntime"],
            "--runtime: the compiled path runs the audio backbones",
        ),
        (
            ["--layers", "all", "--pool", "stats", "--precision", "int8"],
            "--precision: the compiled path runs the audio backbones",
        ),
        (
            ["--modality", "egemaps", "--level", "functionals", "--pool", "mean"],
            "--pool: the functionals are one vector per clip already",
        ),
    ],
)
def test_an_extraction_option_the_modality_ignores_is_refused(tmp_path, args, words):
    folder = tmp_path / "clips"
    folder.mkdir()
    write_wav(folder / "00001.wav", 1.0)
    result = run_extract_cli(folder, "--out", tmp_path / "c.h5", "--stream", "s", *args, ok=False)
    assert result.exit_code == 2 and words in result.output, result.output
    assert not (tmp_path / "c.h5").exists()


def test_long_files_are_resampled_a_chunk_at_a_time_to_the_same_samples(tmp_path):
    """The streamed decode gives the samples of decoding whole and resampling once."""
    from emi_features.audio.decode import BLOCK_SAMPLES, load_audio

    path = tmp_path / "stereo.wav"
    written = write_wav(path, 3 * BLOCK_SAMPLES / 44_100 + 0.37, rate=44_100, channels=2)
    mono = written.T.mean(axis=0, dtype=np.float64).astype(np.float32)
    whole = soxr.resample(mono, 44_100, 16_000, quality="HQ")
    np.testing.assert_array_equal(load_audio(path), whole)
