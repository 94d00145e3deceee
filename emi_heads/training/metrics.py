"""The metrics, in one place: per target Pearson's r (the EMI challenge's, averaged over its six
columns) or Lin's concordance correlation coefficient; a task names which (`Task.metric`)."""

from __future__ import annotations

import logging

import numpy as np

from emi_features.core.task import EMI, Task

log = logging.getLogger(__name__)


def score_columns(predictions: np.ndarray, targets: np.ndarray, task: Task = EMI) -> np.ndarray:
    """(K,) the task's metric of each target column (Pearson r, or CCC)."""
    if task.metric == "ccc":
        return ccc_columns(predictions, targets)
    return pearson_columns(predictions, targets, task.targets)


def ccc_columns(predictions: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Lin's concordance correlation coefficient of each column: 2 cov / (var x + var y +
    (mean x - mean y)^2), population moments; 0 where both sides are constant and equal."""
    x = np.asarray(predictions, dtype=np.float64)
    y = np.asarray(targets, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 2:
        raise ValueError(f"predictions {x.shape} and targets {y.shape} must be the same (N, K)")
    covariance = ((x - x.mean(axis=0)) * (y - y.mean(axis=0))).mean(axis=0)
    denominator = x.var(axis=0) + y.var(axis=0) + (x.mean(axis=0) - y.mean(axis=0)) ** 2
    return np.where(denominator > 1e-12, 2 * covariance / np.maximum(denominator, 1e-12), 0.0)


def pearson_columns(
    predictions: np.ndarray, targets: np.ndarray, names: tuple[str, ...] = EMI.targets
) -> np.ndarray:
    """Pearson r of each column over all clips: (N, K), (N, K) -> (K,) float64.

    A column where either side is constant has no correlation: r = 0 there, with a warning,
    never NaN.
    """
    x = np.asarray(predictions, dtype=np.float64)
    y = np.asarray(targets, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 2:
        raise ValueError(f"predictions {x.shape} and targets {y.shape} must be the same (N, K)")
    x = x - x.mean(axis=0)
    y = y - y.mean(axis=0)
    denominator = np.sqrt((x * x).sum(axis=0) * (y * y).sum(axis=0))
    constant = denominator <= 1e-12
    if constant.any():
        flat = [names[k] if x.shape[1] == len(names) else str(k) for k in np.flatnonzero(constant)]
        log.warning("constant column(s) %s: Pearson r set to 0", ", ".join(flat))
    r = np.where(constant, 0.0, (x * y).sum(axis=0) / np.where(constant, 1.0, denominator))
    return np.clip(r, -1.0, 1.0)


def mean_pearson(predictions: np.ndarray, targets: np.ndarray) -> float:
    """The challenge score: mean over columns of Pearson r."""
    return float(pearson_columns(predictions, targets).mean())


def format_scores(columns: np.ndarray, task: Task = EMI) -> str:
    """`r 0.512 [Adm 0.40 Amu 0.61 Det 0.55 Emp 0.38 Exc 0.52 Joy 0.61]` (`ccc` for a task
    scored by CCC)."""
    parts = " ".join(f"{name} {value:.3f}" for name, value in zip(task.short, columns, strict=True))
    metric = "r" if task.metric == "pearson" else task.metric
    return f"{metric} {float(np.mean(columns)):.4f} [{parts}]"
