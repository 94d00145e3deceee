"""One optimizer step and what every step of a run shares (`StepPlan`: the data, optimizer,
schedule, EMA, loss and batches): used by the training loop (`sgd`) and by the first stage of
two-stage training (`stages`), which import it from here, not from each other.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import torch
from tqdm import tqdm

from emi_heads.heads.base import Head
from emi_heads.training.config import TrainConfig
from emi_heads.training.data import Inputs, batch_order, drop_streams
from emi_heads.training.labels import Labels
from emi_heads.training.losses import Loss, parse_loss
from emi_heads.training.optim import Ema, ema_decay_for, lr_factor, passes_per_epoch

log = logging.getLogger(__name__)


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
    unimodal: tuple[str, ...] = (),
) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimizer step: forward, the main loss plus the head's own auxiliary terms, backward,
    clipping, AdamW, the schedule (None: one stepped per epoch), EMA. Returns the (main,
    auxiliary) losses, detached. `unimodal`: stage one of two-stage training, the own losses of
    these branches alone."""
    with autocast:
        output = model(batch)
    if unimodal:
        loss = model.unimodal_loss(output, target, loss_fn, unimodal)
        aux = target.new_zeros(())
    else:
        loss = loss_fn(output.prediction.float(), target)
        aux = model.auxiliary_loss(output, batch, target, loss_fn)
    model.zero_grad(set_to_none=True)  # every gradient: a stage before may have left some
    (loss + aux).backward()
    if clip_mode == "value":
        torch.nn.utils.clip_grad_value_(model.parameters(), grad_clip)
    else:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    if scheduler is not None:
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
    plateau: torch.optim.lr_scheduler.ReduceLROnPlateau | None = None  # stepped per epoch

    @classmethod
    def build(
        cls,
        model: Head,
        train: tuple[Labels, Inputs],
        config: TrainConfig,
        device: torch.device,
        groups: list[dict] | None = None,
        unimodal: tuple[str, ...] = (),
    ) -> StepPlan:
        """`groups`: AdamW parameter groups (each with its `lr`); default: every parameter.
        `unimodal`: the branches whose own losses stage one trains."""
        labels, inputs = train
        batches_per_pass = math.ceil(len(inputs) / config.batch_size)
        passes = passes_per_epoch(config, batches_per_pass)
        steps = passes * batches_per_pass
        if passes > 1:
            log.info(
                "%d training clips: an epoch is %d passes (%d steps), so that %d epochs make at "
                "least %d steps (--min-steps)",
                len(inputs),
                passes,
                steps,
                config.epochs,
                config.min_steps,
            )
        optimizer = torch.optim.AdamW(  # foreach: one fused update, also on a CPU
            groups or model.parameters(),
            lr=config.lr,
            weight_decay=config.weight_decay,
            foreach=True,
        )
        plateau = scheduler = None
        if config.lr_schedule == "plateau":  # MimicMetrics' train_stage, lines 649-651
            plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer, mode="max", factor=0.5, patience=max(3, config.patience // 3)
            )
        else:
            scheduler = torch.optim.lr_scheduler.LambdaLR(
                optimizer, lambda s: lr_factor(s, config, steps)
            )
        options = {
            "loss_fn": parse_loss(config.loss),
            "optimizer": optimizer,
            "scheduler": scheduler,
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
        return cls(inputs, targets, config, device, passes, steps, options, generator, plateau)

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
        batches = [
            index
            for _ in range(self.passes)
            for index in batch_order(
                len(self.inputs), self.config.batch_size, self.generator, lengths
            )
        ]
        sums = torch.zeros(2, dtype=torch.float64)
        for index in batches:
            batch = self.inputs.batch(index, self.device)
            batch = drop_streams(batch, self.config.modality_dropout, self.generator)
            target = self.targets[index].to(self.device)
            loss, aux = train_step(model, batch, target, **self.options)
            sums += torch.stack([loss, aux]).double().cpu() * len(index)
            bar.update()
        seen = self.passes * len(self.inputs)
        lr = self.options["optimizer"].param_groups[0]["lr"]
        return {"loss": float(sums[0]) / seen, "aux_loss": float(sums[1]) / seen, "lr": lr}

    def end_epoch(self, valid_r: float) -> None:
        """After an epoch's validation: a plateau schedule reads its r (NaN: no better)."""
        if self.plateau is not None:
            self.plateau.step(valid_r)
