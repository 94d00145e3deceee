"""Shared fixtures: a tiny VAD-layout model saved to disk and a small synthetic dataset."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from emi_features.audio.backbones import VadWav2Vec2, default_feature_extractor, tiny_config
from emi_features.sample.generate import generate_sample

# One thread in the test process: the in-process tests' tiny models gain nothing from more, and
# on a busy 2-core machine oversubscribed threads slowed them 26-fold. Subprocesses (torchrun,
# kill -9, the demo) choose their own.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The VAD architecture from a tiny config, random weights, saved with save_pretrained."""
    directory = tmp_path_factory.mktemp("tiny-vad")
    torch.manual_seed(1)
    VadWav2Vec2(tiny_config()).save_pretrained(directory)
    default_feature_extractor().save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def sample_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The challenge layout: 8 train, 5 valid (one 40 s), 3 test clips, one of 0.064 s."""
    return generate_sample(
        tmp_path_factory.mktemp("sample"), train=8, valid=5, test=3, seed=3, long_seconds=40.0
    )


def extract_args(folder: Path, model_dir: Path, out: Path, *, seconds: str = "2") -> list[str]:
    """`emi-extract` as a module (runnable by python or torchrun), in small batches and parts
    so that a run commits many parts."""
    return [
        "-m",
        "emi_features",
        str(folder),
        "--model",
        str(model_dir),
        "--out",
        str(out),
        "--device",
        "cpu",
        "--batch-seconds",
        seconds,
        "--part-seconds",
        seconds,
        "--workers",
        "1",
        "--quiet",
    ]


def write_wav_folder(folder: Path, count: int, low: float, high: float) -> Path:
    """`count` random-tone wavs named 00000.wav..., lengths uniform in [low, high] seconds."""
    folder.mkdir()
    rng = np.random.default_rng(0)
    for k in range(count):
        write_wav(folder / f"{k:05d}.wav", float(rng.uniform(low, high)), seed=k)
    return folder


def write_wav(
    path: Path, seconds: float, rate: int = 16_000, channels: int = 1, seed: int = 0
) -> np.ndarray:
    """A random-tone wav; returns the samples written, (N, channels) float32."""
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    t = np.arange(n) / rate
    data = np.stack(
        [
            0.3 * np.sin(2 * np.pi * rng.uniform(150, 600) * t) + 0.05 * rng.standard_normal(n)
            for _ in range(channels)
        ],
        axis=1,
    ).astype(np.float32)
    soundfile.write(path, data, rate, subtype="FLOAT")
    return data


def write_synthetic_cache(
    path: Path,
    ids: list[str],
    latents: np.ndarray,
    *,
    dim: int = 16,
    with_vad: bool = True,
    fingerprint: str = "synthetic-a",
    seed: int = 0,
    skipped: dict[str, str] | None = None,
) -> Path:
    """A cache written through the real writer whose frames carry `latents` (N, 6): each frame
    is noise plus latents @ P, so every head can learn the labels that latents define."""
    from emi_features.cache.schema import ClipFeatures
    from emi_features.cache.writer import CacheWriter

    rng = np.random.default_rng(seed)
    projection = np.random.default_rng(99).standard_normal((latents.shape[1], dim))
    attrs = {"backbone": "synthetic", "backbone_fingerprint": fingerprint, "hidden_size": dim}
    writer = CacheWriter(path, attrs, overwrite=True)
    clips = []
    for clip_id, latent in zip(ids, latents, strict=True):
        length = int(rng.integers(5, 60))
        frames = (rng.standard_normal((length, dim)) + latent @ projection).astype(np.float32)
        frame_vad = np.tile(latent[:3], (length, 1)).astype(np.float32) if with_vad else None
        clips.append(
            ClipFeatures(
                clip_id,
                frames,
                frame_vad,
                frames.mean(axis=0),
                latent[:3].astype(np.float32) if with_vad else None,
                length * 320 + 80,
            )
        )
    writer.write_part(clips, skipped or {})
    writer.finish()
    return path


def write_labels(path: Path, ids: list[str], values: np.ndarray) -> Path:
    from emi_features.core.task import EMOTIONS

    lines = ["Filename," + ",".join(EMOTIONS)]
    lines += [
        f"{int(i)}," + ",".join(f"{v:.4f}" for v in row) for i, row in zip(ids, values, strict=True)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="session")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A learnable task: 240 train, 120 valid clips; labels a quantised function of latents."""
    root = tmp_path_factory.mktemp("synthetic")
    rng = np.random.default_rng(7)
    ids = [f"{i:05d}" for i in range(360)]
    latents = rng.uniform(0, 1, size=(360, 6))
    labels = np.round(np.clip((latents - 0.3) / 0.7, 0, 1) * 8) / 8
    write_synthetic_cache(root / "cache.h5", ids, latents)
    shuffled = labels[:240][np.random.default_rng(1).permutation(240)]
    return {
        "cache": root / "cache.h5",
        "train": write_labels(root / "train.csv", ids[:240], labels[:240]),
        "valid": write_labels(root / "valid.csv", ids[240:], labels[240:]),
        "shuffled": write_labels(root / "shuffled.csv", ids[:240], shuffled),
        "root": root,
    }


def run_extract_cli(*args: object, ok: bool = True):
    """`emi extract ARGS` in-process; asserts success unless `ok` is False."""
    from click.testing import CliRunner

    from emi_features.cli.extract import main as extract_command

    result = CliRunner().invoke(extract_command, [str(a) for a in args])
    if ok:
        assert result.exit_code == 0, result.output
    return result


@pytest.fixture
def small_disk(tmp_path):
    """A real 400 KiB file system (tmpfs), or None where this machine does not allow mounting."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=400k", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        yield None
        return
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)
