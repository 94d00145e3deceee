"""The SGD training loop of the neural heads, on one screen: each epoch trains, swaps in the EMA
weights, validates, keeps the best weights by the smoothed valid r, and logs a row; one progress
bar with an ETA runs over the whole run's steps.

The pieces it is made of: `train_step` (one optimizer step), `StepPlan` (optimizer, schedule,
EMA, loss and batches of a run), `Selection` (best epoch and early stopping), `averaged`
(evaluate on the EMA weights).
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from emi_features.core.task import Task
from emi_heads.heads.base import Head
from emi_heads.heads.settings import HeadConfig
from emi_heads.training.config import TrainConfig
from emi_heads.training.data import Inputs, batch_order, drop_streams
from emi_heads.training.labels import Labels
from emi_heads.training.losses import Loss, parse_loss
from emi_heads.training.metrics import format_scores, score_columns
from emi_heads.training.optim import Ema, ema_decay_for, lr_factor, passes_per_epoch
from emi_heads.training.rundir import LOG, EpochLog, RunWriter, predict

log = logging.getLogger(__name__)


def epoch_columns(task: Task) -> list[str]:
    """The epoch log's columns: the losses, the valid score, one column per target."""
    return ["epoch", "loss", "aux_loss", "lr", "valid_loss", "valid_r", "valid_r_smoothed",
            *[f"r_{t}" for t in task.targets], "seconds"]  # fmt: skip


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
        from emi_heads.training.stages import train_branches_first

        groups = train_branches_first(job)
    plan = StepPlan.build(model, job.train, config, device, groups)
    task = job.train[0].task
    epoch_log = EpochLog(run.path / LOG, epoch_columns(task), job.log_to, lambda: run.path)
    selection = Selection(config)
    bar = tqdm(total=plan.steps_per_epoch * config.epochs, desc="training", unit="step",
               disable=not job.progress or None, dynamic_ncols=True)  # fmt: skip
    with bar, logging_redirect_tqdm():
        for epoch in range(1, config.epochs + 1):
            tic = time.perf_counter()
            row = {"epoch": epoch, **plan.train_epoch(model, epoch, bar)}
            with averaged(model, plan.ema):
                if valid is not None:
                    row.update(validate(model, valid, plan.loss_fn, device))
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
        log.warning("the best epoch is the last one (%d of %d): the head may be under-trained; "
                    "try more --epochs or a higher --lr", best_epoch, config.epochs)  # fmt: skip


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
    unimodal: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimizer step: forward, the main loss plus the head's own auxiliary terms, backward,
    clipping, AdamW, the schedule, EMA. Returns the (main, auxiliary) losses, detached.
    `unimodal`: stage one of two-stage training, the branches' own losses alone."""
    with autocast:
        output = model(batch)
    if unimodal:
        loss, aux = model.unimodal_loss(output, target, loss_fn), target.new_zeros(())
    else:
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


@dataclass
class StepPlan:
    """What every step of a run shares: the training data, the optimizer and its schedule, the
    EMA, the loss (its correlation terms ramped per epoch), and how many passes an epoch is."""

    inputs: Inputs
    targets: torch.Tensor
    config: TrainConfig
    device: torch.device
    passes: int
    steps_per_epoch: int
    options: dict = field(default_factory=dict)  # train_step's keyword arguments
    generator: torch.Generator | None = None

    @classmethod
    def build(cls, model: Head, train: tuple[Labels, Inputs], config: TrainConfig,
              device: torch.device, groups: list[dict] | None = None,
              unimodal: bool = False) -> StepPlan:  # fmt: skip
        """`groups`: AdamW parameter groups (each with its `lr`); default: every parameter."""
        labels, inputs = train
        batches_per_pass = math.ceil(len(inputs) / config.batch_size)
        passes = passes_per_epoch(config, batches_per_pass)
        steps = passes * batches_per_pass
        if passes > 1:
            log.info(
                "%d training clips: an epoch is %d passes (%d steps), so that %d epochs make at "
                "least %d steps (--min-steps)",
                len(inputs), passes, steps, config.epochs, config.min_steps,
            )  # fmt: skip
        optimizer = torch.optim.AdamW(  # foreach: one fused update, also on a CPU
            groups or model.parameters(), lr=config.lr, weight_decay=config.weight_decay,
            foreach=True,
        )  # fmt: skip
        options = {
            "loss_fn": parse_loss(config.loss),
            "optimizer": optimizer,
            "scheduler": torch.optim.lr_scheduler.LambdaLR(
                optimizer, lambda s: lr_factor(s, config, steps)
            ),
            "ema": Ema(model, ema_decay_for(config, steps * config.epochs), config.ema_warmup)
            if config.ema
            else None,
            "grad_clip": config.grad_clip,
            "clip_mode": config.clip_mode,
            "unimodal": unimodal,
            "autocast": torch.autocast(
                device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"
            ),
        }
        targets = torch.from_numpy(labels.values)
        generator = torch.Generator().manual_seed(config.seed)
        return cls(inputs, targets, config, device, passes, steps, options, generator)

    @property
    def ema(self) -> Ema | None:
        return self.options["ema"]

    @property
    def loss_fn(self) -> Loss:
        return self.options["loss_fn"]

    def train_epoch(self, model: Head, epoch: int, bar: tqdm) -> dict[str, float]:
        """One epoch's steps; its mean main and auxiliary losses and its learning rate."""
        model.train()
        if self.config.corr_ramp_epochs:  # correlation terms weighted min(1, epoch / N)
            ramp = min(1.0, epoch / self.config.corr_ramp_epochs)
            self.options["loss_fn"] = parse_loss(self.config.loss, correlation_weight=ramp)
        lengths = self.inputs.lengths if self.config.length_buckets else None
        batches = [index for _ in range(self.passes) for index in batch_order(
            len(self.inputs), self.config.batch_size, self.generator, lengths)]  # fmt: skip
        sums = torch.zeros(2, dtype=torch.float64)
        for index in batches:
            batch = self.inputs.batch(index, self.device)
            batch = drop_streams(batch, self.config.modality_dropout, self.generator)
            target = self.targets[index].to(self.device)
            loss, aux = train_step(model, batch, target, **self.options)
            sums += torch.stack([loss, aux]).double().cpu() * len(index)
            bar.update()
        seen = self.passes * len(self.inputs)
        lr = self.options["scheduler"].get_last_lr()[0]
        return {"loss": float(sums[0]) / seen, "aux_loss": float(sums[1]) / seen, "lr": lr}


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


class Selection:
    """The best epoch by the mean valid r of the last `select_window` epochs (`smoothed`), above
    the best by more than `min_improvement`; `stale` counts the epochs since. Without
    validation every epoch is the best so far."""

    def __init__(self, config: TrainConfig):
        self.window, self.margin = config.select_window, config.min_improvement
        self.history: list[float] = []
        self.best_r, self.best_epoch, self.stale = -math.inf, 0, 0

    def update(self, row: dict[str, float]) -> bool:
        """Record an epoch's row (adding `valid_r_smoothed`); True when it is the new best."""
        improved = "valid_r" not in row
        if not improved:
            self.history.append(row["valid_r"])
            row["valid_r_smoothed"] = smoothed(self.history, self.window)
            improved = row["valid_r_smoothed"] > self.best_r + self.margin
        if improved:
            self.best_r, self.best_epoch, self.stale = (
                row.get("valid_r_smoothed", -math.inf), row["epoch"], 0,
            )  # fmt: skip
        else:
            self.stale += 1
        return improved

    def summary(self) -> str:
        if not self.history:  # no validation: every epoch is kept
            return f"epoch {self.best_epoch}"
        what = "r" if self.window == 1 else f"{self.window}-epoch mean r"
        return f"valid r {self.history[-1]:.3f}, best {what} {self.best_r:.3f} (epoch " \
               f"{self.best_epoch})"  # fmt: skip


def smoothed(history: list[float], window: int) -> float:
    """The mean of the last `window` epochs' valid r: the best epoch is chosen on it, so one
    lucky epoch in a noisy run is not kept over a steadily better stretch. NaN when this epoch's
    r is not finite (diverged, or constant predictions), so that epoch is never kept."""
    if not math.isfinite(history[-1]):
        return math.nan
    recent = [r for r in history[-window:] if math.isfinite(r)]
    return sum(recent) / len(recent)


def epoch_line(row: dict[str, float], config: TrainConfig, task: Task) -> str:
    """`epoch 3/30 loss 0.0412 aux 0.0031 valid r 0.6749 [...] (3-epoch mean 0.6684) 1.2s`."""
    line = f"epoch {row['epoch']}/{config.epochs} loss {row['loss']:.4f} aux {row['aux_loss']:.4f}"
    if "valid_r" in row:
        columns = np.array([row[f"r_{t}"] for t in task.targets])
        line += f" valid {format_scores(columns, task)}"
        if config.select_window > 1:
            line += f" ({config.select_window}-epoch mean {row['valid_r_smoothed']:.4f})"
    return f"{line} {row['seconds']:.1f}s"
