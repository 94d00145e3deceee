"""`emi-train`: one head from the cache, read top to bottom.

Load labels and cache groups once; fit (ridge) or train (AdamW, warm-up then cosine decay,
gradient clipping, EMA of the weights, early stopping on the validation mean Pearson r); save the
best weights as they improve, the config, per-epoch log, metrics and plots.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from emi_features import __version__
from emi_features.core.devices import resolve_device
from emi_features.core.task import Task
from emi_heads.heads.base import Head, build_head, check_inputs, resolve_head_config
from emi_heads.heads.settings import HeadConfig
from emi_heads.training.config import TrainConfig, input_spec
from emi_heads.training.data import Inputs
from emi_heads.training.inference import predict
from emi_heads.training.labels import Labels
from emi_heads.training.metrics import format_scores, score_columns
from emi_heads.training.optim import seed_everything
from emi_heads.training.ridge_fit import fit_ridge
from emi_heads.training.rundata import RunData, load_run_data
from emi_heads.training.rundir import (
    CONFIG,
    METRICS,
    WEIGHTS,
    RunError,
    RunWriter,
    save_json,
    save_predictions,
)
from emi_heads.training.sgd import Job, Outcome, train_sgd

log = logging.getLogger(__name__)
__all__ = ["TrainConfig", "HeadConfig", "train", "evaluate"]


@dataclass
class TrainResult:
    run_dir: Path
    best_epoch: int | None  # None for ridge (no epochs)
    valid_r: float | None
    valid_columns: list[float] | None
    seconds: float
    alpha: float | None = None  # ridge's chosen alpha
    valid_predictions: np.ndarray | None = None


def train(
    cache_path: str | Path,
    train_csvs: list[Path],
    valid_csv: Path | None,
    out: str | Path,
    head_config: HeadConfig,
    train_config: TrainConfig,
    *,
    device: str | None = None,
    progress: bool = True,
    overwrite: bool = False,
    preset: str | None = None,
    command: list[str] | None = None,
    log_to: str | None = None,
) -> TrainResult:
    """Train one head and write its run directory `out` (see `RunWriter`: a folder that holds
    a run is refused unless `overwrite`, and `out` appears only with the first best weights)."""
    started = time.perf_counter()
    torch_device = resolve_device(device)
    data = load_run_data(cache_path, train_csvs, valid_csv, input_spec(head_config, train_config))
    return fit(
        data,
        out,
        head_config,
        train_config,
        device=torch_device,
        progress=progress,
        overwrite=overwrite,
        preset=preset,
        command=command,
        started=started,
        log_to=log_to,
    )


def fit(
    data: RunData,
    out: str | Path,
    head_config: HeadConfig,
    train_config: TrainConfig,
    *,
    device: torch.device,
    progress: bool = True,
    overwrite: bool = False,
    preset: str | None = None,
    command: list[str] | None = None,
    started: float | None = None,
    log_to: str | None = None,
) -> TrainResult:
    """One run from loaded data into the run directory `out` (`log_to="tensorboard"` also
    writes the epochs' numbers as TensorBoard events)."""
    started = time.perf_counter() if started is None else started
    seed_everything(train_config.seed)
    train_labels, train_inputs = data.train
    valid = data.valid
    task = train_labels.task
    head_config = _resolve(replace(head_config, dims=train_inputs.dims, outputs=len(task.targets)))
    check_inputs(head_config, train_inputs.offered)
    check_output_range(head_config, task)
    with RunWriter(out, overwrite=overwrite) as run:
        model = build_head(head_config)
        model.fit_standardizer(train_inputs)
        model.init_output_bias(train_labels.values.mean(axis=0))
        model.to(device)
        config = run_config(data, head_config, train_config, preset, command)
        save_json(run.path / CONFIG, config)
        _describe(model, head_config, data, device)
        trainer = train_sgd if head_config.trained_by_sgd else fit_ridge
        outcome = trainer(
            Job(model, data.train, valid, head_config, train_config, run, device, progress, log_to)
        )
        if not run.published:
            raise RunError(
                f"{run.final}: no epoch gave a finite validation r, so no weights were kept "
                f"(the training diverged?); try a lower --lr"
            )
        return _finish(run.path, model, valid, outcome, device, started, train_labels.task)


def run_config(
    data: RunData,
    head: HeadConfig,
    train: TrainConfig,
    preset: str | None,
    command: list[str] | None,
) -> dict[str, Any]:
    """What config.json records: the head's own settings, what it reads of a cache (`reads`,
    all that prediction needs), the training config, the labels and where everything came
    from."""
    return {
        "preset": preset,
        "head": head.to_dict(),
        "reads": input_spec(head, train).to_dict(),
        "train": asdict(train),
        "labels": list(data.train[0].task.targets),
        "task": data.train[0].task.to_dict(),
        "cache": data.cache_info,
        "label_mean": data.train[0].values.mean(axis=0).tolist(),
        **{k: v for k, v in data.sources.items() if k != "csv_digests"},
        "provenance": {
            "command": command,
            "cwd": os.getcwd(),
            "csv_digests": data.sources["csv_digests"],
        },
        "emi_version": __version__,
    }


def _describe(model: Head, head: HeadConfig, data: RunData, device: torch.device) -> None:
    sgd = head.trained_by_sgd
    log.info(
        "%s head, %d %s, %d train clips%s, on %s",
        head.head,
        sum(p.numel() for p in model.parameters()) if sgd else model.coef.numel(),
        "parameters" if sgd else "ridge coefficients",
        len(data.train[0].ids),
        f", {len(data.valid[0].ids)} valid" if data.valid else "",
        device,
    )


def _resolve(config: HeadConfig) -> HeadConfig:
    """The head's config as it will run on these inputs; every field the cache changed is
    logged, and the resolved config is what the run saves."""
    resolved = resolve_head_config(config)
    for item in fields(config):
        before, after = getattr(config, item.name), getattr(resolved, item.name)
        if before != after:
            log.info("%s head: %s=%s, not %s, on this cache", config.head, item.name, after, before)
    return resolved


def evaluate(model: Head, split: tuple[Labels, Inputs], device: torch.device) -> np.ndarray:
    """(K,) the task's score of each target on a labelled split."""
    labels, inputs = split
    return score_columns(predict(model, inputs, device=device), labels.values, labels.task)


def check_output_range(head: HeadConfig, task: Task) -> None:
    """A sigmoid output predicts in [0, 1]: one line when the task's targets are not there."""
    if getattr(head, "output_activation", None) == "sigmoid" and task.value_range != (0.0, 1.0):
        raise RunError(
            f"targets {', '.join(task.targets)} are {task.range_text()}, not in [0, 1]: give "
            f"--output-activation none (or rescale them to [0, 1])"
        )


COLLAPSE_SHARE = 0.1  # predictions varying less than this share of the labels' spread


def _warn_if_collapsed(predictions: np.ndarray, labels: Labels) -> None:
    """Warn when a column's predictions barely vary next to its labels (collapse to the mean)."""
    spread = predictions.std(axis=0) / np.maximum(labels.values.std(axis=0), 1e-12)
    names = labels.task.targets
    flat = [
        f"{name} {share:.2f}"
        for name, share in zip(names, spread, strict=True)
        if share < COLLAPSE_SHARE
    ]
    if flat:
        log.warning(
            "predictions on validation barely vary (their sd as a share of the labels' sd: %s): "
            "the head predicts near the label mean; try a higher --lr or more --epochs",
            ", ".join(flat),
        )


LAYER_WEIGHTS = "layer_weights.json"


def _finish(
    run_dir: Path,
    model,
    valid,
    outcome: Outcome,
    device: torch.device,
    started: float,
    task: Task,
) -> TrainResult:
    from safetensors.torch import load_file

    from emi_heads.experiments.plots import plot_curves, plot_layer_weights, plot_scatter

    epoch_log, best_epoch, alpha = outcome.epoch_log, outcome.best_epoch, outcome.alpha
    model.load_state_dict(load_file(str(run_dir / WEIGHTS)))
    layer_weights = model.layer_weights() if hasattr(model, "layer_weights") else {}
    if layer_weights:  # the best epoch's softmax weight per hidden layer, per layered stream
        save_json(run_dir / LAYER_WEIGHTS, layer_weights)
        plot_layer_weights(run_dir / "layer_weights.png", layer_weights)
    metrics: dict[str, Any] = {"seconds": time.perf_counter() - started}
    metrics.update({"best_epoch": best_epoch} if alpha is None else {"alpha": alpha})
    columns_r = predictions = None
    if valid is not None:
        predictions = predict(model, valid[1], device=device)
        columns_r = score_columns(predictions, valid[0].values, task)
        metrics.update(
            {
                "valid_mean_r": float(columns_r.mean()),
                "valid_r": dict(zip(task.targets, map(float, columns_r), strict=True)),
            }
        )
        save_predictions(
            run_dir / "valid_predictions.csv",
            valid[0].ids,
            predictions,
            (task.id_column, *task.targets),
        )
        _warn_if_collapsed(predictions, valid[0])
        plot_scatter(run_dir / "valid_scatter.png", predictions, valid[0].values, task)
    plot_curves(
        run_dir / "curves.png", epoch_log.rows, alpha if alpha is not None else best_epoch, task
    )
    save_json(run_dir / METRICS, metrics)
    if columns_r is not None:
        chosen = f"alpha {alpha:g}" if alpha is not None else f"best epoch {best_epoch}"
        row = next((r for r in epoch_log.rows if r.get("epoch") == best_epoch), {})
        if row.get("valid_r_smoothed", row.get("valid_r")) != row.get("valid_r"):
            chosen += f" (chosen on the mean of its last epochs' r, {row['valid_r_smoothed']:.4f})"
        log.info("%s: valid %s -> %s", chosen, format_scores(columns_r, task), run_dir)
    return TrainResult(
        run_dir,
        best_epoch,
        metrics.get("valid_mean_r"),
        None if columns_r is None else columns_r.tolist(),
        metrics["seconds"],
        alpha,
        predictions,
    )
