"""Which epoch a run keeps: the best by the validation score, smoothed over the last epochs or
raw, above the best by a margin, and how long since (early stopping). Used by the training loop
(`sgd`) and by each branch's own run in two-stage training (`stages`)."""

from __future__ import annotations

import math

from emi_heads.training.config import TrainConfig


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
                row.get("valid_r_smoothed", -math.inf),
                row["epoch"],
                0,
            )
        else:
            self.stale += 1
        return improved

    def summary(self) -> str:
        if not self.history:  # no validation: every epoch is kept
            return f"epoch {self.best_epoch}"
        what = "r" if self.window == 1 else f"{self.window}-epoch mean r"
        return (
            f"valid r {self.history[-1]:.3f}, best {what} {self.best_r:.3f} (epoch "
            f"{self.best_epoch})"
        )


def smoothed(history: list[float], window: int) -> float:
    """The mean of the last `window` epochs' valid r: the best epoch is chosen on it, so one
    lucky epoch in a noisy run is not kept over a steadily better stretch. NaN when this epoch's
    r is not finite (diverged, or constant predictions), so that epoch is never kept."""
    if not math.isfinite(history[-1]):
        return math.nan
    recent = [r for r in history[-window:] if math.isfinite(r)]
    return sum(recent) / len(recent)
