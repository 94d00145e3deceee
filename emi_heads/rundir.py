"""A run directory: everything needed to rebuild a head and to see how it trained.

weights.safetensors, config.json (head and training config, label names, the cache's backbone
fingerprint, the training label mean), metrics.json, log.csv, valid_predictions.csv and plots.
Every file is written aside and renamed, so a killed run leaves its best weights readable.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from emi_features.atomic import atomic_path
from emi_features.dataset import EMOTIONS
from emi_heads.config import HeadConfig
from emi_heads.heads import build_head

WEIGHTS = "weights.safetensors"
CONFIG = "config.json"
METRICS = "metrics.json"
LOG = "log.csv"


class RunError(ValueError):
    """A run directory that cannot be used; one line for the user."""


def write_atomically(path: Path, write: Any) -> None:
    """write(temporary_path), then rename over `path` (see `emi_features.atomic`)."""
    with atomic_path(path) as temporary:
        write(temporary)


def save_json(path: Path, data: dict) -> None:
    write_atomically(path, lambda p: p.write_text(json.dumps(data, indent=2, default=float) + "\n"))


def save_weights(run_dir: Path, model: nn.Module) -> None:
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    write_atomically(run_dir / WEIGHTS, lambda p: save_file(state, str(p)))


def save_predictions(
    path: Path,
    ids: list[str],
    predictions: np.ndarray,
    header: tuple[str, ...] = ("Filename", *EMOTIONS),
) -> None:
    """A CSV of ids and six values (also the submission format), written atomically."""

    def write(temporary: Path) -> None:
        with temporary.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            for clip_id, row in zip(ids, predictions, strict=True):
                writer.writerow([clip_id, *(f"{float(v):.6f}" for v in row)])

    write_atomically(path, write)


class EpochLog:
    """log.csv, one row per epoch, flushed as it goes."""

    def __init__(self, path: Path, columns: list[str]):
        self.columns = columns
        self.handle = path.open("w", newline="")
        self.writer = csv.DictWriter(self.handle, fieldnames=columns)
        self.writer.writeheader()
        self.rows: list[dict[str, float]] = []

    def add(self, row: dict[str, float]) -> None:
        self.rows.append(row)
        self.writer.writerow({k: row.get(k, "") for k in self.columns})
        self.handle.flush()

    def close(self) -> None:
        self.handle.close()


def load_run(run_dir: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """The head of a run, in eval mode, and its config.json."""
    run_dir = Path(run_dir)
    if not (run_dir / CONFIG).is_file() or not (run_dir / WEIGHTS).is_file():
        raise RunError(f"{run_dir}: not a run directory (no {CONFIG} or {WEIGHTS})")
    config = json.loads((run_dir / CONFIG).read_text())
    if tuple(config.get("labels", ())) != EMOTIONS:
        raise RunError(f"{run_dir}: trained for labels {config.get('labels')}, not {EMOTIONS}")
    model = build_head(HeadConfig.from_dict(config["head"]))
    model.load_state_dict(load_file(str(run_dir / WEIGHTS)))
    return model.eval(), config


@torch.inference_mode()
def predict(
    model: nn.Module, inputs: Any, *, device: torch.device, batch_size: int = 256
) -> np.ndarray:
    """(N, 6) float32 predictions of a head for loaded inputs, in their order."""
    model.to(device).eval()
    outputs = []
    for first in range(0, len(inputs), batch_size):
        index = torch.arange(first, min(first + batch_size, len(inputs)))
        outputs.append(model(inputs.batch(index, device)).prediction.float().cpu())
    if not outputs:
        return np.zeros((0, len(EMOTIONS)), dtype=np.float32)
    return torch.cat(outputs).numpy()
