"""PNG plots of a run: training curves, and predicted against true per column on validation."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from emi_features.cache.atomic import atomic_path  # noqa: E402
from emi_features.core.task import EMI, Task  # noqa: E402
from emi_heads.training.metrics import score_columns  # noqa: E402


def plot_curves(
    path: Path, rows: list[dict[str, float]], best: float | None = None, task: Task = EMI
) -> None:
    """Training and validation loss, and validation r, per epoch, with the best epoch marked
    and labelled (or validation r per ridge alpha, the chosen alpha marked, in one panel).
    Legends stand outside the axes, so that no curve is hidden."""
    if not rows:
        return
    if "alpha" in rows[0]:
        figure, axis = plt.subplots(figsize=(6, 3.5))
        axis.semilogx([r["alpha"] for r in rows], [r["valid_r"] for r in rows], marker="o")
        axis.set(xlabel="ridge alpha", ylabel="valid mean r", title="ridge: valid r per alpha")
        if best is not None:
            axis.axvline(best, color="tab:red", linestyle="--", label=f"chosen alpha {best:g}")
            axis.legend(fontsize=8)
        _save(figure, path)
        return
    with_r = "valid_r" in rows[0]
    figure, axes = plt.subplots(
        1, 2 if with_r else 1, figsize=(13 if with_r else 6.5, 3.8), squeeze=False
    )
    losses, scores = axes[0][0], axes[0][-1]
    epochs = [r["epoch"] for r in rows]
    losses.plot(epochs, [r["loss"] for r in rows], label="loss")
    losses.plot(epochs, [r["aux_loss"] for r in rows], label="auxiliary")
    if rows[0].get("valid_loss") not in (None, ""):
        losses.plot(epochs, [r["valid_loss"] for r in rows], label="valid loss")
    losses.set(xlabel="epoch", ylabel="loss")
    if with_r:
        scores.plot(epochs, [r["valid_r"] for r in rows], label="mean", color="black")
        smoothed = [r.get("valid_r_smoothed") for r in rows]
        if all(isinstance(v, float) for v in smoothed) and smoothed != [r["valid_r"] for r in rows]:
            scores.plot(
                epochs, smoothed, label="mean, smoothed (selects)", color="black", linestyle=":"
            )
        for name in task.targets:
            scores.plot(epochs, [r[f"r_{name}"] for r in rows], label=name, alpha=0.6)
        scores.set(xlabel="epoch", ylabel=f"valid {METRIC_NAMES[task.metric]}")
    for axis in {id(a): a for a in (losses, scores)}.values():
        if best is not None:
            axis.axvline(
                best, color="tab:red", linestyle="--", linewidth=0.8, label=f"best epoch {best:g}"
            )
        axis.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    _save(figure, path)


def plot_scatter(
    path: Path, predictions: np.ndarray, targets: np.ndarray, task: Task = EMI
) -> None:
    """Predicted against true for each target (three panels a row), its score in each title."""
    r = score_columns(predictions, targets, task)
    rows = -(-len(task.targets) // 3)
    figure, axes = plt.subplots(rows, 3, figsize=(10, 3.25 * rows), squeeze=False)
    for axis in axes.ravel()[len(task.targets) :]:
        axis.set_visible(False)
    metric = "r" if task.metric == "pearson" else task.metric
    for k, (axis, name) in enumerate(zip(axes.ravel(), task.targets, strict=False)):
        axis.scatter(targets[:, k], predictions[:, k], s=6, alpha=0.5)
        true_low, true_high = float(targets[:, k].min()), float(targets[:, k].max())
        axis.plot([true_low, true_high], [true_low, true_high], color="grey", linewidth=0.8)
        # predictions' own range: a head whose predictions collapse to a line shows it
        low, high = float(predictions[:, k].min()), float(predictions[:, k].max())
        margin = max(0.05 * (high - low), 0.005)
        axis.set(
            title=f"{name}  {metric}={r[k]:.3f}\npredictions {low:.3f}..{high:.3f}",
            xlabel="true",
            ylabel="predicted",
            xlim=_span(task, true_low, true_high),
            ylim=(low - margin, high + margin),
        )
    _save(figure, path)


def plot_over_time(
    path: Path, title: str, starts: list[float], values: np.ndarray, task: Task = EMI
) -> None:
    """The targets of one recording's windows (`values` (W, K)) against each window's start in
    seconds: one line per target, on the task's range (0..1 for intensities)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    figure, axis = plt.subplots(figsize=(10, 3.8))
    for k, name in enumerate(task.targets):
        axis.plot(starts, values[:, k], marker="o", markersize=3, label=name)
    finite = values[np.isfinite(values)]
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    what = "predicted intensity" if task.value_range == (0.0, 1.0) else "predicted value"
    axis.set(xlabel="window start (s)", ylabel=what, ylim=_span(task, low, high), title=title)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    _save(figure, path)


METRIC_NAMES = {"pearson": "Pearson r", "ccc": "CCC"}


def _span(task: Task, low: float, high: float) -> tuple[float, float]:
    """An axis over the task's range (with a margin), or over the values where it has none."""
    if task.value_range is not None:
        low, high = task.value_range
    margin = max(0.02 * (high - low), 1e-3)
    return low - margin, high + margin


def plot_layer_weights(path: Path, weights: dict[str, list[float]]) -> None:
    """The learned softmax weight of each hidden layer (0 = the CNN features), a panel per
    layered stream, the uniform weight as a dashed line."""
    figure, axes = plt.subplots(1, len(weights), figsize=(5 * len(weights), 3.4), squeeze=False)
    for axis, (name, values) in zip(axes[0], weights.items(), strict=True):
        axis.bar(range(len(values)), values, color="tab:blue")
        axis.axhline(1 / len(values), color="grey", linestyle="--", linewidth=0.8)
        axis.set(title=f"{name}: weight per layer", xlabel="hidden layer", ylabel="weight")
        axis.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    _save(figure, path)


def _save(figure, path: Path) -> None:
    figure.tight_layout()
    with atomic_path(path) as temporary:
        figure.savefig(temporary, dpi=90, format="png")
    plt.close(figure)
