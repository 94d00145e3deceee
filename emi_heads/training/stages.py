"""Two-stage training (`emi train --unimodal-epochs N`, MimicMetrics, 10th ABAW): each
stream's branch is first trained alone on its own auxiliary head, then the fusion over them,
the branches frozen or fine-tuned slowly (`--encoder-lr-scale`).

As published (github.com/Dinithipurna/MimicMetrics, src/staged_fusion_training.py at f8e24a2):
each unimodal encoder is trained in a run of its own — its own AdamW, ReduceLROnPlateau, early
stop and best epoch by valid Pearson (`train_stage`, lines 630-702; stages 1-3, lines
830-936) — its head removed (`remove_head`, lines 329-331), and the fusion trained with the
encoders at lr x 0.05 (lines 1020-1025, the AdamW groups): `--unimodal-runs separate`. With
`joint` (the default) the branches of one head are trained together in one run with one best
epoch: their parameters and losses are disjoint, so each still learns alone (only a
clip-by-norm of the whole gradient couples them).
"""

from __future__ import annotations

import logging
import math
from dataclasses import replace

import numpy as np
import torch
from tqdm import tqdm

from emi_heads.training.inference import predict_outputs
from emi_heads.training.metrics import score_columns
from emi_heads.training.selection import Selection
from emi_heads.training.steps import StepPlan

log = logging.getLogger(__name__)


def train_branches_first(job) -> list[dict]:
    """Stage one for `job.config.unimodal_epochs` epochs; the model is left with the best
    epoch's branches. Returns the AdamW parameter groups of the fusion stage: the fusion at the
    full lr, the branches at lr x encoder_lr_scale (left out and frozen at 0)."""
    model, config = job.model, job.config
    if not hasattr(model, "unimodal_loss"):
        raise ValueError(
            f"--unimodal-epochs: the {job.head.name} head has no per-stream "
            "branches to train first (concat-frames has)"
        )
    runs = [tuple(model.streams)]
    if config.unimodal_runs == "separate":
        runs = [(name,) for name in model.streams]
    for streams in runs:
        train_branches(job, streams)
    return fusion_groups(model, config)


def train_branches(job, streams: tuple[str, ...]) -> None:
    """One run of stage one: the branches of `streams` on their own losses, with an optimizer
    of their parameters alone, the run's schedule and selection (`Selection`: best epoch by
    their mean valid r, early stopping after `patience` epochs without one); the branches are
    left at their best epoch."""
    model, config = job.model, job.config
    stage = replace(config, epochs=config.unimodal_epochs, ema=False)
    if config.unimodal_runs == "joint":  # the best epoch by the raw r, no early stop
        stage = replace(stage, select_window=1, min_improvement=0.0, patience=stage.epochs)
    branches = torch.nn.ModuleList([m for n in streams for m in model.branch_modules_of(n)])
    groups = [{"params": list(branches.parameters()), "lr": config.lr}]
    plan = StepPlan.build(model, job.train, stage, job.device, groups, unimodal=streams)
    selection, best_state = Selection(stage), None
    what = "branches" if len(streams) > 1 else streams[0]
    bar = tqdm(
        total=plan.steps_per_epoch * stage.epochs,
        desc=what,
        unit="step",
        disable=not job.progress or None,
        dynamic_ncols=True,
    )
    with bar:
        for epoch in range(1, stage.epochs + 1):
            row = plan.train_epoch(model, epoch, bar)
            scores = branch_scores(model, job.valid, job.device, streams)
            mean_r = float(np.mean(list(scores.values()))) if scores else math.nan
            shown = "".join(f" {n} r {r:.4f}" for n, r in scores.items())
            log.info(
                "%s alone, epoch %d/%d loss %.4f%s", what, epoch, stage.epochs, row["loss"], shown
            )
            record = {"epoch": epoch, **({"valid_r": mean_r} if scores else {})}
            if selection.update(record) or best_state is None:
                best_state = {k: v.detach().clone() for k, v in branches.state_dict().items()}
            if scores:
                plan.end_epoch(mean_r)
                if selection.stale >= stage.patience:
                    log.info(
                        "%s: early stop, no better valid r for %d epochs", what, stage.patience
                    )
                    break
    branches.load_state_dict(best_state)


def branch_scores(model, valid, device: torch.device, streams: tuple[str, ...]) -> dict[str, float]:
    """Each branch of `streams`: its mean valid r on its own auxiliary head (empty without
    validation), from one pass over the validation clips."""
    if valid is None:
        return {}
    labels, inputs = valid
    names = [f"branch/{name}" for name in streams]
    outputs = predict_outputs(model, inputs, names, device=device)
    return {
        name: float(score_columns(outputs[f"branch/{name}"], labels.values, labels.task).mean())
        for name in streams
    }


def fusion_groups(model, config) -> list[dict]:
    """The fusion stage's parameter groups; frozen branches are left out of the optimizer."""
    branch_ids = {id(p) for m in model.branch_modules() for p in m.parameters()}
    fusion = [p for p in model.parameters() if id(p) not in branch_ids]
    branch = [p for p in model.parameters() if id(p) in branch_ids]
    if config.encoder_lr_scale == 0:
        for parameter in branch:
            parameter.requires_grad_(False)
        return [{"params": fusion, "lr": config.lr}]
    return [
        {"params": fusion, "lr": config.lr},
        {"params": branch, "lr": config.lr * config.encoder_lr_scale},
    ]
