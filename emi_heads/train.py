"""`emi-train`: one head from the cache, read top to bottom.

Load labels and cache groups once; fit (ridge) or train (AdamW, warm-up then cosine decay,
gradient clipping, EMA of the weights, early stopping on the validation mean Pearson r); save the
best weights as they improve, the config, per-epoch log, metrics and plots.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from emi_features import __version__
from emi_features.dataset import EMOTIONS
from emi_features.devices import resolve_device
from emi_heads.config import HEADS, HeadConfig, TrainConfig, input_spec
from emi_heads.data import Inputs
from emi_heads.heads import Head, build_head, check_inputs, resolve_head_config
from emi_heads.labels import Labels
from emi_heads.metrics import format_scores, pearson_columns
from emi_heads.optim import seed_everything
from emi_heads.rundata import RunData, load_run_data
from emi_heads.rundir import (
    CONFIG,
    LOG,
    METRICS,
    WEIGHTS,
    EpochLog,
    RunError,
    RunWriter,
    predict,
    save_json,
    save_predictions,
)
from emi_heads.sgd import train_sgd

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


def _fit_ridge(
    model,
    train: Inputs,
    train_labels: Labels,
    valid: tuple[Labels, Inputs] | None,
    alphas: tuple[float, ...],
) -> tuple[float, list[dict[str, float]]]:
    """Fit each alpha, keep the best on validation (the middle one with no validation)."""
    everything = train.batch(torch.arange(len(train)), torch.device("cpu"))
    if valid is None:
        alpha = alphas[len(alphas) // 2]
        model.fit(everything, train_labels.values, alpha)
        return alpha, []
    rows, best = [], (-math.inf, alphas[0])
    for alpha in alphas:
        model.fit(everything, train_labels.values, alpha)
        r = float(evaluate(model, valid, torch.device("cpu")).mean())
        rows.append({"alpha": alpha, "valid_r": r})
        log.info("ridge alpha %g: valid r %.4f", alpha, r)
        best = max(best, (r, alpha))
    model.fit(everything, train_labels.values, best[1])
    return best[1], rows


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
        data, out, head_config, train_config, device=torch_device, progress=progress,
        overwrite=overwrite, preset=preset, command=command, started=started, log_to=log_to,
    )  # fmt: skip


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
    head_config = _resolve(replace(head_config, dims=train_inputs.dims))
    check_inputs(head_config)
    with RunWriter(out, overwrite=overwrite) as run:
        model = build_head(head_config)
        model.fit_standardizer(train_inputs)
        model.init_output_bias(train_labels.values.mean(axis=0))
        model.to(device)
        config: dict[str, Any] = {
            "preset": preset,
            "head": head_config.to_dict(),
            "train": asdict(train_config),
            "labels": list(EMOTIONS),
            "cache": data.cache_info,
            "label_mean": train_labels.values.mean(axis=0).tolist(),
            **{k: v for k, v in data.sources.items() if k != "csv_digests"},
            "provenance": {
                "command": command,
                "cwd": os.getcwd(),
                "csv_digests": data.sources["csv_digests"],
            },
            "emi_version": __version__,
        }
        save_json(run.path / CONFIG, config)
        sgd = HEADS[head_config.head].trained_by_sgd
        log.info(
            "%s head, %d %s, %d train clips%s, on %s",
            head_config.head,
            sum(p.numel() for p in model.parameters()) if sgd else model.coef.numel(),
            "parameters" if sgd else "ridge coefficients",
            len(train_labels.ids),
            f", {len(valid[0].ids)} valid" if valid else "",
            device,
        )
        alpha = None
        if not sgd:
            alpha, rows = _fit_ridge(
                model, train_inputs, train_labels, valid, head_config.ridge_alphas
            )
            epoch_log = EpochLog(run.path / LOG, ["alpha", "valid_r"], log_to, lambda: run.path)
            best_epoch = None
            run.save_weights(model)
            for row in rows:
                epoch_log.add(row)
            epoch_log.close()
        else:
            best_epoch, epoch_log = train_sgd(
                model, data.train, valid, train_config, run, device, progress, log_to
            )
        if not run.published:
            raise RunError(
                f"{run.final}: no epoch gave a finite validation r, so no weights were kept "
                f"(the training diverged?); try a lower --lr"
            )
        if sgd and valid is not None and best_epoch == train_config.epochs > 1:
            log.warning(
                "the best epoch is the last one (%d of %d): the head may be under-trained; "
                "try more --epochs or a higher --lr",
                best_epoch,
                train_config.epochs,
            )
        return _finish(run.path, model, valid, epoch_log, best_epoch, alpha, device, started)


def _resolve(config: HeadConfig) -> HeadConfig:
    """The head's config as it will run on these inputs; every field the cache changed is
    logged, and the resolved config is what the run saves."""
    resolved = resolve_head_config(config)
    for item in fields(HeadConfig):
        before, after = getattr(config, item.name), getattr(resolved, item.name)
        if before != after:
            log.info("%s head: %s=%s, not %s, on this cache", config.head, item.name, after, before)
    return resolved


def evaluate(model: Head, split: tuple[Labels, Inputs], device: torch.device) -> np.ndarray:
    """(6,) Pearson r of each column on a labelled split."""
    labels, inputs = split
    return pearson_columns(predict(model, inputs, device=device), labels.values)


COLLAPSE_SHARE = 0.1  # predictions varying less than this share of the labels' spread


def _warn_if_collapsed(predictions: np.ndarray, targets: np.ndarray) -> None:
    """Warn when a column's predictions barely vary next to its labels (collapse to the mean)."""
    spread = predictions.std(axis=0) / np.maximum(targets.std(axis=0), 1e-12)
    flat = [f"{name} {share:.2f}" for name, share in zip(EMOTIONS, spread, strict=True)
            if share < COLLAPSE_SHARE]  # fmt: skip
    if flat:
        log.warning(
            "predictions on validation barely vary (their sd as a share of the labels' sd: %s): "
            "the head predicts near the label mean; try a higher --lr or more --epochs",
            ", ".join(flat),
        )


def _finish(
    run_dir: Path,
    model,
    valid,
    epoch_log: EpochLog,
    best_epoch: int | None,
    alpha: float | None,
    device: torch.device,
    started: float,
) -> TrainResult:
    from safetensors.torch import load_file

    from emi_heads.plots import plot_curves, plot_scatter

    model.load_state_dict(load_file(str(run_dir / WEIGHTS)))
    metrics: dict[str, Any] = {"seconds": time.perf_counter() - started}
    metrics.update({"best_epoch": best_epoch} if alpha is None else {"alpha": alpha})
    columns_r = predictions = None
    if valid is not None:
        predictions = predict(model, valid[1], device=device)
        columns_r = pearson_columns(predictions, valid[0].values)
        metrics.update(
            {
                "valid_mean_r": float(columns_r.mean()),
                "valid_r": dict(zip(EMOTIONS, map(float, columns_r), strict=True)),
            }
        )
        save_predictions(run_dir / "valid_predictions.csv", valid[0].ids, predictions)
        _warn_if_collapsed(predictions, valid[0].values)
        plot_scatter(run_dir / "valid_scatter.png", predictions, valid[0].values)
    plot_curves(run_dir / "curves.png", epoch_log.rows, alpha if alpha is not None else best_epoch)
    save_json(run_dir / METRICS, metrics)
    if columns_r is not None:
        chosen = f"alpha {alpha:g}" if alpha is not None else f"best epoch {best_epoch}"
        row = next((r for r in epoch_log.rows if r.get("epoch") == best_epoch), {})
        if row.get("valid_r_smoothed", row.get("valid_r")) != row.get("valid_r"):
            chosen += f" (chosen on the mean of its last epochs' r, {row['valid_r_smoothed']:.4f})"
        log.info("%s: valid %s -> %s", chosen, format_scores(columns_r), run_dir)
    return TrainResult(
        run_dir,
        best_epoch,
        metrics.get("valid_mean_r"),
        None if columns_r is None else columns_r.tolist(),
        metrics["seconds"],
        alpha,
        predictions,
    )
