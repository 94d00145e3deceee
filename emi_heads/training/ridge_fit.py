"""The ridge head's trainer: each alpha fitted in closed form on the training clips, the best
on validation kept (the middle alpha with no validation), one log row per alpha."""

from __future__ import annotations

import logging
import math

import torch

from emi_heads.training.inference import predict
from emi_heads.training.metrics import score_columns
from emi_heads.training.rundir import LOG, EpochLog
from emi_heads.training.sgd import Job, Outcome

log = logging.getLogger(__name__)


def fit_ridge(job: Job) -> Outcome:
    """Fit every alpha of the head's `ridge_alphas`, keep the best on validation, save it."""
    model, valid, run = job.model, job.valid, job.run
    labels, inputs = job.train
    everything = inputs.batch(torch.arange(len(inputs)), torch.device("cpu"))
    alphas = job.head.ridge_alphas
    rows, best = [], (-math.inf, alphas[len(alphas) // 2])
    for alpha in alphas if valid is not None else ():
        model.fit(everything, labels.values, alpha)
        predictions = predict(model, valid[1], device=torch.device("cpu"))
        r = float(score_columns(predictions, valid[0].values, valid[0].task).mean())
        rows.append({"alpha": alpha, "valid_r": r})
        log.info("ridge alpha %g: valid r %.4f", alpha, r)
        best = max(best, (r, alpha))
    model.fit(everything, labels.values, best[1])
    run.save_weights(model)
    epoch_log = EpochLog(run.path / LOG, ["alpha", "valid_r"], job.log_to, lambda: run.path)
    for row in rows:
        epoch_log.add(row)
    epoch_log.close()
    return Outcome(epoch_log, alpha=best[1])
