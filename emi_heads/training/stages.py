"""Two-stage training (`emi train --unimodal-epochs N`, MimicMetrics, 10th ABAW): each
stream's branch is first trained alone on its own auxiliary head, then the fusion over them,
the branches frozen or fine-tuned slowly (`--encoder-lr-scale`).

As published (github.com/Dinithipurna/MimicMetrics, src/staged_fusion_training.py at f8e24a2):
each unimodal encoder is trained with its own head and the best epoch by valid Pearson kept
(`train_stage`, lines 630-702), its head removed (`remove_head`, lines 329-331), and the fusion
trained with the encoders at lr x 0.05 (lines 1020-1025, the AdamW groups). Here the branches
of one head are trained together in stage one: their parameters and losses are disjoint, so
each still learns alone (only a clip-by-norm of the whole gradient couples them).
"""

from __future__ import annotations

import logging
import math

import numpy as np
import torch
from tqdm import tqdm

from emi_heads.training.metrics import score_columns
from emi_heads.training.rundir import predict_outputs
from emi_heads.training.steps import StepPlan

log = logging.getLogger(__name__)


def train_branches_first(job) -> list[dict]:
    """Stage one for `job.config.unimodal_epochs` epochs; the model is left with the best
    epoch's branches. Returns the AdamW parameter groups of the fusion stage: the fusion at the
    full lr, the branches at lr x encoder_lr_scale (left out and frozen at 0)."""
    from dataclasses import replace

    model, config = job.model, job.config
    if not hasattr(model, "unimodal_loss"):
        raise ValueError(f"--unimodal-epochs: the {job.head.name} head has no per-stream "
                         "branches to train first (concat-frames has)")  # fmt: skip
    stage = replace(config, epochs=config.unimodal_epochs, ema=False)
    plan = StepPlan.build(model, job.train, stage, job.device, unimodal=True)
    best_r, best_state = -math.inf, None
    branches = torch.nn.ModuleList(model.branch_modules())
    bar = tqdm(total=plan.steps_per_epoch * stage.epochs, desc="branches", unit="step",
               disable=not job.progress or None, dynamic_ncols=True)  # fmt: skip
    with bar:
        for epoch in range(1, stage.epochs + 1):
            row = plan.train_epoch(model, epoch, bar)
            scores = branch_scores(model, job.valid, job.device)
            mean_r = float(np.mean(list(scores.values()))) if scores else -math.inf
            shown = "".join(f" {n} r {r:.4f}" for n, r in scores.items())
            log.info("branches alone, epoch %d/%d loss %.4f%s", epoch, stage.epochs, row["loss"],
                     shown)  # fmt: skip
            if job.valid is None or mean_r > best_r:
                best_r = mean_r
                best_state = {k: v.detach().clone() for k, v in branches.state_dict().items()}
    branches.load_state_dict(best_state)
    return fusion_groups(model, config)


def branch_scores(model, valid, device: torch.device) -> dict[str, float]:
    """Each branch's mean valid r on its own auxiliary head (empty without validation), from
    one pass over the validation clips."""
    if valid is None:
        return {}
    labels, inputs = valid
    names = [f"branch/{name}" for name in model.streams]
    outputs = predict_outputs(model, inputs, names, device=device)
    return {
        name: float(score_columns(outputs[f"branch/{name}"], labels.values, labels.task).mean())
        for name in model.streams
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
    return [{"params": fusion, "lr": config.lr},
            {"params": branch, "lr": config.lr * config.encoder_lr_scale}]  # fmt: skip
