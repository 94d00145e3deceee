"""A run directory: everything needed to rebuild a head and to see how it trained.

weights.safetensors, config.json (head and training config, label names, the cache's backbone
fingerprint, the training label mean), metrics.json, log.csv, valid_predictions.csv and plots.

A run is written into a staging folder beside its destination (`.NAME.staging-PID`) and moved
into place at its first best weights (`RunWriter.publish`), so the destination holds a whole
run or none: a retrain with `--overwrite` leaves the old run intact until the new one has
weights, and nothing of the old run survives in the new one. Every file is written aside and
renamed. A run received from someone else is checked before anything is built (`load_run`).
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from emi_features.cache.atomic import (
    FILE_MODE,
    WriteError,
    atomic_path,
    describe_os_error,
    process_alive,
)
from emi_features.cache.locks import ExclusiveLock, LockedError
from emi_features.core.task import EMI, Task, TaskError
from emi_features.core.task import run_task as task_of_run
from emi_heads.heads.base import build_head
from emi_heads.heads.settings import ConfigError, HeadConfig
from emi_heads.heads.settings_json import head_from_dict
from emi_heads.training.config import TrainConfig

WEIGHTS = "weights.safetensors"
CONFIG = "config.json"
METRICS = "metrics.json"
LOG = "log.csv"
MAX_PARAMETERS = 500_000_000  # 2 GB of float32: far above any head; an edited config is refused


class RunError(ValueError):
    """A run directory that cannot be used; one line for the user."""


def write_atomically(path: Path, write: Any) -> None:
    """write(temporary_path), then rename over `path` (see `emi_features.cache.atomic`)."""
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
    header: tuple[str, ...] = (EMI.id_column, *EMI.targets),
) -> None:
    """A CSV of ids and six values (also the submission format), written atomically."""

    def write(temporary: Path) -> None:
        with temporary.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            for clip_id, row in zip(ids, predictions, strict=True):
                writer.writerow([clip_id, *(f"{float(v):.6f}" for v in row)])

    write_atomically(path, write)


def holds_run(folder: Path) -> bool:
    return (folder / CONFIG).exists() or (folder / WEIGHTS).exists()


class RunWriter:
    """Where a training run writes: `path` is the staging folder until `publish`, then `final`.

    Holds a lock on `final` (a second training into it is refused, naming the holder). A
    `final` that holds a run is refused unless `overwrite`. Staging and displaced folders left
    by killed runs are cleaned up (a displaced run whose replacement never landed is restored).
    """

    def __init__(self, final: str | Path, *, overwrite: bool = False):
        self.final = Path(final)
        try:
            self.final.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise WriteError(describe_os_error(self.final, error)) from None
        try:
            self._lock = ExclusiveLock(self.final, f"run directory {self.final}").acquire()
        except LockedError as error:
            raise RunError(str(error)) from None
        self._clean_stale()
        if holds_run(self.final) and not overwrite:
            self._lock.release()
            raise RunError(
                f"{self.final} already holds a run; pass --overwrite to replace it (it stays "
                f"intact until the new run has weights) or choose another --out"
            )
        if self.final.exists() and not self.final.is_dir():
            self._lock.release()
            raise RunError(f"{self.final} exists and is not a folder")
        self.path = self._sibling("staging")
        shutil.rmtree(self.path, ignore_errors=True)
        self.path.mkdir()
        self.published = False

    def _sibling(self, kind: str, pid: int | None = None) -> Path:
        return self.final.with_name(f".{self.final.name}.{kind}-{pid or os.getpid()}")

    def _clean_stale(self) -> None:
        for folder in self.final.parent.glob(f".{self.final.name}.*-*"):
            kind, _, pid = folder.name.rsplit(".", 1)[-1].partition("-")
            if not pid.isdigit() or process_alive(int(pid)) or not folder.is_dir():
                continue
            if kind == "old" and not self.final.exists():
                os.replace(folder, self.final)  # killed between the two renames: restore
            else:
                shutil.rmtree(folder, ignore_errors=True)

    def save_weights(self, model: nn.Module) -> None:
        """Save the best weights so far; the first save moves the run into place."""
        save_weights(self.path, model)
        if not self.published:
            self.publish()

    def publish(self) -> None:
        displaced = None
        if self.final.exists():
            displaced = self._sibling("old")
            os.replace(self.final, displaced)
        os.replace(self.path, self.final)
        self.path, self.published = self.final, True
        if displaced is not None:
            shutil.rmtree(displaced, ignore_errors=True)

    def close(self) -> None:
        """Release the lock; an unpublished staging folder (no weights yet) is removed."""
        if not self.published:
            shutil.rmtree(self.path, ignore_errors=True)
        self._lock.release()

    def __enter__(self) -> RunWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EpochLog:
    """log.csv, one row per epoch, flushed as it goes; with `log_to="tensorboard"` the same
    numbers also go to TensorBoard event files in the run's `tensorboard/` folder."""

    def __init__(
        self,
        path: Path,
        columns: list[str],
        log_to: str | None = None,
        run_folder: Any = None,
    ):
        self.columns = columns
        self.handle = path.open("w", newline="")
        os.chmod(path, FILE_MODE)
        self.writer = csv.DictWriter(self.handle, fieldnames=columns)
        self.writer.writeheader()
        self.rows: list[dict[str, float]] = []
        self.log_to = log_to
        # the run's folder now: it moves from staging into place at the first best weights
        self.run_folder = run_folder or (lambda: path.parent)

    def add(self, row: dict[str, float]) -> None:
        self.rows.append(row)
        self.writer.writerow({k: row.get(k, "") for k in self.columns})
        self.handle.flush()
        if self.log_to == "tensorboard":
            from torch.utils.tensorboard import SummaryWriter

            step = int(row.get("epoch", len(self.rows)))
            with SummaryWriter(str(self.run_folder() / "tensorboard")) as board:
                for key, value in row.items():
                    if key != "epoch" and isinstance(value, (int, float)):
                        board.add_scalar(key.replace("r_", "valid_r/", 1), value, step)

    def close(self) -> None:
        self.handle.close()


def run_task(config: dict[str, Any], path: Path) -> Task:
    """The task a run was trained for (`core.task.run_task`); one line naming the file."""
    try:
        return task_of_run(config)
    except TaskError as error:
        raise RunError(f"{path}: {error}") from None


def read_run_config(run_dir: Path) -> dict[str, Any]:
    """config.json, checked field by field: one RunError naming the run and the field."""
    path = run_dir / CONFIG
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise RunError(f"{path}: not readable JSON ({type(error).__name__})") from None
    if not isinstance(config, dict):
        raise RunError(f"{path}: not a JSON object")
    missing = [k for k in ("head", "train", "labels", "cache", "label_mean") if k not in config]
    if missing:
        raise RunError(f"{path}: missing field(s) {', '.join(missing)}")
    task = run_task(config, path)
    try:
        head = head_from_dict(config["head"])
        TrainConfig.from_dict(config["train"])
    except (ConfigError, TypeError) as error:
        raise RunError(f"{path}: {error}") from None
    if head.outputs != len(task.targets):
        raise RunError(
            f"{path}: the head has {head.outputs} outputs for {len(task.targets)} targets"
        )
    mean = config["label_mean"]
    if not (
        isinstance(mean, list)
        and len(mean) == len(task.targets)
        and all(isinstance(v, (int, float)) and task.in_range(v) for v in mean)
    ):
        what = task.range_text() if task.value_range is None else f"finite {task.range_text()}"
        raise RunError(f"{path}: label_mean must be {len(task.targets)} {what}")
    cache = config["cache"]
    if not isinstance(cache, dict) or not isinstance(cache.get("backbone_fingerprint"), str):
        raise RunError(f"{path}: cache.backbone_fingerprint must be a string")
    return config


def _check_weights(run_dir: Path, head_config: HeadConfig) -> None:
    """Every tensor's name and shape in the weights file against the head the config builds,
    compared on the meta device: nothing is allocated before they agree."""
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in build_head(head_config).state_dict().items()}
    count = sum(math.prod(shape) for shape in expected.values())
    if count > MAX_PARAMETERS:
        raise RunError(f"{run_dir}: config.json describes a head of {count:,} values; refused")
    try:
        with safe_open(str(run_dir / WEIGHTS), framework="pt") as handle:
            found = {k: tuple(handle.get_slice(k).get_shape()) for k in handle.keys()}  # noqa: SIM118
    except Exception as error:  # safetensors raises its own error types
        raise RunError(f"{run_dir / WEIGHTS}: not a readable safetensors file ({error})") from None
    if set(found) != set(expected):
        odd = sorted(set(found) ^ set(expected))
        raise RunError(
            f"{run_dir}: weights and config.json disagree on tensors: {', '.join(odd[:5])}"
        )
    for name, shape in expected.items():
        if found[name] != shape:
            raise RunError(
                f"{run_dir}: weight {name} has shape {found[name]}, config.json implies {shape}"
            )


def load_run(run_dir: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """The head of a run, in eval mode, and its config.json, both checked first (see module)."""
    run_dir = Path(run_dir)
    if not (run_dir / CONFIG).is_file() or not (run_dir / WEIGHTS).is_file():
        raise RunError(f"{run_dir}: not a run directory (no {CONFIG} or {WEIGHTS})")
    config = read_run_config(run_dir)
    head_config = head_from_dict(config["head"])
    _check_weights(run_dir, head_config)
    model = build_head(head_config)
    state = load_file(str(run_dir / WEIGHTS))
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise RunError(f"{run_dir}: non-finite values in weight(s) {', '.join(bad[:5])}")
    model.load_state_dict(state)
    return model.eval(), config
