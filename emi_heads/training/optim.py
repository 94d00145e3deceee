"""The optimisation pieces of training: the EMA of the weights, the learning-rate schedules,
and seeding."""

from __future__ import annotations

import math
import random

import numpy as np
import torch

from emi_heads.training.config import EMA_RUN_SHARE, TrainConfig


class Ema:
    """Exponential moving average of a model's floating-point state, with a warm-up
    (decay min(d, (1 + t) / (10 + t))) so that short runs are not dominated by the start, or
    without one (`warmup=False`: decay d from the first step, as the published concat fusion)."""

    def __init__(self, model: torch.nn.Module, decay: float, warmup: bool = True):
        self.decay = decay
        self.warmup = warmup
        self.steps = 0
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()}
        live = model.state_dict()
        floating = [k for k, v in live.items() if v.dtype.is_floating_point]
        # state_dict tensors share storage with the model: one fused lerp per step
        self._live = [live[k] for k in floating]
        self._averaged = [self.shadow[k] for k in floating]
        self._others = [(self.shadow[k], v) for k, v in live.items() if k not in floating]

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        self.steps += 1
        decay = self.decay
        if self.warmup:
            decay = min(decay, (1 + self.steps) / (10 + self.steps))
        torch._foreach_lerp_(self._averaged, self._live, 1 - decay)
        for averaged, value in self._others:
            averaged.copy_(value)

    def copy_to(self, model: torch.nn.Module) -> None:
        model.load_state_dict(self.shadow)


def passes_per_epoch(config: TrainConfig, batches_per_pass: int) -> int:
    """Passes over the training set in one epoch: 1, or enough that the run's epochs make at
    least `min_steps` optimizer steps (a small set is trained as long as a large one)."""
    return max(1, math.ceil(config.min_steps / (config.epochs * batches_per_pass)))


def ema_decay_for(config: TrainConfig, total_steps: int) -> float:
    """The EMA decay per step: the config's, or one whose time constant 1 / (1 - d) is
    EMA_RUN_SHARE of the run (at least 10 steps), so the average follows runs of any length."""
    if config.ema_decay is not None:
        return config.ema_decay
    return 1.0 - 1.0 / max(10.0, EMA_RUN_SHARE * total_steps)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def lr_factor(step: int, config: TrainConfig, steps_per_epoch: int) -> float:
    """The learning rate of optimizer step `step` (from 0) as a fraction of `lr`.

    `warmup-cosine`: linear warm-up over round(warmup_epochs x steps per epoch) steps, or
    round(warmup_fraction x steps) without warmup_epochs, then cosine decay to 0, per step
    (transformers' get_cosine_schedule_with_warmup). `cosine-epoch`: constant within an epoch,
    0.5 (1 + cos(pi e / epochs)) in epoch e from 0 (CosineAnnealingLR stepped per epoch)."""
    total = steps_per_epoch * config.epochs
    if config.lr_schedule == "cosine-epoch":
        return 0.5 * (1 + math.cos(math.pi * (step // steps_per_epoch) / config.epochs))
    warmup = round(
        config.warmup_epochs * steps_per_epoch
        if config.warmup_epochs
        else config.warmup_fraction * total
    )
    if step < warmup:
        return step / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return max(0.0, 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))
