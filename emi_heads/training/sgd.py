"""The SGD training loop of the neural heads, on one screen: each epoch trains, swaps in the EMA
weights, validates, keeps the best weights by the smoothed valid r, and logs a row; one progress
bar with an ETA runs over the whole run's steps.

The pieces it is made of: `train_step` (one optimizer step) and `StepPlan` (optimizer,
schedule, EMA, loss and batches of a run), both in `steps`; `Selection` (best epoch and early
stopping, in `selection`), `averaged` (evaluate on the EMA weights).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from emi_features.core.task import Task
from emi_heads.heads.base import Head
from emi_heads.heads.settings import HeadConfig
from emi_heads.training.config import TrainConfig
from emi_heads.training.data import Inputs
from emi_heads.training.inference import predict
from emi_heads.training.labels import Labels
from emi_heads.training.losses import Loss
from emi_heads.training.metrics import format_scores, score_columns
from emi_heads.training.optim import Ema
from emi_heads.training.rundir import LOG, EpochLog, RunWriter
from emi_heads.training.selection import Selection, smoothed  # noqa: F401  (imported from here too)
from emi_heads.training.stages import train_branches_first
from emi_heads.training.steps import StepPlan

log = logging.getLogger(__name__)


def epoch_columns(task: Task) -> list[str]:
    """The epoch log's columns: the losses, the valid score, one column per target."""
    return [
        "epoch",
        "loss",
        "aux_loss",
        "lr",
        "valid_loss",
        "valid_r",
        "valid_r_smoothed",
        *[f"r_{t}" for t in task.targets],
        "seconds",
    ]


@dataclass
class Outcome:
    """What a trainer leaves: its epoch log (or the ridge's alphas), and what it chose."""

    epoch_log: EpochLog
    best_epoch: int | None = None
    alpha: float | None = None  # ridge's chosen alpha


@dataclass
class Job:
    """What a trainer is given: the built head and its config, the data, the run folder."""

    model: Head
    train: tuple[Labels, Inputs]
    valid: tuple[Labels, Inputs] | None
    head: HeadConfig
    config: TrainConfig
    run: RunWriter
    device: torch.device
    progress: bool = True
    log_to: str | None = None


def train_sgd(job: Job) -> Outcome:
    """Train the head for `config.epochs`; the best epoch's weights go to the run as they
    improve (the trainer of every head but ridge, `training.ridge_fit`)."""
    model, valid, config, run, device = job.model, job.valid, job.config, job.run, job.device
    groups = None
    if config.unimodal_epochs:
        groups = train_branches_first(job)
    plan = StepPlan.build(model, job.train, config, device, groups)
    task = job.train[0].task
    epoch_log = EpochLog(run.path / LOG, epoch_columns(task), job.log_to, lambda: run.path)
    selection = Selection(config)
    bar = tqdm(
        total=plan.steps_per_epoch * config.epochs,
        desc="training",
        unit="step",
        disable=not job.progress or None,
        dynamic_ncols=True,
    )
    with bar, logging_redirect_tqdm():
        for epoch in range(1, config.epochs + 1):
            tic = time.perf_counter()
            row = {"epoch": epoch, **plan.train_epoch(model, epoch, bar)}
            with averaged(model, plan.ema):
                if valid is not None:
                    row.update(validate(model, valid, plan.loss_fn, device))
                    plan.end_epoch(row["valid_r"])
                improved = selection.update(row)
                if improved:
                    run.save_weights(model)
            row["seconds"] = time.perf_counter() - tic
            epoch_log.add(row)
            log.info("%s%s", epoch_line(row, config, task), " *" if improved and valid else "")
            bar.set_postfix_str(selection.summary(), refresh=False)
            if valid is not None and selection.stale >= config.patience:
                log.info("early stop: no better valid r for %d epochs", config.patience)
                break
    epoch_log.close()
    warn_if_last(selection.best_epoch, config, valid is not None)
    return Outcome(epoch_log, selection.best_epoch)


def warn_if_last(best_epoch: int, config: TrainConfig, validated: bool) -> None:
    if validated and best_epoch == config.epochs > 1:
        log.warning(
            "the best epoch is the last one (%d of %d): the head may be under-trained; "
            "try more --epochs or a higher --lr",
            best_epoch,
            config.epochs,
        )


@contextlib.contextmanager
def averaged(model: Head, ema: Ema | None) -> Iterator[None]:
    """Inside: the model holds its EMA weights (evaluated and saved); after: its live ones."""
    if ema is None:
        yield
        return
    live = {k: v.detach().clone() for k, v in model.state_dict().items()}
    ema.copy_to(model)
    try:
        yield
    finally:
        model.load_state_dict(live)


def validate(
    model: Head, valid: tuple[Labels, Inputs], loss_fn: Loss, device: torch.device
) -> dict[str, float]:
    """The validation loss, the task's mean score (`valid_r`: Pearson r unless the task says
    CCC) and each target's score of the model as it is."""
    labels, inputs = valid
    predictions = predict(model, inputs, device=device)
    columns = score_columns(predictions, labels.values, labels.task)
    loss = loss_fn(torch.from_numpy(predictions), torch.from_numpy(labels.values))
    return {
        "valid_loss": float(loss),
        "valid_r": float(columns.mean()),
        **{f"r_{t}": float(v) for t, v in zip(labels.task.targets, columns, strict=True)},
    }


def epoch_line(row: dict[str, float], config: TrainConfig, task: Task) -> str:
    """`epoch 3/30 loss 0.0412 aux 0.0031 valid r 0.6749 [...] (3-epoch mean 0.6684) 1.2s`."""
    line = f"epoch {row['epoch']}/{config.epochs} loss {row['loss']:.4f} aux {row['aux_loss']:.4f}"
    if "valid_r" in row:
        columns = np.array([row[f"r_{t}"] for t in task.targets])
        line += f" valid {format_scores(columns, task)}"
        if config.select_window > 1:
            line += f" ({config.select_window}-epoch mean {row['valid_r_smoothed']:.4f})"
    return f"{line} {row['seconds']:.1f}s"
