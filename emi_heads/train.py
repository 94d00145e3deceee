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
from tqdm import tqdm

from emi_features import __version__
from emi_features.dataset import EMOTIONS
from emi_features.devices import resolve_device
from emi_heads.config import HEADS, HeadConfig, TrainConfig, input_spec
from emi_heads.data import Inputs, batch_order, drop_streams
from emi_heads.heads import Head, build_head, check_inputs, resolve_head_config
from emi_heads.labels import Labels
from emi_heads.losses import Loss, parse_loss
from emi_heads.metrics import format_scores, pearson_columns
from emi_heads.optim import Ema, ema_decay_for, lr_factor, passes_per_epoch, seed_everything
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

log = logging.getLogger(__name__)
__all__ = ["TrainConfig", "HeadConfig", "train", "train_step", "evaluate"]


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
            best_epoch, epoch_log = _train_sgd(
                model, train_inputs, train_labels, valid, train_config, run, device, progress,
                log_to,
            )  # fmt: skip
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


def train_step(
    model: Head,
    batch: dict[str, torch.Tensor],
    target: torch.Tensor,
    *,
    loss_fn: Loss,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    ema: Ema | None,
    grad_clip: float,
    clip_mode: str = "norm",
    autocast: torch.autocast,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimizer step: forward, the main loss plus the head's own auxiliary terms, backward,
    clipping, AdamW, the schedule, EMA. Returns the (main, auxiliary) losses, detached."""
    with autocast:
        output = model(batch)
    loss = loss_fn(output.prediction.float(), target)
    aux = model.auxiliary_loss(output, batch, target, loss_fn)
    optimizer.zero_grad(set_to_none=True)
    (loss + aux).backward()
    if clip_mode == "value":
        torch.nn.utils.clip_grad_value_(model.parameters(), grad_clip)
    else:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    scheduler.step()
    if ema is not None:
        ema.update(model)
    return loss.detach(), aux.detach()


def evaluate(model: Head, split: tuple[Labels, Inputs], device: torch.device) -> np.ndarray:
    """(6,) Pearson r of each column on a labelled split."""
    labels, inputs = split
    return pearson_columns(predict(model, inputs, device=device), labels.values)


def _train_sgd(
    model: Head,
    train_inputs: Inputs,
    train_labels: Labels,
    valid: tuple[Labels, Inputs] | None,
    config: TrainConfig,
    run: RunWriter,
    device: torch.device,
    progress: bool,
    log_to: str | None = None,
) -> tuple[int, EpochLog]:
    optimizer = torch.optim.AdamW(  # foreach: one fused update, also on a CPU
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay, foreach=True
    )
    batches_per_pass = math.ceil(len(train_inputs) / config.batch_size)
    passes = passes_per_epoch(config, batches_per_pass)
    steps_per_epoch = passes * batches_per_pass
    ema_decay = ema_decay_for(config, steps_per_epoch * config.epochs)
    if passes > 1:
        log.info(
            "%d training clips: an epoch is %d passes (%d steps), so that %d epochs make at "
            "least %d steps (--min-steps)",
            len(train_inputs), passes, steps_per_epoch, config.epochs, config.min_steps,
        )  # fmt: skip
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, config, steps_per_epoch)
    )
    step_options = {
        "loss_fn": parse_loss(config.loss),
        "optimizer": optimizer,
        "scheduler": scheduler,
        "ema": Ema(model, ema_decay, config.ema_warmup) if config.ema else None,
        "grad_clip": config.grad_clip,
        "clip_mode": config.clip_mode,
        "autocast": torch.autocast(
            device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"
        ),
    }
    targets = torch.from_numpy(train_labels.values)
    generator = torch.Generator().manual_seed(config.seed)
    columns = [
        "epoch",
        "loss",
        "aux_loss",
        "lr",
        "valid_loss",
        "valid_r",
        "valid_r_smoothed",
        *[f"r_{e}" for e in EMOTIONS],
    ]
    epoch_log = EpochLog(run.path / LOG, [*columns, "seconds"], log_to, lambda: run.path)
    best_r, best_epoch, stale = -math.inf, 0, 0
    history: list[float] = []  # valid r per epoch
    for epoch in range(1, config.epochs + 1):
        tic = time.perf_counter()
        model.train()
        if config.corr_ramp_epochs:  # correlation terms weighted min(1, epoch / N)
            ramp = min(1.0, epoch / config.corr_ramp_epochs)
            step_options["loss_fn"] = parse_loss(config.loss, correlation_weight=ramp)
        batches = [
            index
            for _ in range(passes)
            for index in batch_order(
                len(train_inputs), config.batch_size, generator, train_inputs.lengths
            )
        ]
        sums = torch.zeros(2, dtype=torch.float64)
        for index in tqdm(
            batches, desc=f"epoch {epoch}", leave=False, disable=not progress or None
        ):
            batch = train_inputs.batch(index, device)
            batch = drop_streams(batch, config.modality_dropout, generator)
            loss, aux = train_step(model, batch, targets[index].to(device), **step_options)
            sums += torch.stack([loss, aux]).double().cpu() * len(index)
        row = {
            "epoch": epoch,
            "loss": float(sums[0]) / (passes * len(train_inputs)),
            "aux_loss": float(sums[1]) / (passes * len(train_inputs)),
            "lr": scheduler.get_last_lr()[0],
        }
        live = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if step_options["ema"] is not None:
            step_options["ema"].copy_to(model)  # evaluate and save the averaged weights
        line = f"epoch {epoch}/{config.epochs} loss {row['loss']:.4f} aux {row['aux_loss']:.4f}"
        improved = valid is None
        if valid is not None:
            valid_predictions = predict(model, valid[1], device=device)
            columns_r = pearson_columns(valid_predictions, valid[0].values)
            row["valid_loss"] = float(
                step_options["loss_fn"](
                    torch.from_numpy(valid_predictions), torch.from_numpy(valid[0].values)
                )
            )
            row["valid_r"] = float(columns_r.mean())
            row.update({f"r_{e}": float(v) for e, v in zip(EMOTIONS, columns_r, strict=True)})
            line += f" valid {format_scores(columns_r)}"
            history.append(row["valid_r"])
            row["valid_r_smoothed"] = smoothed(history, config.select_window)
            improved = row["valid_r_smoothed"] > best_r + config.min_improvement
        if improved:
            best_r, best_epoch, stale = row.get("valid_r_smoothed", -math.inf), epoch, 0
            run.save_weights(model)
        else:
            stale += 1
        model.load_state_dict(live)
        row["seconds"] = time.perf_counter() - tic
        epoch_log.add(row)
        log.info("%s %.1fs%s", line, row["seconds"], " *" if improved and valid else "")
        if valid is not None and stale >= config.patience:
            log.info("early stop: no better valid r for %d epochs", config.patience)
            break
    epoch_log.close()
    return best_epoch, epoch_log


def smoothed(history: list[float], window: int) -> float:
    """The mean of the last `window` epochs' valid r: the best epoch is chosen on it, so one
    lucky epoch in a noisy run is not kept over a steadily better stretch. NaN when this epoch's
    r is not finite (diverged, or constant predictions), so that epoch is never kept."""
    if not math.isfinite(history[-1]):
        return math.nan
    recent = [r for r in history[-window:] if math.isfinite(r)]
    return sum(recent) / len(recent)


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
