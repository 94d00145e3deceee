"""The challenge metric, in one place: the mean over the six columns of Pearson's r."""

from __future__ import annotations

import logging

import numpy as np

from emi_features.core.task import EMOTIONS

log = logging.getLogger(__name__)


def pearson_columns(predictions: np.ndarray, targets: np.ndarray) -> np.ndarray:
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
        names = [
            EMOTIONS[k] if x.shape[1] == len(EMOTIONS) else str(k) for k in np.flatnonzero(constant)
        ]
        log.warning("constant column(s) %s: Pearson r set to 0", ", ".join(names))
    r = np.where(constant, 0.0, (x * y).sum(axis=0) / np.where(constant, 1.0, denominator))
    return np.clip(r, -1.0, 1.0)


def mean_pearson(predictions: np.ndarray, targets: np.ndarray) -> float:
    """The challenge score: mean over columns of Pearson r."""
    return float(pearson_columns(predictions, targets).mean())


def format_scores(columns: np.ndarray) -> str:
    """`r 0.512 [Adm 0.40 Amu 0.61 Det 0.55 Emp 0.38 Exc 0.52 Joy 0.61]`."""
    parts = " ".join(
        f"{name[:3]} {value:.3f}" for name, value in zip(EMOTIONS, columns, strict=True)
    )
    return f"r {float(np.mean(columns)):.4f} [{parts}]"
