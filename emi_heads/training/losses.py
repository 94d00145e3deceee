"""Training losses, combinable by a spec such as `mse+0.1*pearson` (weights default to 1).

Importing this module does not import torch (the losses use tensor methods only), so the spec
can be checked before anything heavy loads.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

Loss = Callable[["torch.Tensor", "torch.Tensor"], "torch.Tensor"]
EPS = 1e-8


def mse(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return ((prediction - target) ** 2).mean()


def l1(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (prediction - target).abs().mean()


def smooth_l1(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Huber with beta 1 (torch's smooth_l1_loss default): quadratic below 1, linear above."""
    error = (prediction - target).abs()
    return (error.clamp(max=1.0) ** 2 * 0.5 + (error - 1.0).clamp(min=0.0)).mean()


def pearson(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - mean over columns of Pearson r over the batch: (B, K), (B, K) -> scalar. Each
    column's population sd is floored at EPS, and a batch of one clip gives 0, as the
    published concat fusion computes it."""
    if prediction.shape[0] < 2:
        return prediction.new_zeros(())
    x = prediction - prediction.mean(dim=0)
    y = target - target.mean(dim=0)
    # the floor on the variance, not the sd: the same values, and no NaN gradient at sd 0
    sx = x.pow(2).mean(dim=0).clamp(min=EPS * EPS).sqrt()
    sy = y.pow(2).mean(dim=0).clamp(min=EPS * EPS).sqrt()
    return 1.0 - ((x / sx) * (y / sy)).mean(dim=0).mean()


def ccc(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - mean over columns of Lin's concordance correlation coefficient."""
    mean_x, mean_y = prediction.mean(dim=0), target.mean(dim=0)
    var_x, var_y = prediction.var(dim=0, unbiased=False), target.var(dim=0, unbiased=False)
    covariance = ((prediction - mean_x) * (target - mean_y)).mean(dim=0)
    value = 2 * covariance / (var_x + var_y + (mean_x - mean_y) ** 2 + EPS)
    return 1.0 - value.mean()


# By name: a function, or for a loss in a module of its own "module:function" (imported on use).
LOSSES: dict[str, Loss | str] = {
    "mse": mse,
    "l1": l1,
    "smooth_l1": smooth_l1,
    "pearson": pearson,
    "ccc": ccc,
}
_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_TERM = re.compile(rf"^\s*(?:({_NUMBER})\s*\*\s*)?([A-Za-z_][A-Za-z0-9_]*)\s*$")


def parse_loss_terms(spec: str) -> list[tuple[float, str]]:
    """`mse+1e-2*pearson` -> [(1.0, "mse"), (0.01, "pearson")]; one-line error naming the
    malformed term or the unknown loss."""
    terms: list[tuple[float, str]] = []
    for text in spec.split("+"):
        match = _TERM.match(text)
        if not match:
            raise ValueError(
                f"--loss {spec!r}: {text.strip()!r} is not a term; terms are [WEIGHT*]NAME "
                f"joined by '+'"
            )
        weight, name = match.groups()
        if name not in LOSSES:
            raise ValueError(f"--loss {spec!r}: unknown loss {name!r}; known: {', '.join(LOSSES)}")
        terms.append((float(weight or 1.0), name))
    return terms


CORRELATION_LOSSES = frozenset({"pearson", "ccc"})


def loss_function(name: str) -> Loss:
    """The loss registered as NAME in `LOSSES`."""
    found = LOSSES[name]
    if isinstance(found, str):
        module, attribute = found.split(":")
        found = getattr(importlib.import_module(module), attribute)
    return found


def parse_loss(spec: str, *, correlation_weight: float = 1.0) -> Loss:
    """`mse+0.1*pearson` -> a function of (prediction, target); one-line error if malformed.

    `correlation_weight` scales the correlation terms (pearson, ccc): a ramp over epochs."""
    terms = [
        (weight * (correlation_weight if name in CORRELATION_LOSSES else 1.0), loss_function(name))
        for weight, name in parse_loss_terms(spec)
    ]

    def combined(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return sum(weight * loss(prediction, target) for weight, loss in terms)

    return combined
