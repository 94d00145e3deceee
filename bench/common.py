"""Shared pieces of the benchmarks: the full-size backbone, clip sets, FLOP counts, the
machine's measured matmul rate, and printing/saving results.

Run each benchmark from the repository root, e.g. `python bench/extraction.py`; each prints a
table and writes `bench/results/<name>.json`.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import soundfile
import torch

from emi_features.audio.backbones import VadWav2Vec2, default_feature_extractor
from emi_features.audio.decode import SAMPLE_RATE
from emi_features.extraction.frames import frame_count

RESULTS = Path(__file__).resolve().parent / "results"
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def quiet_transformers() -> None:
    import transformers

    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()


def full_size_config():
    """wav2vec2-large-robust pruned to 12 layers, as audeering's VAD model (random weights)."""
    from transformers import Wav2Vec2Config

    return Wav2Vec2Config(
        hidden_size=1024,
        num_hidden_layers=12,
        num_attention_heads=16,
        intermediate_size=4096,
        conv_dim=(512,) * 7,
        num_conv_pos_embeddings=128,
        num_conv_pos_embedding_groups=16,
        feat_extract_norm="layer",
        do_stable_layer_norm=True,
        num_labels=3,
        architectures=["Wav2Vec2ForSpeechClassification"],
    )


def save_full_size_model(directory: Path) -> Path:
    """Random full-size VAD model saved in the Hugging Face layout (timing needs no weights)."""
    quiet_transformers()
    if not (directory / "config.json").is_file():
        torch.manual_seed(0)
        VadWav2Vec2(full_size_config()).save_pretrained(directory)
        default_feature_extractor().save_pretrained(directory)
    return directory


def flops_per_clip(config, num_samples: int) -> float:
    """Forward FLOPs (2 per multiply-add) of the backbone plus VAD head for one clip."""
    flops, length, channels = 0.0, num_samples, 1
    for kernel, stride, out in zip(
        config.conv_kernel, config.conv_stride, config.conv_dim, strict=True
    ):
        length = (length - kernel) // stride + 1
        flops += 2.0 * length * kernel * channels * out
        channels = out
    frames, hidden = frame_count(num_samples), config.hidden_size
    flops += 2.0 * frames * channels * hidden  # feature projection
    groups, kernel = config.num_conv_pos_embedding_groups, config.num_conv_pos_embeddings
    flops += 2.0 * frames * kernel * hidden * hidden / groups  # positional convolution
    per_layer = 2.0 * frames * (4 * hidden * hidden + 2 * hidden * config.intermediate_size)
    per_layer += 2.0 * 2 * frames * frames * hidden  # attention scores and weighted sum
    flops += config.num_hidden_layers * per_layer
    flops += 2.0 * frames * (hidden * hidden + 3 * hidden)  # the VAD head on every frame
    return flops


def matmul_rate(
    device: torch.device, dtype: torch.dtype, size: int = 2048, seconds: float = 2.0
) -> float:
    """Measured dense matmul FLOP/s on this device and dtype."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        a @ b
        count += 1
    sync()
    return 2.0 * size**3 * count / (time.perf_counter() - started)


def dataset_lengths(total_seconds: float, seed: int = 0) -> list[float]:
    """Clip lengths like the challenge's: lognormal, mean about 7 s, a long tail to 30 s."""
    rng = np.random.default_rng(seed)
    lengths: list[float] = []
    while sum(lengths) < total_seconds:
        lengths.append(float(np.clip(rng.lognormal(np.log(6.0), 0.55), 0.5, 30.0)))
    return lengths


def write_clips(folder: Path, lengths: list[float], seed: int = 0) -> Path:
    """Noisy harmonic clips as 16 kHz wav files, one per length."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for k, seconds in enumerate(lengths):
        n = int(seconds * SAMPLE_RATE)
        t = np.arange(n) / SAMPLE_RATE
        wave = 0.3 * np.sin(2 * np.pi * rng.uniform(100, 300) * t) + 0.05 * rng.standard_normal(n)
        soundfile.write(folder / f"{k:05d}.wav", wave.astype(np.float32), SAMPLE_RATE)
    return folder


def machine() -> dict:
    info = {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def report(name: str, rows: list[dict], extra: dict | None = None) -> None:
    """Print rows as a table and write bench/results/NAME.json."""
    columns = list(dict.fromkeys(k for row in rows for k in row))
    widths = {c: max(len(c), *(len(_fmt(r.get(c))) for r in rows)) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns))
    for row in rows:
        print("  ".join(_fmt(row.get(c)).ljust(widths[c]) for c in columns))
    RESULTS.mkdir(exist_ok=True)
    payload = {"benchmark": name, "machine": machine(), "rows": rows, **(extra or {})}
    (RESULTS / f"{name}.json").write_text(json.dumps(payload, indent=2) + "\n")
    print(f"-> {RESULTS / f'{name}.json'}")


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)
